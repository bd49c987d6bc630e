"""A flood of malformed records logs a line per reason, not a line each."""

import logging

import pytest
from confluent_kafka import Message

from scorer.config import Config, default_config_path, load_config
from scorer.dead_letter import DeadLetters, Rejected
from scorer.errors import InvalidRecord

TOPIC = "web.page_views"


@pytest.fixture
def config() -> Config:
    return load_config(default_config_path())


def rejected(offset: int, reason: str, topic: str = TOPIC) -> Rejected:
    message = Message(topic=topic, partition=2, offset=offset, value=b"{")
    return Rejected(message, InvalidRecord(reason, "not what was expected"))


def test_ten_lines_per_topic_and_reason_per_window_then_how_many_it_held(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scorer.dead_letter")
    now = [0.0]
    letters = DeadLetters(config, clock=lambda: now[0])

    for offset in range(100):
        now[0] = offset * 0.1  # ten a second for 10 s
        letters.letter(rejected(offset, "bad_json"))
    letters.letter(rejected(100, "bad_avro"))
    letters.letter(rejected(101, "bad_json", topic="marketing.content_downloads"))
    now[0] = 30.0
    letters.letter(rejected(102, "bad_json"))

    where = f"topic={TOPIC} partition=2"
    line = "dead-lettered {} offset={} reason={} error=InvalidRecord"
    assert [r.getMessage() for r in caplog.records] == [
        *(line.format(where, n, "bad_json") for n in range(10)),
        line.format(where, 100, "bad_avro"),
        line.format("topic=marketing.content_downloads partition=2", 101, "bad_json"),
        line.format(where, 102, "bad_json") + " (90 more like it held back)",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_every_dead_letter_still_has_its_line_at_debug(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="scorer.dead_letter")
    letters = DeadLetters(config, clock=lambda: 0.0)

    for offset in range(12):
        letters.letter(rejected(offset, "bad_json"))

    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] * 10 + [logging.DEBUG] * 2
    assert [
        f"offset={n} reason=bad_json" in r.getMessage()
        for n, r in enumerate(caplog.records)
    ] == [True] * 12


def test_every_dead_letter_is_still_sent_whole(config: Config) -> None:
    letters = DeadLetters(config, clock=lambda: 0.0)

    sent = [letters.letter(rejected(offset, "bad_json")) for offset in range(5)]

    assert [letter.value for letter in sent] == [b"{"] * 5
    offsets = [dict(letter.headers)["scorer.error.offset"] for letter in sent]
    assert offsets == [b"0", b"1", b"2", b"3", b"4"]
