"""The metric names against Prometheus' conventions, checked by promtool."""

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from scorer import __version__
from scorer.metrics import Metrics


def busy_metrics() -> Metrics:
    """Metrics with every family holding at least one sample."""
    m = Metrics()
    m.set_rules_version("v1+0123abcd")
    m.consumed.labels("t").inc()
    m.records.labels("t", "scored").inc()
    m.dead_lettered.labels("t", "bad_json").inc()
    m.score_changes.inc()
    m.late_events.labels("late").inc()
    m.latency.observe(0.2)
    m.batch_duration.observe(0.01)
    m.batch_size.observe(10)
    m.lag.labels("t", "0").set(5)
    m.assigned.set(1)
    m.redis_errors.inc()
    m.redis_retries.inc()
    m.produce_retries.inc()
    m.last_batch.set(1.0)
    m.last_poll.set(1.0)
    return m


def test_promtool_finds_no_problem_with_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH: scripts/system-deps.sh installs it")

    exposition = generate_latest(busy_metrics().registry)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout == b""


def test_no_metric_is_labelled_by_lead() -> None:
    families = list(busy_metrics().registry.collect())
    labels = {name for f in families for s in f.samples for name in s.labels}

    assert labels == {
        "topic",
        "outcome",
        "reason",
        "direction",
        "lateness",
        "le",
        "partition",
        "kind",
        "dependency",
        "version",
        "rules_version",
        "where",
    }


def test_known_series_exist_before_their_first_increment() -> None:
    exposition = generate_latest(Metrics().registry).decode()

    assert 'scorer_mql_crossings_total{direction="down"} 0.0' in exposition
    assert 'scorer_late_events_total{lateness="too_late"} 0.0' in exposition
    assert 'scorer_rebalances_total{kind="lost"} 0.0' in exposition
    assert 'scorer_kafka_errors_total{kind="client"} 0.0' in exposition
    assert 'scorer_waiting_for_dependency{dependency="redis"} 0.0' in exposition
    assert (
        f'scorer_build_info{{rules_version="",version="{__version__}"}}' in exposition
    )


def test_lag_of_a_revoked_partition_is_dropped() -> None:
    m = Metrics()
    m.lag.labels("t", "0").set(3)
    m.lag.labels("t", "1").set(4)

    m.forget_lag("t", 0)
    m.forget_lag("t", 9)  # never reported: nothing to drop

    samples = [s for f in m.registry.collect() for s in f.samples]
    lag = {
        s.labels["partition"]: s.value
        for s in samples
        if s.name.endswith("lag_records")
    }
    assert lag == {"1": 4.0}


def test_a_backlog_of_minutes_is_told_apart_from_ten_seconds() -> None:
    """After an outage, p99 must read minutes, not the 10 s bucket's bound."""
    m = Metrics()
    for latency_s in (0.2, 45.0, 240.0):
        m.latency.observe(latency_s)

    buckets = {
        s.labels["le"]: s.value
        for f in m.registry.collect()
        for s in f.samples
        if s.name == "scorer_event_to_output_seconds_bucket"
    }
    assert (buckets["10.0"], buckets["60.0"], buckets["300.0"]) == (1.0, 2.0, 3.0)
    assert buckets["+Inf"] == 3.0
