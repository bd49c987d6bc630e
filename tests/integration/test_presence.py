"""Rule sets sharing a key prefix notice each other, on a real redis-server."""

import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry, Gauge

import scorer.presence
from scorer.presence import FORGET_AFTER_S, SEEN_WITHIN_S, Presence

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
    gauge = Gauge("others", "test", registry=CollectorRegistry())
    return Presence(lambda: client, prefix, rules, gauge, clock or Clock())


def others(announcer: Presence) -> float:
    return announcer.gauge._value.get()  # type: ignore[attr-defined, no-any-return]


def test_a_candidate_on_the_baseline_prefix_is_noticed_by_both(
    redis_client: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = presence(redis_client, "scorer", "default-1+aaaa", clock)
    candidate = presence(redis_client, "scorer", "cand-2+bbbb", clock)

    with caplog.at_level(logging.INFO, logger="scorer.presence"):
        baseline.announce()
        candidate.announce()
        baseline.announce()

    assert others(baseline) == 1 and others(candidate) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # once each, not at every announcement
    assert warnings[0].startswith(
        "rules default-1+aaaa also write under redis.key_prefix=scorer (0 s ago)"
    )
    assert "rules cand-2+bbbb also write under redis.key_prefix=scorer" in warnings[1]


def test_instances_of_one_rule_set_or_other_prefixes_are_not_noticed(
    redis_client: redis.Redis, clock: Clock
) -> None:
    one = presence(redis_client, "scorer", "default-1+aaaa", clock)
    two = presence(redis_client, "scorer", "default-1+aaaa", clock)
    shadow = presence(redis_client, "shadow", "cand-2+bbbb", clock)

    for announcer in (one, two, shadow, one, two, shadow):
        announcer.announce()

    assert [others(a) for a in (one, two, shadow)] == [0, 0, 0]
    assert redis_client.hkeys("scorer:rules") == [b"default-1+aaaa"]


def test_a_rule_set_that_stopped_announcing_is_gone_after_a_minute(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    old_clock, new_clock = Clock(), Clock()
    old = presence(redis_client, "scorer", "old+aaaa", old_clock)
    new = presence(redis_client, "scorer", "new+bbbb", new_clock)
    old.announce()

    new_clock.now_s = T0_S + SEEN_WITHIN_S  # a rolling restart's last minute
    new.announce()
    assert others(new) == 1

    new_clock.now_s = T0_S + SEEN_WITHIN_S + 1
    with caplog.at_level(logging.INFO, logger="scorer.presence"):
        new.announce()
    assert others(new) == 0
    assert "rules old+aaaa no longer write under redis.key_prefix=scorer" in (
        caplog.text
    )

    new_clock.now_s = T0_S + FORGET_AFTER_S + 1
    new.announce()
    assert redis_client.hkeys("scorer:rules") == [b"new+bbbb"]


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
    stop = threading.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="scorer.presence"):
            runner = threading.Thread(target=announcer.run, args=(stop,))
            runner.start()
            stop.wait(0.5)
            stop.set()
            runner.join(timeout=5)
    finally:
        limited.close()
        redis_client.acl_deluser(user)

    refusals = [r.getMessage() for r in caplog.records]
    assert not runner.is_alive()
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
