"""The two log formats: readable text and one JSON object per line."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from scorer import logs


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_message_and_its_fields(stderr: io.StringIO) -> None:
    logs.configure("INFO", json_lines=True, stream=stderr)

    logging.getLogger("scorer.pipeline").warning(
        "dead-lettered topic=%s partition=%d offset=%d reason=%s; moving on",
        "web.page_views",
        2,
        17,
        "bad_json",
        extra={"lead_id": "L-9"},
    )

    document = json.loads(stderr.getvalue())
    assert document["time"].endswith("Z") and document["time"][10] == "T"
    del document["time"]
    assert document == {
        "level": "WARNING",
        "logger": "scorer.pipeline",
        "message": "dead-lettered topic=web.page_views partition=2 offset=17 "
        "reason=bad_json; moving on",
        "topic": "web.page_views",
        "partition": "2",
        "offset": "17",
        "reason": "bad_json",
        "lead_id": "L-9",
    }


def test_a_message_word_cannot_replace_a_core_field(stderr: io.StringIO) -> None:
    logs.configure("INFO", json_lines=True, stream=stderr)

    logging.getLogger("scorer.x").info("odd level=DEBUG message=hidden")

    document = json.loads(stderr.getvalue())
    assert document["level"] == "INFO"
    assert document["message"] == "odd level=DEBUG message=hidden"


def test_text_lines_append_extra_fields(stderr: io.StringIO) -> None:
    logs.configure("INFO", json_lines=False, stream=stderr)

    logging.getLogger("scorer.service").info("scorer started", extra={"count": 3})
    logging.getLogger("scorer.service").debug("not shown")

    line = stderr.getvalue()
    assert line.endswith(" INFO scorer.service scorer started count=3\n")
    assert line.count("\n") == 1


def test_a_filled_in_value_cannot_forge_a_field(stderr: io.StringIO) -> None:
    logs.configure("INFO", json_lines=True, stream=stderr)

    # A request line or a lead id is the sender's text: spaces, `=` and all.
    logging.getLogger("scorer.probes").warning(
        "http request %s lead_id=%s reason=%s",
        "GET /x reason=bad_json lead_id=forged",
        "L 1 topic=forged",
        "real_reason",
    )

    document = json.loads(stderr.getvalue())
    assert document["lead_id"] == "L 1 topic=forged"
    assert document["reason"] == "real_reason"
    assert "topic" not in document


def test_fields_come_formatted_and_cut_words_are_left_out(
    stderr: io.StringIO,
) -> None:
    logs.configure("INFO", json_lines=True, stream=stderr)

    logging.getLogger("scorer.x").info(
        "waited waited_s=%(w).1f range=%(a)d-%(b)d mode=fast",
        {"w": 2.25, "a": 1, "b": 2},
    )
    logging.getLogger("scorer.x").info(
        "redis back waited_s=%.1f attempts=%d; 100%% done", 2.25, 3
    )

    first, second = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert first["message"] == "waited waited_s=2.2 range=1-2 mode=fast"
    assert (first["waited_s"], first["mode"]) == ("2.2", "fast")
    assert "range" not in first
    assert second["waited_s"] == "2.2" and second["attempts"] == "3"
    assert second["message"] == "redis back waited_s=2.2 attempts=3; 100% done"


def test_odd_conversions_neither_shift_fields_nor_raise(stderr: io.StringIO) -> None:
    logs.configure("INFO", json_lines=True, stream=stderr)
    log = logging.getLogger("scorer.x")

    # A precision without digits once shifted every later argument by one
    # (and 2**40 into %c raised inside the formatter).
    log.info("waited=%.fs lead_id=%s", 1.5, "L7")
    log.info("paused for %.fs n=%c", 2**40, 65)
    log.info("rate=50%% done=%(lead.id)s", {"lead.id": "L8"})

    first, second, third = (json.loads(x) for x in stderr.getvalue().splitlines())
    assert (first["lead_id"], "waited" in first) == ("L7", False)
    assert second["n"] == "A"
    assert (third["rate"], third["done"]) == ("50%", "L8")
