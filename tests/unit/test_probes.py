"""Readiness rules, the cached Redis PING and the HTTP endpoints."""

import json
import logging
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from scorer import __version__
from scorer.errors import ScorerError
from scorer.metrics import Metrics
from scorer.probes import (
    CachedPing,
    Check,
    ProbeServer,
    Progress,
    Readiness,
    judge,
)

STALL_S = 60.0


def healthy(**changes: object) -> Progress:
    values: dict[str, object] = {
        "assigned_partitions": 3,
        "lag_records": 0,
        "polled_ago_s": 0.1,
        "committed_ago_s": 0.5,
        "silent_brokers": {},
        "silence_judged": True,
        "kafka_waited_s": 0.0,
        "redis_waited_s": 0.0,
    }
    values.update(changes)
    return Progress(**values)  # type: ignore[arg-type]


def failing(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


def test_a_scorer_with_partitions_redis_and_progress_is_ready() -> None:
    checks = judge(healthy(), redis_ok=True, stall_after_s=STALL_S, stopping=False)

    assert [c.name for c in checks] == [
        "partitions",
        "redis",
        "consume_loop",
        "kafka",
        "commits",
    ]
    assert failing(checks) == {}


@pytest.mark.parametrize(
    ("progress", "redis_ok", "expected"),
    [
        (healthy(assigned_partitions=0), True, {"partitions": "0 assigned"}),
        (healthy(), False, {"redis": "PING failed"}),
        (healthy(polled_ago_s=61.0), True, {"consume_loop": "last poll 61.0s ago"}),
        (
            healthy(silent_brokers={3: 16.04, 1: 20.0}),
            True,
            {"kafka": "broker 1 silent 20.0s, broker 3 silent 16.0s"},
        ),
        (
            healthy(lag_records=7, committed_ago_s=90.0),
            True,
            {"commits": "lag 7 records, last commit (or start) 90.0s ago"},
        ),
    ],
)
def test_each_failed_check_makes_the_scorer_unready(
    progress: Progress, redis_ok: bool, expected: dict[str, str]
) -> None:
    checks = judge(progress, redis_ok, STALL_S, stopping=False)

    assert failing(checks) == expected


SILENT_S = 15.0


@pytest.mark.parametrize(
    ("progress", "ok", "detail"),
    [
        (healthy(), True, "the brokers of fetched partitions answer"),
        # A wait for acks holds the consumer: no fetch to judge the brokers by.
        (
            healthy(kafka_waited_s=14.9),
            True,
            "the brokers of fetched partitions answer",
        ),
        (healthy(kafka_waited_s=15.0), False, "outputs unacknowledged for 15.0s"),
        (
            healthy(silent_brokers={-1: 16.0}, kafka_waited_s=20.0),
            False,
            "partitions without a leader for 16.0s",
        ),
        (
            healthy(silence_judged=False),
            True,
            "silence not judged: statistics.interval.ms is 0",
        ),
    ],
)
def test_the_kafka_check_counts_a_long_wait_for_acks_as_a_silence(
    progress: Progress, ok: bool, detail: str
) -> None:
    checks = judge(progress, True, STALL_S, False, silent_after_s=SILENT_S)

    kafka = next(c for c in checks if c.name == "kafka")
    assert (kafka.ok, kafka.detail) == (ok, detail)
    assert failing(checks) == ({} if ok else {"kafka": detail})


@pytest.mark.parametrize(
    ("progress", "ping", "ok", "detail"),
    [
        (healthy(), True, True, "PING answered"),
        (healthy(redis_waited_s=14.9), True, True, "PING answered"),
        (
            healthy(redis_waited_s=15.0),
            True,
            False,
            "PING answered, but a batch waited 15.0s",
        ),
        (healthy(redis_waited_s=20.0), False, False, "PING failed"),
    ],
)
def test_the_redis_check_counts_a_long_wait_for_the_scripts(
    progress: Progress, ping: bool, ok: bool, detail: str
) -> None:
    # Out of memory, Redis answers PING and refuses every script.
    checks = judge(progress, ping, STALL_S, False, silent_after_s=SILENT_S)

    assert failing(checks) == ({} if ok else {"redis": detail})
    redis = next(c for c in checks if c.name == "redis")
    assert (redis.ok, redis.detail) == (ok, detail)


def test_a_quiet_topic_is_no_stall() -> None:
    # Nothing to read and nothing committed for long: idle, not stalled.
    checks = judge(healthy(lag_records=0, committed_ago_s=3600.0), True, STALL_S, False)

    assert failing(checks) == {}


def test_starting_and_stopping_are_not_ready() -> None:
    assert failing(judge(None, True, STALL_S, stopping=False)) == {
        "running": "starting: connecting to Kafka and Redis"
    }
    assert failing(judge(healthy(), True, STALL_S, stopping=True)) == {
        "running": "stopping"
    }


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_the_ping_is_cached_for_its_interval() -> None:
    clock = Clock()
    calls: list[float] = []
    ping = CachedPing(lambda: calls.append(clock.now_s) or True, 1.0, clock)

    answers = [ping.ok()]
    clock.now_s += 0.5
    answers.append(ping.ok())
    clock.now_s += 0.6
    answers.append(ping.ok())

    assert answers == [True, True, True]
    assert calls == [100.0, 101.1]


def test_a_ping_that_raises_counts_as_unreachable() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("no redis")

    assert CachedPing(refused).ok() is False


@dataclass
class FakePipeline:
    """The attributes of ScorerPipeline that readiness reads."""

    assignment: set[tuple[str, int]] = field(default_factory=set)
    lag_records: int = 0
    polled_at_s: float | None = 100.0
    committed_at_s: float = 100.0
    silent_brokers: dict[int, float] = field(default_factory=dict)
    silence_judged: bool = True
    kafka_waited_s: float = 0.0
    redis_waited_s: float = 0.0


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


@pytest.fixture
def served() -> Iterator[tuple[str, Readiness]]:
    readiness = Readiness(CachedPing(lambda: True), STALL_S, threading.Event(), Clock())
    metrics = Metrics()
    metrics.set_rules_version("rules-1+abc")
    server = ProbeServer("127.0.0.1", 0, metrics.registry, readiness)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", readiness
    finally:
        server.close()


def test_the_server_answers_health_readiness_and_metrics(
    served: tuple[str, Readiness],
) -> None:
    base, readiness = served

    assert get(f"{base}/healthz")[:2] == (200, b"ok\n")

    status, body, kind = get(f"{base}/readyz")
    assert (status, kind) == (503, "application/json")
    assert json.loads(body)["checks"]["running"]["ok"] is False

    # Built, but the consume loop has not polled yet: still starting.
    readiness.pipeline = FakePipeline(assignment={("t", 0)}, polled_at_s=None)
    status, body, _ = get(f"{base}/readyz")
    assert status == 503
    assert json.loads(body)["checks"] == {
        "running": {"ok": False, "detail": "starting: connecting to Kafka and Redis"}
    }

    readiness.pipeline = FakePipeline(assignment={("t", 0)})
    status, body, _ = get(f"{base}/readyz")
    assert status == 200
    assert json.loads(body)["ready"] is True

    status, body, kind = get(f"{base}/metrics")
    assert status == 200
    assert kind.startswith("text/plain; version=")
    labels = f'rules_version="rules-1+abc",version="{__version__}"'
    assert f"scorer_build_info{{{labels}}} 1.0".encode() in body

    assert get(f"{base}/nothing")[0] == 404


def test_the_request_log_leaves_the_query_out(
    served: tuple[str, Readiness], caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = served
    caplog.set_level(logging.DEBUG, logger="scorer.probes")

    assert get(f"{base}/metrics?email=jane.sentinel%40example.test&x=1")[0] == 200
    assert get(f"{base}/jane.sentinel@example.test")[0] == 404
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"GET /x?a=1 jane.sentinel@example.test HTTP/1.1\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.0 400")  # echoed to its sender

    for _ in range(50):  # the handler threads log after they have answered
        lines = [r.getMessage() for r in caplog.records if r.name == "scorer.probes"]
        if len(lines) == 3:
            break
        time.sleep(0.1)
    assert sorted(lines) == [
        "http request method=(other) path=(other) status=400",
        "http request method=GET path=(other) status=404",
        "http request method=GET path=/metrics status=200",
    ]


def test_a_taken_port_is_a_clear_error(served: tuple[str, Readiness]) -> None:
    base, readiness = served
    port = int(base.rsplit(":", 1)[1])

    with pytest.raises(ScorerError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
        ProbeServer("127.0.0.1", port, Metrics().registry, readiness)


class HeldReadiness(Readiness):
    """Readiness that answers only once the test lets it: the client can leave."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(CachedPing(lambda: True), STALL_S, threading.Event())
        self.asked = threading.Event()
        self.answer = threading.Event()
        self.fail = fail

    def checks(self) -> list[Check]:
        self.asked.set()
        self.answer.wait(timeout=5)
        if self.fail:
            raise RuntimeError("the readiness check broke")
        return super().checks()


def ask_and_leave(readiness: HeldReadiness) -> None:
    """A probe client that gives up before the answer, as `curl -m 3` does."""
    server = ProbeServer("127.0.0.1", 0, Metrics().registry, readiness)
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert readiness.asked.wait(timeout=5)
        # Linger 0: close with a reset, so the answer cannot be written.
        linger = struct.pack("ii", 1, 0)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        client.close()
        readiness.answer.set()
    finally:
        server.close()  # waits for nothing: handler threads are daemons


def handled(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The log records of the request's end, once its thread has logged."""
    for _ in range(50):
        records = [r for r in caplog.records if r.name == "scorer.probes"]
        ends = ("probe client ", "probe request ")
        done = [r for r in records if r.getMessage().startswith(ends)]
        if done:
            return done
        time.sleep(0.1)
    return []


def test_a_client_that_went_away_is_one_debug_line_and_no_traceback(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="scorer.probes")

    ask_and_leave(HeldReadiness())

    records = handled(caplog)
    assert [r.levelname for r in records] == ["DEBUG"]
    assert records[0].getMessage().startswith("probe client went away ")
    assert records[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err


def test_a_failing_handler_is_one_error_line_and_no_traceback(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="scorer.probes")
    readiness = HeldReadiness(fail=True)
    readiness.answer.set()
    server = ProbeServer("127.0.0.1", 0, Metrics().registry, readiness)
    server.start()
    try:
        # The server closes the connection without an answer.
        with pytest.raises(OSError):
            get(f"http://127.0.0.1:{server.port}/readyz")
    finally:
        server.close()

    records = handled(caplog)
    assert [r.levelname for r in records] == ["ERROR"]
    assert records[0].getMessage() == (
        "probe request failed error=RuntimeError: the readiness check broke"
    )
    assert records[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err


def test_a_stalled_client_is_dropped_after_the_timeout() -> None:
    readiness = HeldReadiness()
    server = ProbeServer("127.0.0.1", 0, Metrics().registry, readiness, 0.3)
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends

        # The server closes its end: the read sees the end of the stream.
        assert client.recv(1024) == b""
        client.close()
    finally:
        server.close()
