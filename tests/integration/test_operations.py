"""Operating a real scorer: probes, consumer lag, Prometheus, log volume.

Real Kafka and Redis (the session's, or one of this module's own where a
test stops Redis), a real Prometheus from Debian's package scraping a real
`scorer run` process on loopback.
"""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from confluent_kafka import Producer, TopicPartition
from harness import WAIT_S, TopicReader, make_config, produce, running_scorer

import scorer.pipeline
from scorer import service
from scorer.config import default_config_path
from scorer.events import format_time
from scorer.metrics import Metrics
from scorer.replay import Line, Replay
from scorer.sandbox import free_ports
from scorer.sandbox.kafka import KafkaBroker, create_topics
from scorer.sandbox.prometheus import PrometheusServer
from scorer.sandbox.redis import RedisServer
from scorer.wire import JsonCodec

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
T0_MS = 1_750_000_000_000
LEADS = 60

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = WAIT_S
) -> T:
    """Call `probe` until `done` accepts its answer; the last answer is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"still {answer!r} after {timeout_s:.0f}s")
        time.sleep(0.2)


def get(url: str) -> tuple[int, Any]:
    """Status and body (JSON when it is JSON) of a GET; (0, None) if refused."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def topics(events: str, out: str, dlq: str) -> dict[str, Any]:
    return {
        "events": [{"name": events, "format": "json"}],
        "output": {"name": out, "format": "json"},
        "dead_letter": dlq,
    }


def failed_checks(body: Any) -> dict[str, str]:
    checks = body["checks"].items()
    return {name: check["detail"] for name, check in checks if not check["ok"]}


def test_readyz_waits_for_partitions_and_fails_while_redis_is_down(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq")
    (port,) = free_ports(1)
    with RedisServer() as redis_server:
        config = make_config(
            kafka_bootstrap,
            redis_server.url,
            topics(events, out, dlq),
            metrics={"port": port, "host": "127.0.0.1"},
        )
        metrics, stop = Metrics(), threading.Event()
        probes = service.start_probes(config, metrics, stop)
        assert probes is not None
        readyz = f"http://127.0.0.1:{port}/readyz"
        thread = None
        try:
            status, body = get(readyz)
            assert (status, failed_checks(body)) == (
                503,
                {"running": "starting: connecting to Kafka and Redis"},
            )
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200

            # Built but not yet polling: still starting, not a consume loop
            # that looks fine because it is young.
            pipeline = service.build_pipeline(config, metrics)
            probes.readiness.pipeline = pipeline
            status, body = get(readyz)
            assert (status, failed_checks(body)) == (
                503,
                {"running": "starting: connecting to Kafka and Redis"},
            )

            thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
            thread.start()
            status, body = wait_for(lambda: get(readyz), lambda a: a[0] == 200)
            assert body["checks"]["partitions"]["detail"] == "3 assigned"

            redis_server.stop()
            status, body = wait_for(lambda: get(readyz), lambda a: a[0] == 503)
            assert failed_checks(body) == {"redis": "PING failed"}

            redis_server.restart()
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)

            stop.set()
            status, body = get(readyz)
            assert (status, failed_checks(body)) == (503, {"running": "stopping"})
        finally:
            stop.set()
            if thread is not None:
                thread.join(WAIT_S)
            probes.close()
    assert thread is not None and not thread.is_alive()


def test_readyz_tells_a_silent_broker_from_a_quiet_topic(
    redis_url: str, tmp_path: Path
) -> None:
    """A frozen broker keeps its connections open and answers nothing; a
    stopped one leaves no leader. Neither lets a fetch through, unlike a
    quiet topic, which the broker answers every fetch.wait.max.ms."""
    (port,) = free_ports(1)
    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, {"events": 2, "out": 1, "dlq": 1})
        kafka = {
            "bootstrap_servers": bootstrap,
            "group_id": "silence",
            "consumer_settings": {"statistics.interval.ms": 500},
        }
        config = make_config(
            bootstrap,
            redis_url,
            topics("events", "out", "dlq"),
            kafka=kafka,
            metrics={"port": port, "host": "127.0.0.1", "silent_after": "3s"},
        )
        scorer = ProbedScorer(config, port)
        readyz, metrics = scorer.readyz, scorer.metrics
        try:
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)
            # Twice the limit of a quiet topic, and still ready.
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 6.0:
                assert get(readyz)[0] == 200
                time.sleep(0.5)
            quiet_silence = silence_s(metrics)

            broker.pause()
            try:
                _, frozen = wait_for(lambda: get(readyz), lambda a: a[0] == 503)
                frozen_silence = silence_s(metrics)
            finally:
                broker.resume()
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)

            broker.stop()
            try:
                _, stopped = wait_for(lambda: get(readyz), lambda a: a[0] == 503)
            finally:
                broker.restart()
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)
        finally:
            scorer.close()

    assert quiet_silence is not None and quiet_silence < 1.0
    assert frozen_silence is not None and frozen_silence >= 3.0
    assert list(failed_checks(frozen)) == ["kafka"]
    assert failed_checks(frozen)["kafka"].startswith("broker 1 silent ")
    assert list(failed_checks(stopped)) == ["kafka"]
    assert failed_checks(stopped)["kafka"].startswith("partitions without a leader")
    assert not scorer.thread.is_alive()


def test_readyz_fails_while_a_redis_that_answers_ping_refuses_the_scripts(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    """Out of memory, Redis still answers PING while every batch waits."""
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=1)
    (port,) = free_ports(1)
    with RedisServer() as redis_server:
        config = make_config(
            kafka_bootstrap,
            redis_server.url,
            topics(events, out, dlq),
            metrics={"port": port, "host": "127.0.0.1", "silent_after": "3s"},
        )
        scorer = ProbedScorer(config, port)
        readyz = scorer.readyz
        outputs = TopicReader(kafka_bootstrap, out, JsonCodec())
        client = redis_server.client()
        try:
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)
            client.config_set("maxmemory", "1")  # every write refused: OOM
            view = page_view("oom", "L1", "/pricing")
            produce(kafka_bootstrap, events, [view], JsonCodec())
            _, refusing = wait_for(lambda: get(readyz), lambda a: a[0] == 503)
            client.config_set("maxmemory", "0")
            wait_for(lambda: get(readyz), lambda a: a[0] == 200)
            outputs.read_until(lambda got: len(got) >= 1)
        finally:
            scorer.close()
            outputs.close()

    assert list(failed_checks(refusing)) == ["redis"]
    assert failed_checks(refusing)["redis"].startswith(
        "PING answered, but a batch waited "
    )
    assert {m["source_event_id"] for m in outputs.decoded()} == {"oom"}
    assert not scorer.thread.is_alive()


class ProbedScorer:
    """The live pipeline on a thread, with its /readyz on `port`."""

    def __init__(self, config: Any, port: int) -> None:
        self.metrics, self.stop = Metrics(), threading.Event()
        probes = service.start_probes(config, self.metrics, self.stop)
        assert probes is not None
        self.probes = probes
        self.readyz = f"http://127.0.0.1:{port}/readyz"
        pipeline = service.build_pipeline(config, self.metrics)
        probes.readiness.pipeline = pipeline
        self.thread = threading.Thread(
            target=pipeline.run, args=(self.stop,), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        self.probes.close()


def silence_s(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("scorer_kafka_silence_seconds")


def page_view(event_id: str, lead: str, url: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": format_time(T0_MS),
        "url": url,
    }


def test_the_scorers_consumer_counts_and_logs_a_failed_async_commit(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=1)
    config = make_config(kafka_bootstrap, redis_url, topics(events, out, dlq))
    metrics = Metrics()
    pipeline = service.build_pipeline(config, metrics)

    # The coordinator refuses it: the outcome reaches only librdkafka's
    # callback, served by a later poll.
    missing = TopicPartition(f"{events}.missing", 0, 5)
    pipeline.consumer.commit(offsets=[missing], asynchronous=True)

    def failed_commits() -> float | None:
        pipeline.consumer.poll(0.2)
        return metrics.registry.get_sample_value(
            "scorer_kafka_errors_total", {"kind": "commit"}
        )

    try:
        assert wait_for(failed_commits, lambda n: n == 1.0) == 1.0
    finally:
        pipeline.consumer.close()
    warnings = [
        r.getMessage() for r in caplog.records if "commit failed" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert f"{events}.missing[0]: Broker: Unknown topic or partition" in warnings[0]


def test_consumer_lag_comes_from_the_brokers_watermarks(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=1)
    records = [page_view(f"e{n}", f"lead-{n % 40}", "/pricing") for n in range(600)]
    produce(kafka_bootstrap, events, records, JsonCodec())
    config = make_config(
        kafka_bootstrap,
        redis_url,
        topics(events, out, dlq),
        pipeline={"batch_size": 50, "batch_timeout_ms": 20},
    )
    # Read the lag after every batch, not every 5 s.
    monkeypatch.setattr(scorer.pipeline, "LAG_INTERVAL_S", 0.0)
    metrics = Metrics()
    gate, held = threading.Event(), threading.Event()
    hooked: list[int] = []

    def hold_the_second_batch(batch: Any, _results: Any) -> None:
        hooked.append(len(batch.messages))
        if len(hooked) == 2:
            held.set()
            gate.wait(WAIT_S)

    with running_scorer(config, metrics) as pipeline:
        pipeline.on_batch = hold_the_second_batch
        assert held.wait(WAIT_S)
        lag_while_held = gauge(metrics, "scorer_consumer_lag_records")
        consumed = metric_sum(metrics, "scorer_events_consumed_total")
        (position,) = pipeline.consumer.position([TopicPartition(events, 0)])
        gate.set()
        final = wait_for(
            lambda: gauge(metrics, "scorer_consumer_lag_records"),
            lambda lag: (
                lag == {(events, "0"): 0.0}
                and metric_sum(metrics, "scorer_events_consumed_total") == 600
            ),
        )

    # The lag is read right after each consume: the broker's high watermark
    # (600) less the offset after the last batch published. At the reading
    # before the held (second) batch was published, that was the first
    # batch's end. The consumer's position is ahead, past the batches in
    # flight (two at most), which a lag from it would leave out.
    assert lag_while_held == {(events, "0"): 600 - hooked[0]}
    assert consumed <= position.offset <= consumed + 2 * 50
    assert position.offset > consumed == hooked[0] + hooked[1]
    assert final == {(events, "0"): 0.0}
    assert pipeline.lag_records == 0


def test_consumer_lag_grows_while_a_batch_waits_for_redis(
    kafka_bootstrap: str, fresh_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held consumer fetches nothing; the brokers are asked for the lag."""
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=1)
    monkeypatch.setattr(scorer.pipeline, "LAG_INTERVAL_S", 0.0)
    metrics = Metrics()
    waiting = {"dependency": "redis"}
    with RedisServer() as redis_server:
        config = make_config(
            kafka_bootstrap, redis_server.url, topics(events, out, dlq)
        )
        client = redis_server.client()
        with running_scorer(config, metrics) as pipeline:
            produce(
                kafka_bootstrap,
                events,
                [page_view("e0", "L0", "/pricing")],
                JsonCodec(),
            )
            wait_for(
                lambda: metric_sum(metrics, "scorer_last_batch_timestamp_seconds"),
                lambda committed_at: committed_at > 0,
            )
            client.config_set("maxmemory", "1")  # every write refused: OOM
            produce(
                kafka_bootstrap,
                events,
                [page_view("e1", "L1", "/pricing")],
                JsonCodec(),
            )
            wait_for(
                lambda: metrics.registry.get_sample_value(
                    "scorer_waiting_for_dependency", waiting
                ),
                lambda held: held == 1.0,
            )
            later = [page_view(f"f{n}", f"L{n}", "/pricing") for n in range(30)]
            produce(kafka_bootstrap, events, later, JsonCodec())
            while_held = wait_for(
                lambda: gauge(metrics, "scorer_consumer_lag_records"),
                lambda lag: lag == {(events, "0"): 31.0},
            )
            still_waiting = metrics.registry.get_sample_value(
                "scorer_waiting_for_dependency", waiting
            )
            client.config_set("maxmemory", "0")
            wait_for(lambda: pipeline.lag_records, lambda lag: lag == 0)

    # The held record and the 30 after it, read while the batch still waited.
    assert while_held == {(events, "0"): 31.0}
    assert still_waiting == 1.0
    assert metric_sum(metrics, "scorer_events_consumed_total") == 32


def test_a_scorer_started_during_a_redis_outage_counts_its_held_batch(
    kafka_bootstrap: str, fresh_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing published since the assignment: the lag starts at its batch,
    and partitions not in it (never fetched, so without a position) at the
    group's start."""
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=3)
    monkeypatch.setattr(scorer.pipeline, "LAG_INTERVAL_S", 0.0)
    views = [page_view(f"e{n}", f"L{n}", "/pricing") for n in range(60)]
    produce(kafka_bootstrap, events, views, JsonCodec())
    metrics = Metrics()
    with RedisServer() as redis_server:
        config = make_config(
            kafka_bootstrap,
            redis_server.url,
            topics(events, out, dlq),
            pipeline={"batch_size": 10},
        )
        client = redis_server.client()
        client.config_set("maxmemory", "1")  # every write refused: OOM
        with running_scorer(config, metrics) as pipeline:
            wait_for(
                lambda: metrics.registry.get_sample_value(
                    "scorer_waiting_for_dependency", {"dependency": "redis"}
                ),
                lambda held: held == 1.0,
            )
            while_held = wait_for(
                lambda: gauge(metrics, "scorer_consumer_lag_records"),
                lambda lag: len(lag) == 3 and sum(lag.values()) == 60,
            )
            client.config_set("maxmemory", "0")
            wait_for(
                lambda: metric_sum(metrics, "scorer_events_consumed_total"),
                lambda consumed: consumed == 60,
            )
            wait_for(lambda: pipeline.lag_records, lambda lag: lag == 0)

    assert sum(while_held.values()) == 60


def test_no_lag_is_left_by_a_transactions_marker_once_all_is_published(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=1)
    upstream = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"up-{events}"}
    )
    upstream.init_transactions(WAIT_S)
    upstream.begin_transaction()
    for n in range(10):
        record = page_view(f"e{n}", f"lead-{n}", "/pricing")
        upstream.produce(events, JsonCodec().encode(record))
    upstream.commit_transaction(WAIT_S)
    config = make_config(kafka_bootstrap, redis_url, topics(events, out, dlq))
    monkeypatch.setattr(scorer.pipeline, "LAG_INTERVAL_S", 0.0)
    metrics = Metrics()

    with running_scorer(config, metrics) as pipeline:
        # The records hold offsets 0-9, the commit marker 10: the high
        # watermark is 11, one past the last record published.
        lag = wait_for(
            lambda: (
                metric_sum(metrics, "scorer_events_consumed_total"),
                gauge(metrics, "scorer_consumer_lag_records"),
            ),
            lambda seen: seen == (10, {(events, "0"): 0.0}),
        )

    assert lag == (10, {(events, "0"): 0.0})
    assert pipeline.lag_records == 0


def gauge(metrics: Metrics, name: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name
    }


def metric_sum(metrics: Metrics, name: str) -> float:
    samples = [s for f in metrics.registry.collect() for s in f.samples]
    return sum(s.value for s in samples if s.name == name)


def lead_journey(lead: str) -> list[dict[str, Any]]:
    """Nine events that take a lead over the MQL threshold and back below.

    Default rules, no decay (one instant): pricing 20, demo 30, four blog
    reads 3 (the weekly cap), two webinar registrations 10: 63, an MQL; then
    a careers page -15: 48, below 60 - 10.
    """
    urls = ["/pricing", "/demo", *[f"/blog/{n}" for n in range(4)], None, None]
    journey = []
    for step, url in enumerate([*urls, "/careers"]):
        event_id = f"{lead}/{step}"
        if url is None:
            journey.append(
                {
                    "event_id": event_id,
                    "lead_id": lead,
                    "type": "webinar",
                    "occurred_at": format_time(T0_MS),
                    "webinar_id": f"launch-{step}",
                    "status": "registered",
                }
            )
        else:
            journey.append(page_view(event_id, lead, url))
    return journey


def traffic() -> tuple[list[bytes], list[str]]:
    """Values and keys: journeys, repeats, pages no rule scores, bad JSON."""
    records: list[dict[str, Any]] = []
    for n in range(LEADS):
        records += lead_journey(f"lead-{n:03d}")
    records += [records[9 * n] for n in range(10)]  # redelivered
    records += [page_view(f"about-{n}", f"lead-{n:03d}", "/about") for n in range(5)]
    values = [json.dumps(r).encode() for r in records] + [b"{not json"] * 5
    keys = [r["lead_id"] for r in records] + ["lead-bad"] * 5
    return values, keys


def replayed(values: list[bytes]) -> tuple[Any, int]:
    """What the same records give in `scorer replay`: stats, score changes."""
    config = make_config("unused:9092", "redis://unused", topics("e", "o", "d"))
    replay = Replay(config, errors=io.StringIO())
    out = io.BytesIO()
    stats = replay.run((Line("t", n, v) for n, v in enumerate(values, 1)), out)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    # A redelivered record's copies share their output id: counted once.
    changes = len({o["event_id"] for o in outputs if o["type"] == "score_changed"})
    return stats, changes


def write_config(path: Path, events: str, out: str, dlq: str) -> Path:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["topics"] = topics(events, out, dlq)
    # Deliberately wrong here: the command-line flags must win.
    raw["kafka"] = {"bootstrap_servers": "127.0.0.1:1", "group_id": f"ops-{out}"}
    raw["redis"] = {"url": "redis://127.0.0.1:1/0", "key_prefix": out[-8:]}
    raw["pipeline"] = {"batch_size": 100, "batch_timeout_ms": 20}
    raw["logging"] = {"format": "text", "level": "INFO"}
    path.write_text(yaml.safe_dump(raw))
    return path


def test_prometheus_records_what_the_scorer_counted(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any, tmp_path: Path
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not on PATH: scripts/system-deps.sh installs it")
    events, out, dlq = fresh_topics("events", "out", "dlq")
    values, keys = traffic()
    produce(kafka_bootstrap, events, [], None, keys=keys, raw_values=values)
    stats, score_changes = replayed(values)
    config_path = write_config(tmp_path / "config.yaml", events, out, dlq)
    (port,) = free_ports(1)
    stderr_path = tmp_path / "scorer.log"

    with (
        stderr_path.open("w") as stderr,
        PrometheusServer([f"127.0.0.1:{port}"], rule_files=[ALERTS]) as prometheus,
    ):
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "scorer.cli", "run"),
                *("--config", str(config_path), "--metrics-port", str(port)),
                *("--bootstrap-servers", kafka_bootstrap, "--redis-url", redis_url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "SCORER_LOGGING__FORMAT": "json"},
        )
        try:
            seen = wait_for(
                lambda: scraped(prometheus),
                lambda s: s["consumed"] == len(values) and s["changes"] > 0,
            )
            predicted = expected(stats, values, score_changes)
            counts = wait_for(lambda: scraped(prometheus), lambda s: s == predicted)
            readiness = get(f"http://127.0.0.1:{port}/readyz")
            health = get(f"http://127.0.0.1:{port}/healthz")
            build = prometheus.query("scorer_build_info")
            latency = prometheus.value("sum(scorer_event_to_output_seconds_count)")
            lag = wait_for(
                lambda: prometheus.query("scorer_consumer_lag_records"),
                lambda series: (
                    len(series) == 3 and all(s["value"][1] == "0" for s in series)
                ),
            )
            rules = prometheus.api("rules")["groups"]
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(WAIT_S)

    assert seen["consumed"] == len(values)
    assert counts["changes"] == score_changes
    assert counts["mql"] == {"up": float(LEADS), "down": float(LEADS)}
    assert (readiness[0], readiness[1]["ready"]) == (200, True)
    assert health == (200, b"ok\n")
    assert build[0]["metric"]["rules_version"].startswith("default-2026.12+")
    assert latency is not None and latency > 0
    assert {s["metric"]["topic"] for s in lag} == {events}
    # Every rule of the file loaded, in one group.
    written = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [len(g["rules"]) for g in rules] == [len(g["rules"]) for g in written]
    assert {r["health"] for r in rules[0]["rules"]} == {"ok"}
    assert code == 0
    check_log(stderr_path.read_text(), len(values))


def scraped(prometheus: PrometheusServer) -> dict[str, Any]:
    def by(label: str, promql: str) -> dict[str, float]:
        return {
            s["metric"][label]: float(s["value"][1]) for s in prometheus.query(promql)
        }

    return {
        "consumed": prometheus.value("sum(scorer_events_consumed_total)"),
        "outcomes": by("outcome", "sum by (outcome) (scorer_records_total)"),
        "dead": by("reason", "sum by (reason) (scorer_dead_lettered_total)"),
        "mql": by("direction", "sum by (direction) (scorer_mql_crossings_total)"),
        "changes": prometheus.value("sum(scorer_score_changes_total)"),
    }


def expected(stats: Any, values: list[bytes], changes: int) -> dict[str, Any]:
    """The counters that replaying the same records predicts."""
    outcomes = {name: float(n) for name, n in stats.outcomes.items()}
    outcomes["dead_lettered"] = float(sum(stats.bad.values()))
    return {
        "consumed": float(len(values)),
        "outcomes": outcomes,
        "dead": {reason: float(n) for reason, n in stats.bad.items()},
        "mql": {"up": float(stats.mql_up), "down": float(stats.mql_down)},
        "changes": float(changes),
    }


def check_log(text: str, events: int) -> None:
    """JSON lines only; lifecycle at INFO, never a line per event."""
    documents = [json.loads(line) for line in text.splitlines()]
    info = [d for d in documents if d["level"] == "INFO"]
    dead = [d for d in documents if d["message"].startswith("dead-lettered")]

    assert {"time", "level", "logger", "message"} <= set(documents[0])
    assert 3 <= len(info) <= 15, [d["message"] for d in info]
    assert len(info) * 30 < events
    # Lead ids are lead-<n>; a checkout path may hold "lead-scorer".
    assert not [d for d in info if re.search(r"\blead-\d", json.dumps(d))]
    assert len(dead) == 5
    assert {d["level"] for d in dead} == {"WARNING"}
    assert {d["reason"] for d in dead} == {"bad_json"}
    assert all(d["topic"].startswith("events-") and d["offset"] for d in dead)


def test_the_compose_demo_producer_feeds_the_topics(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    views, downloads = fresh_topics("views", "downloads")
    importer = subprocess.run(
        [
            *(sys.executable, "-m", "scorer.cli", "import-access-log"),
            str(ROOT / "examples" / "access_log" / "apache_logs"),
        ],
        capture_output=True,
        check=True,
    )
    command = [
        *(sys.executable, "-m", "scorer.cli", "produce"),
        *("--config", str(ROOT / "examples" / "access_log" / "rules.yaml")),
        *("--bootstrap-servers", kafka_bootstrap),
        *("--route", f"page_view={views}", "--route", f"content_download={downloads}"),
        "-",
    ]

    result = subprocess.run(
        command, input=importer.stdout, capture_output=True, check=False
    )

    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in importer.stdout.splitlines()]
    by_type = {
        kind: [r for r in records if r["type"] == kind]
        for kind in ("page_view", "content_download")
    }
    summary = result.stderr.decode().strip().splitlines()[-1]
    assert summary == (
        f"produce: lines={len(records)} produced={len(records)} "
        f"topic.{downloads}={len(by_type['content_download'])} "
        f"topic.{views}={len(by_type['page_view'])} bad=0 delivery_failed=0"
    )
    reader = TopicReader(kafka_bootstrap, downloads, JsonCodec())
    reader.read_until(lambda m: len(m) >= len(by_type["content_download"]))
    reader.read_quiet(0.5)
    received = reader.decoded()
    keys = {m.key().decode() for m in reader.messages}
    reader.close()
    assert sorted(received, key=json.dumps) == sorted(
        by_type["content_download"], key=json.dumps
    )
    assert keys == {r["lead_id"] for r in by_type["content_download"]}
