"""The scorer's HTTP endpoints: /metrics, /healthz and /readyz.

One small threaded HTTP server serves all three on `metrics.port`:
- `/metrics`: the Prometheus exposition of the scorer's registry;
- `/healthz`: 200 while the process runs (for liveness probes);
- `/readyz`: 200 when the scorer does its job, else 503, with a JSON body
  that names each check. Ready means: partitions are assigned, Redis answers
  a PING and takes the scripts, the consume loop turns, the Kafka brokers
  leading fetched partitions answer, and a consumer that lags is committing.

The readiness rules are the pure function `judge`; `Readiness` gathers its
inputs from the running pipeline and a cached Redis PING.
"""

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scorer.errors import ScorerError
from scorer.silence import describe

log = logging.getLogger(__name__)

# A probe asks often; one PING per this interval answers all of them.
PING_CACHE_S = 1.0
# Readiness must answer faster than an orchestrator's probe timeout (1 s by
# default in Kubernetes), so the PING gets half of that.
PING_TIMEOUT_S = 0.5
TEXT = "text/plain; charset=utf-8"


# Longer than any scrape or probe of a healthy scorer takes to send its
# request and read the answer.
CLIENT_TIMEOUT_S = 10.0
_PATHS = ("/metrics", "/healthz", "/readyz")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What the pipeline last did, as seconds ago (monotonic clock)."""

    assigned_partitions: int
    lag_records: int
    polled_ago_s: float
    committed_ago_s: float
    # Broker id to seconds without an answer (scorer.silence).
    silent_brokers: dict[int, float]
    silence_judged: bool
    # How long the batch in flight has waited for the brokers' acks.
    kafka_waited_s: float
    # How long a batch has waited for Redis to take its scripts again.
    redis_waited_s: float


class Progressing(Protocol):
    """The pipeline as readiness sees it (see `scorer.pipeline`)."""

    @property
    def assignment(self) -> set[tuple[str, int]]: ...

    @property
    def lag_records(self) -> int: ...

    @property
    def polled_at_s(self) -> float | None: ...

    @property
    def committed_at_s(self) -> float: ...

    @property
    def silent_brokers(self) -> dict[int, float]: ...

    @property
    def silence_judged(self) -> bool: ...

    @property
    def kafka_waited_s(self) -> float: ...

    @property
    def redis_waited_s(self) -> float: ...


def judge(
    progress: Progress | None,
    redis_ok: bool,
    stall_after_s: float,
    stopping: bool,
    silent_after_s: float = math.inf,
) -> list[Check]:
    """Every readiness check; the scorer is ready when all of them pass."""
    if stopping:
        return [Check("running", False, "stopping")]
    if progress is None:
        return [Check("running", False, "starting: connecting to Kafka and Redis")]

    lagging_still = (
        progress.lag_records > 0 and progress.committed_ago_s > stall_after_s
    )
    return [
        Check(
            "partitions",
            progress.assigned_partitions > 0,
            f"{progress.assigned_partitions} assigned",
        ),
        _redis_check(progress, redis_ok, silent_after_s),
        Check(
            "consume_loop",
            progress.polled_ago_s <= stall_after_s,
            f"last poll {progress.polled_ago_s:.1f}s ago",
        ),
        _kafka_check(progress, silent_after_s),
        Check(
            "commits",
            not lagging_still,
            f"lag {progress.lag_records} records, "
            f"last commit (or start) {progress.committed_ago_s:.1f}s ago",
        ),
    ]


def _redis_check(progress: Progress, redis_ok: bool, silent_after_s: float) -> Check:
    """Redis answers PING, and takes the scorer's scripts.

    Out of memory, or refusing the script (an ACL, an evicting policy), it
    still answers PING while every batch waits; a wait as long as a Kafka
    silence counts as Redis being away.
    """
    if not redis_ok:
        return Check("redis", False, "PING failed")
    if progress.redis_waited_s >= silent_after_s:
        waited = f"{progress.redis_waited_s:.1f}s"
        return Check("redis", False, f"PING answered, but a batch waited {waited}")
    return Check("redis", True, "PING answered")


def _kafka_check(progress: Progress, silent_after_s: float) -> Check:
    """The brokers answer: fetches, and the outputs' acks (scorer.silence).

    A batch waiting for acks holds the consumer, which then fetches nothing
    to judge the brokers by: a wait as long as a silence counts as one.
    """
    silent = sorted(progress.silent_brokers.items())
    if silent:
        return Check("kafka", False, ", ".join(describe(*s) for s in silent))
    if progress.kafka_waited_s >= silent_after_s:
        waited = f"{progress.kafka_waited_s:.1f}s"
        return Check("kafka", False, f"outputs unacknowledged for {waited}")
    if not progress.silence_judged:
        return Check("kafka", True, "silence not judged: statistics.interval.ms is 0")
    return Check("kafka", True, "the brokers of fetched partitions answer")


class CachedPing:
    """A Redis PING whose answer is reused for `cache_s` seconds."""

    def __init__(
        self,
        ping: Callable[[], object],
        cache_s: float = PING_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at_s: float | None = None
        self._ok = False

    def ok(self) -> bool:
        with self._lock:
            now = self._clock()
            fresh = (
                self._checked_at_s is not None
                and now - self._checked_at_s < self._cache_s
            )
            if not fresh:
                self._ok = self._answers()
                self._checked_at_s = now
            return self._ok

    def _answers(self) -> bool:
        try:
            return bool(self._ping())
        except Exception as exc:  # any failure to answer means not reachable
            log.debug("redis ping failed error=%s", type(exc).__name__)
            return False


class Readiness:
    """Gathers the inputs of `judge` from the live scorer."""

    def __init__(
        self,
        redis: CachedPing,
        stall_after_s: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        silent_after_s: float = math.inf,
    ) -> None:
        self.redis = redis
        self.stall_after_s = stall_after_s
        self.silent_after_s = silent_after_s
        self.stop = stop
        self.clock = clock
        self.pipeline: Progressing | None = None

    def checks(self) -> list[Check]:
        progress = self._progress()
        redis_ok = progress is not None and self.redis.ok()
        stopping = self.stop.is_set()
        stall_s, silent_s = self.stall_after_s, self.silent_after_s
        return judge(progress, redis_ok, stall_s, stopping, silent_s)

    def _progress(self) -> Progress | None:
        # Starting until the consume loop has polled: a loop that never
        # polled has not shown it works, however young it is.
        pipeline = self.pipeline
        polled_at_s = None if pipeline is None else pipeline.polled_at_s
        if pipeline is None or polled_at_s is None:
            return None
        now = self.clock()
        return Progress(
            assigned_partitions=len(pipeline.assignment),
            lag_records=pipeline.lag_records,
            polled_ago_s=now - polled_at_s,
            committed_ago_s=now - pipeline.committed_at_s,
            silent_brokers=pipeline.silent_brokers,
            silence_judged=pipeline.silence_judged,
            kafka_waited_s=pipeline.kafka_waited_s,
            redis_waited_s=pipeline.redis_waited_s,
        )


class ProbeServer:
    """/metrics, /healthz and /readyz on one port, in a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Readiness,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> None:
        self.readiness = readiness
        try:
            self._http = _Server((host, port), registry, readiness, client_timeout_s)
        except OSError as exc:
            message = (
                f"cannot serve metrics on {host}:{port}: {exc.strerror} "
                "(metrics.port, or --metrics-port, sets another)"
            )
            raise ScorerError(message) from exc
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="probes", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when 0 was asked for)."""
        return int(self._http.server_address[1])

    def start(self) -> None:
        self._thread.start()
        host = self._http.server_address[0]
        log.info("probes served host=%s port=%d", host, self.port)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        readiness: Readiness,
        client_timeout_s: float,
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.readiness = readiness
        self.client_timeout_s = client_timeout_s

    def handle_error(self, request: object, client_address: object) -> None:
        """One log line for a request that failed, instead of a traceback.

        socketserver's own prints a traceback on stderr, past the log format
        (JSON lines too). A probe client that gave up before the answer (a
        timeout while the scorer was paused) is no fault of the scorer's.
        """
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # broken pipe, reset, aborted
            log.debug("probe client went away error=%s", type(error).__name__)
            return
        log.error("probe request failed error=%s: %s", type(error).__name__, error)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        # A client that stalls mid-request, or a connection left half open by
        # a network fault, would hold a thread and a descriptor for good.
        super().setup()
        self.connection.settimeout(self.server.client_timeout_s)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, body)
        elif path == "/healthz":
            self._send(HTTPStatus.OK, TEXT, b"ok\n")
        elif path == "/readyz":
            self._ready()
        else:
            self._send(HTTPStatus.NOT_FOUND, TEXT, b"not found\n")

    def _ready(self) -> None:
        checks = self.server.readiness.checks()
        ready = all(check.ok for check in checks)
        body = {
            "ready": ready,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
        }
        status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(status, "application/json", json.dumps(body).encode() + b"\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Probes arrive every few seconds: not worth a line at INFO. Only
        # what the server knows is named: the request line is the client's
        # to write (a query or a path can carry an e-mail address).
        path = getattr(self, "path", "").split("?", 1)[0]
        shown = path if path in _PATHS else "(other)"
        method = self.command if self.command in ("GET", "HEAD", "POST") else "(other)"
        status = code.value if isinstance(code, HTTPStatus) else code
        log.debug("http request method=%s path=%s status=%s", method, shown, status)

    def log_error(self, format: str, *args: object) -> None:
        # A refused request's own line follows, from log_request; a client
        # that stalled gets none, and its text is not the server's to show.
        if format.startswith("Request timed out"):
            log.debug("http request timed out")
