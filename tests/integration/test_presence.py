"""Rule sets sharing a key prefix, an output topic or a group notice each other.

On a real redis-server, and a real Kafka broker for the group.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import Consumer, TopicPartition
from harness import make_config
from prometheus_client import CollectorRegistry, Gauge

import scorer.presence
from scorer.config import Config, default_config_path
from scorer.metrics import Metrics
from scorer.presence import (
    FORGET_AFTER_S,
    SEEN_WITHIN_S,
    ConsumerGroup,
    Marks,
    Presence,
    commit_note,
)
from scorer.service import rules_presence

T0_S = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now_s = T0_S

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


def presence(
    client: redis.Redis, prefix: str, rules: str, clock: Clock | None = None
) -> Presence:
    place = Marks.of_key_prefix(lambda: client, prefix, rules)
    return Presence(rules, [place], gauge(), clock or Clock())


def gauge() -> Gauge:
    return Gauge("others", "test", ["where"], registry=CollectorRegistry())


def others(announcer: Presence, where: str = "key_prefix") -> float:
    value = announcer.gauge.labels(where)._value.get()  # type: ignore[attr-defined]
    return float(value)


def test_a_candidate_on_the_baseline_prefix_is_noticed_by_both(
    redis_client: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = presence(redis_client, "scorer", "default-1+aaaa", clock)
    candidate = presence(redis_client, "scorer", "cand-2+bbbb", clock)

    with caplog.at_level(logging.INFO, logger="scorer.presence"):
        baseline.look()
        candidate.look()
        baseline.look()

    assert others(baseline) == 1 and others(candidate) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # once each, not at every announcement
    assert warnings[0].startswith(
        "rules default-1+aaaa also in use on redis.key_prefix=scorer (0 s ago)"
    )
    assert "rules cand-2+bbbb also in use on redis.key_prefix=scorer" in warnings[1]


def test_instances_of_one_rule_set_or_other_prefixes_are_not_noticed(
    redis_client: redis.Redis, clock: Clock
) -> None:
    one = presence(redis_client, "scorer", "default-1+aaaa", clock)
    two = presence(redis_client, "scorer", "default-1+aaaa", clock)
    shadow = presence(redis_client, "shadow", "cand-2+bbbb", clock)

    for announcer in (one, two, shadow, one, two, shadow):
        announcer.look()

    assert [others(a) for a in (one, two, shadow)] == [0, 0, 0]
    assert redis_client.hkeys("scorer:rules") == [b"default-1+aaaa"]


def test_a_candidate_on_the_baseline_output_topic_is_noticed_whatever_its_prefix(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    fresh_topics: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq")
    baseline = rules_presence(
        on(kafka_bootstrap, redis_url, events, out, dlq), Metrics()
    )
    candidate_config = on(kafka_bootstrap, redis_url, events, out, dlq, "cand-2")
    candidate = rules_presence(candidate_config, Metrics())

    with caplog.at_level(logging.WARNING, logger="scorer.presence"):
        for announcer in (baseline, candidate, baseline):
            announcer.look()
    for announcer in (baseline, candidate):
        for place in announcer.places:
            place.close()

    assert [others(baseline, w) for w in ("output", "key_prefix", "group")] == [1, 0, 0]
    assert others(candidate, "output") == 1
    version = candidate_config.scoring.rules_version
    assert f"rules {version} also in use on topics.output.name={out} (0 s ago)" in (
        caplog.text
    )
    assert redis_client.hkeys(f"scorer-output:{out}:rules") == [
        v.encode() for v in (baseline.rules_version, version)
    ]


def on(
    bootstrap: str, url: str, events: str, out: str, dlq: str, version: str = ""
) -> Config:
    """A config of its own prefix and group; of its own rules if given a version."""
    topics = {
        "events": [{"name": events, "format": "json"}],
        "output": {"name": out, "format": "json"},
        "dead_letter": dlq,
    }
    scoring = yaml.safe_load(default_config_path().read_text())["scoring"]
    if version:
        scoring["version"] = version
    return make_config(bootstrap, url, topics, scoring)


def test_a_rule_set_that_stopped_announcing_is_gone_after_a_minute(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    old_clock, new_clock = Clock(), Clock()
    old = presence(redis_client, "scorer", "old+aaaa", old_clock)
    new = presence(redis_client, "scorer", "new+bbbb", new_clock)
    old.look()

    new_clock.now_s = T0_S + SEEN_WITHIN_S  # a rolling restart's last minute
    new.look()
    assert others(new) == 1

    new_clock.now_s = T0_S + SEEN_WITHIN_S + 1
    with caplog.at_level(logging.INFO, logger="scorer.presence"):
        new.look()
    assert others(new) == 0
    assert "rules old+aaaa no longer in use on redis.key_prefix=scorer" in caplog.text

    new_clock.now_s = T0_S + FORGET_AFTER_S + 1
    new.look()
    assert redis_client.hkeys("scorer:rules") == [b"new+bbbb"]


def test_garbage_in_the_hash_is_read_past_and_let_go(
    redis_client: redis.Redis, clock: Clock
) -> None:
    garbage = {b"\xff\xfe": b"1", "x": "not a time", "ahead": str(10**14)}
    redis_client.hset("scorer:rules", mapping=garbage)
    announcer = presence(redis_client, "scorer", "default-1+aaaa", clock)

    announcer.look()

    assert others(announcer) == 0
    assert redis_client.hkeys("scorer:rules") == [b"default-1+aaaa"]


def test_a_version_that_would_break_the_log_line_is_quoted(
    redis_client: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.hset("scorer:rules", "two\nlines", str(int(T0_S * 1000)))
    announcer = presence(redis_client, "scorer", "default-1+aaaa", clock)

    with caplog.at_level(logging.WARNING, logger="scorer.presence"):
        announcer.look()

    assert (
        caplog.records[0]
        .getMessage()
        .startswith("rules 'two\\nlines' also in use on redis.key_prefix=scorer")
    )


def test_an_acl_that_refuses_the_key_is_said_once(
    redis_client: redis.Redis,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scorer.presence, "ANNOUNCE_EVERY_S", 0.01)  # many rounds
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    # Leads' keys only: the scorer's own commands, but not on <prefix>:rules.
    redis_client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["scorer:{*"],
        commands=["+@all"],
    )  # fmt: skip
    limited = redis.Redis.from_url(redis_url, username=user, password=password)
    announcer = presence(limited, "scorer", "default-1+aaaa")
    try:
        with caplog.at_level(logging.WARNING, logger="scorer.presence"):
            ended = run_for(announcer, 0.5)
    finally:
        limited.close()
        redis_client.acl_deluser(user)

    refusals = [r.getMessage() for r in caplog.records]
    assert ended
    assert len(refusals) == 1
    assert refusals[0].startswith(
        "cannot announce rules under redis.key_prefix=scorer, so another rule "
        "set on it goes unnoticed"
    )


@pytest.fixture(autouse=True)
def _no_acl_users_left(redis_client: redis.Redis) -> Iterator[None]:
    before = set(redis_client.acl_users())
    yield
    assert set(redis_client.acl_users()) == before


def test_a_candidate_committing_in_the_baseline_group_is_noticed(
    kafka_bootstrap: str, fresh_topics: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (topic,) = fresh_topics("events", partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    now_s = time.time()
    commit(kafka_bootstrap, group, topic, {
        0: commit_note("cand-2+bbbb", now_s - 5),
        1: commit_note("old+cccc", now_s - SEEN_WITHIN_S - 5),  # a minute ago
        2: "not a note of ours",
        3: commit_note("ahead+dddd", now_s + SEEN_WITHIN_S + 5),  # a bad clock
    })  # fmt: skip
    reader = {"bootstrap.servers": kafka_bootstrap, "group.id": group}
    place = ConsumerGroup(lambda: Consumer(reader), group, [topic])
    baseline = Presence("default-1+aaaa", [place], gauge(), clock=lambda: now_s)

    with caplog.at_level(logging.WARNING, logger="scorer.presence"):
        baseline.look()

    assert place.ages_s(now_s).keys() == {"cand-2+bbbb", "old+cccc"}
    place.close()
    assert others(baseline, "group") == 1
    assert f"rules cand-2+bbbb also in use on kafka.group_id={group} (5 s ago)" in (
        caplog.text
    )


def test_the_group_readers_log_lines_come_out_at_each_look_not_at_the_stop(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    (topic,) = fresh_topics("events")
    group = f"g-{uuid.uuid4().hex[:8]}"
    lines: list[logging.LogRecord] = []
    logger = logging.getLogger(f"test.presence.{group}")
    logger.addHandler(Keep(lines))
    logger.setLevel(logging.DEBUG)
    reader = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": group,
        "debug": "metadata",
    }
    place = ConsumerGroup(lambda: Consumer(reader, logger=logger), group, [topic])

    place.ages_s(time.time())
    seen_before_close = len(lines)
    place.close()

    assert seen_before_close > 0


class Keep(logging.Handler):
    def __init__(self, lines: list[logging.LogRecord]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record)


def commit(bootstrap: str, group: str, topic: str, notes: dict[int, str]) -> None:
    """Commit offset 0 of each partition with the given metadata."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = [TopicPartition(topic, p, 0, metadata=n) for p, n in notes.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def test_a_look_that_fails_unforeseen_is_logged_once_and_looking_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scorer.presence, "ANNOUNCE_EVERY_S", 0.01)
    looks = []

    class Broken:
        where, setting = "key_prefix", "redis.key_prefix=scorer"

        def ages_s(self, now_s: float) -> dict[str, float]:
            looks.append(now_s)
            raise AttributeError("a bug")

        def close(self) -> None:
            pass

    announcer = Presence("default-1+aaaa", [Broken()], gauge())
    with caplog.at_level(logging.ERROR, logger="scorer.presence"):
        ended = run_for(announcer, 0.3)

    assert ended and len(looks) > 3
    assert [r.getMessage() for r in caplog.records] == [
        "looking for other rule sets failed"
    ]


def run_for(announcer: Presence, seconds: float) -> bool:
    """Run `announcer` on its thread for `seconds`; whether it then stopped."""
    stop = threading.Event()
    runner = threading.Thread(target=announcer.run, args=(stop,))
    runner.start()
    stop.wait(seconds)
    stop.set()
    runner.join(timeout=5)
    return not runner.is_alive()
