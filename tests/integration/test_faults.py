"""Redis and Kafka go away mid-run; the scorer waits, recovers by itself, and
neither loses nor doubles an event.

Each test feeds events at a steady rate to `scorer run` (a real process),
breaks a real server it started for the purpose, and afterwards compares
the Redis state and the output topic with an offline replay.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from guarantees import (
    Expected,
    Feeder,
    OutputLog,
    Report,
    ScorerProcess,
    check_results,
    make_workload,
    produce_workload,
    raw_config,
    replay_workload,
    wait_caught_up,
)

from scorer.config import Config, parse_config
from scorer.sandbox.kafka import KafkaBroker, create_topics
from scorer.sandbox.redis import RedisServer

PARTITIONS = 4
# Small timeouts make the faults quick to provoke: a pause of Redis longer
# than max.poll.interval.ms would cost the group membership of a consumer
# that stopped polling while it waited.
MAX_POLL_INTERVAL_MS = 10_000
CONSUMER = {"max.poll.interval.ms": MAX_POLL_INTERVAL_MS, "session.timeout.ms": 6000}
REDIS_TIMEOUT_S = 1.0
PAUSE_S = MAX_POLL_INTERVAL_MS / 1000 + 4.0

RATE = 800.0  # events a second, fed throughout
REDIS_EVENTS = 24_000  # 30 s of events
KAFKA_EVENTS = 16_000  # 20 s
# Far longer than a turn of the consume loop, even on a loaded machine.
REJOIN_DELAY_MS = 5000
# deploy/kubernetes: SIGKILL follows SIGTERM after terminationGracePeriodSeconds.
GRACE_PERIOD_S = 60.0


def test_redis_restart_script_flush_and_long_pause(
    kafka_bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    with RedisServer() as server:
        raw = raw_config(
            kafka_bootstrap,
            server.url,
            events,
            out,
            dlq,
            consumer_settings=CONSUMER,
            redis_timeout_s=REDIS_TIMEOUT_S,
        )
        config = parse_config(raw)
        workload = make_workload(REDIS_EVENTS, 800, seed=21)
        expected = replay_workload(config, workload)

        reader = OutputLog(kafka_bootstrap, out)
        feeder = Feeder(kafka_bootstrap, events, workload, RATE)
        scorer = ScorerProcess(raw, tmp_path, "scorer")
        reader.start()
        scorer.start()
        try:
            scorer.wait_assigned()
            feeder.start()
            figures = break_redis(server, scorer, reader)
            feeder.finish()
            wait_caught_up(kafka_bootstrap, raw["kafka"]["group_id"], events)
            figures["retried_writes_found_applied"] = scorer.metric(
                "scorer_records_total", outcome="duplicate"
            )
            figures |= redis_metrics(scorer)
            assert scorer.terminate() == 0
        finally:
            scorer.ensure_stopped()
        outputs = reader.finish()
        figures |= check_results(config, server.url, expected, outputs)

    log = scorer.log_text()
    assert " WARNING scorer.pipeline redis unavailable; batch held" in log
    assert " WARNING scorer.pipeline redis back waited_s=" in log
    assert figures["redis_errors"] > 0 and figures["redis_retries"] > 0
    Report("redis-faults", figures).print()


def break_redis(
    server: RedisServer, scorer: ScorerProcess, reader: OutputLog
) -> dict[str, Any]:
    """Restart, flush the scripts, pause: each after a few seconds of work."""
    figures: dict[str, Any] = {}
    reader.wait_for_more(30.0)
    time.sleep(2.0)

    server.restart()  # appendonly yes: the data survives
    figures["restart_recovery_s"] = recovery_s(reader, time.monotonic())
    time.sleep(2.0)

    client = server.client()
    client.script_flush()
    client.close()
    figures["script_flush_recovery_s"] = recovery_s(reader, time.monotonic())
    time.sleep(2.0)

    figures |= pause_redis(server, scorer, reader)
    return figures


def pause_redis(
    server: RedisServer, scorer: ScorerProcess, reader: OutputLog
) -> dict[str, Any]:
    """SIGSTOP Redis for longer than the client timeout and max.poll.interval."""
    before = rebalances(scorer)
    duplicates = scorer.metric("scorer_records_total", outcome="duplicate")
    server.pause()
    try:
        time.sleep(REDIS_TIMEOUT_S * 3)
        waiting = scorer.metric("scorer_waiting_for_dependency", dependency="redis")
        time.sleep(PAUSE_S - REDIS_TIMEOUT_S * 3)
        # The held consumer is polled while the batch waits: the loop is
        # alive, and /readyz and LoopStuck must not say otherwise.
        polled_ago_s = time.time() - scorer.metric("scorer_last_poll_timestamp_seconds")
    finally:
        server.resume()
    resumed = time.monotonic()
    recovery = recovery_s(reader, resumed)
    # librdkafka reports a lost membership at the next poll: look after it.
    time.sleep(2.0)
    after = rebalances(scorer)
    still_waiting = scorer.metric("scorer_waiting_for_dependency", dependency="redis")
    # The timed-out attempt ran once Redis resumed; its retry found it
    # applied. Those records were delivered once: not duplicates, and their
    # outputs counted (they were not, before the fix).
    duplicates = scorer.metric("scorer_records_total", outcome="duplicate") - duplicates

    assert waiting == 1.0
    assert still_waiting == 0.0
    assert polled_ago_s < 5.0  # about PAUSE_S when the held polls went unseen
    assert duplicates == 0
    # Still in the group: no partition was revoked or lost while it waited.
    assert after == before
    return {"pause_s": PAUSE_S, "pause_recovery_s": recovery}


def rebalances(scorer: ScorerProcess) -> dict[str, float]:
    return {
        kind: scorer.metric("scorer_rebalances_total", kind=kind)
        for kind in ("assign", "revoke", "lost")
    }


def redis_metrics(scorer: ScorerProcess) -> dict[str, float]:
    return {
        "redis_errors": scorer.metric("scorer_redis_errors_total"),
        "redis_retries": scorer.metric("scorer_redis_retries_total"),
    }


def recovery_s(reader: OutputLog, fault_end: float, timeout_s: float = 60.0) -> float:
    """Seconds from the end of a fault to the first output after it."""
    deadline = fault_end + timeout_s
    while (arrival := reader.first_arrival_after(fault_end)) is None:
        assert time.monotonic() < deadline, "no output after the fault"
        time.sleep(0.02)
    return round(arrival - fault_end, 2)


@dataclass
class FaultRun:
    """A scorer fed through one fault, caught up and stopped."""

    config: Config
    expected: Expected
    outputs: list[bytes]
    fault_s: float  # how long the fault took
    recovery_s: float  # from its end to the first output after it
    measured: dict[str, float]  # read from the scorer before it stopped
    log_text: str


def run_through_fault(
    broker: KafkaBroker,
    redis_url: str,
    tmp_path: Path,
    *,
    pipeline: dict[str, Any],
    seed: int,
    fault: Callable[[ScorerProcess], None],
    read_committed: bool = False,
    settle_s: float = 0.0,
    measure: Callable[[ScorerProcess], dict[str, float]] = lambda _scorer: {},
) -> FaultRun:
    """Feed KAFKA_EVENTS to `scorer run` on `broker`, break something mid-way.

    `fault` runs once outputs flow (and `settle_s` more have passed); the
    run ends when the group has committed every event.
    """
    bootstrap = broker.bootstrap_servers
    create_topics(bootstrap, {"events": PARTITIONS, "out": PARTITIONS, "dlq": 1})
    raw = raw_config(
        bootstrap,
        redis_url,
        "events",
        "out",
        "dlq",
        consumer_settings=CONSUMER,
        pipeline=pipeline,
    )
    config = parse_config(raw)
    workload = make_workload(KAFKA_EVENTS, 600, seed=seed)
    expected = replay_workload(config, workload)

    reader = OutputLog(bootstrap, "out", read_committed=read_committed)
    feeder = Feeder(bootstrap, "events", workload, RATE)
    scorer = ScorerProcess(raw, tmp_path, "scorer")
    reader.start()
    scorer.start()
    try:
        scorer.wait_assigned()
        feeder.start()
        reader.wait_for_more(30.0)
        time.sleep(settle_s)
        started = time.monotonic()
        fault(scorer)
        ended = time.monotonic()
        recovery = recovery_s(reader, ended)
        feeder.finish()
        wait_caught_up(bootstrap, raw["kafka"]["group_id"], "events")
        measured = measure(scorer)
        assert scorer.terminate() == 0
    finally:
        scorer.ensure_stopped()
    outputs = reader.finish()
    return FaultRun(
        config,
        expected,
        outputs,
        ended - started,
        recovery,
        measured,
        scorer.log_text(),
    )


@pytest.mark.parametrize("transactional", [False, True], ids=["acked", "transactional"])
def test_broker_restart(redis_url: str, tmp_path: Path, transactional: bool) -> None:
    pipeline = {
        "transactional": transactional,
        "transactional_id_prefix": f"t{uuid.uuid4().hex[:8]}",
    }
    with KafkaBroker() as broker:
        run = run_through_fault(
            broker,
            redis_url,
            tmp_path,
            pipeline=pipeline,
            seed=31,
            fault=lambda _scorer: broker.restart(),  # same ports and log dir
            read_committed=transactional,
            settle_s=3.0,
        )

    figures = check_results(
        run.config,
        redis_url,
        run.expected,
        run.outputs,
        allow_copies=not transactional,
    )
    figures |= {"broker_down_s": round(run.fault_s, 1), "recovery_s": run.recovery_s}
    Report(f"broker-restart transactional={transactional}", figures).print()


def test_a_consumer_frozen_out_of_its_group_is_replaced_and_nothing_is_lost(
    redis_url: str, tmp_path: Path
) -> None:
    """The replacement of a consumer cut off from its group, with real parts.

    The cut-off itself (librdkafka's consumer queueing its coordinator
    requests for good after a broker restart) cannot be provoked at will.
    So the scorer is frozen past its session and poll timeouts, which costs
    it its partitions for real, and its rejoin is held back: the group is
    empty then, and this broker delays the first join of an empty group by
    REJOIN_DELAY_MS (a rejoin took 12 ms otherwise, and no replacement was
    due). The consumer is replaced while the old one is still rejoining,
    the harder case for the callbacks of the two.
    """

    def measure(scorer: ScorerProcess) -> dict[str, float]:
        return {
            "replacements": scorer.metric("scorer_consumer_replacements_total"),
            "lost": scorer.metric("scorer_rebalances_total", kind="lost"),
        }

    delay = {"group.initial.rebalance.delay.ms": str(REJOIN_DELAY_MS)}
    with KafkaBroker(extra_properties=delay) as broker:
        run = run_through_fault(
            broker,
            redis_url,
            tmp_path,
            pipeline={"rejoin_after": "1ms"},
            seed=37,
            # past session.timeout.ms and max.poll.interval.ms
            fault=lambda scorer: scorer.freeze(PAUSE_S),
            measure=measure,
        )

    assert run.measured["lost"] >= 1
    assert run.measured["replacements"] == 1, run.log_text[-3000:]
    assert "replacing the Kafka consumer" in run.log_text
    assert "replaced consumer closed" in run.log_text
    figures = check_results(
        run.config, redis_url, run.expected, run.outputs, allow_copies=True
    )
    figures |= {"frozen_s": PAUSE_S, "recovery_s": run.recovery_s}
    Report("consumer replaced", figures).print()


def test_an_instance_that_rejoins_as_a_spare_keeps_its_consumer(
    kafka_bootstrap: str, fresh_topics: Any, redis_url: str, tmp_path: Path
) -> None:
    """An empty assignment after a loss is an assignment: no replacement.

    The replacement rests on librdkafka calling on_assign with an empty list
    for a member given nothing; otherwise every spare instance would be
    replaced again and again, each time costing the group a rebalance.
    """
    (events,) = fresh_topics("events", partitions=1)
    out, dlq = fresh_topics("out", "dlq", partitions=1)
    raw = raw_config(
        kafka_bootstrap,
        redis_url,
        events,
        out,
        dlq,
        consumer_settings=CONSUMER,
        pipeline={"rejoin_after": "3s"},
    )
    group = raw["kafka"]["group_id"]
    first = ScorerProcess(raw, tmp_path, "first")
    second = ScorerProcess(raw, tmp_path, "second")
    first.start()
    try:
        first.wait_assigned()
        second.start()
        wait_for_members(kafka_bootstrap, group, 2)

        first.freeze(PAUSE_S)  # its partition goes to the second instance
        second.wait_assigned()
        wait_for_members(kafka_bootstrap, group, 2)  # the first is back, spare
        time.sleep(3 * 3.0)  # three times rejoin_after

        figures = {
            "first_lost": first.metric("scorer_rebalances_total", kind="lost"),
            "first_assigned": first.metric("scorer_assigned_partitions"),
            "first_replaced": first.metric("scorer_consumer_replacements_total"),
            "second_assigned": second.metric("scorer_assigned_partitions"),
        }
        assert first.terminate() == 0
        assert second.terminate() == 0
    finally:
        first.ensure_stopped()
        second.ensure_stopped()

    Report("spare after a loss", figures).print()
    assert figures["first_lost"] >= 1
    assert figures["first_assigned"] == 0 and figures["second_assigned"] == 1
    assert figures["first_replaced"] == 0, first.log_text()[-3000:]


def wait_for_members(bootstrap: str, group: str, count: int) -> None:
    """Until the group is stable with `count` members."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60.0
    while True:
        (future,) = admin.describe_consumer_groups([group]).values()
        description = future.result(timeout=10)
        stable = description.state == ConsumerGroupState.STABLE
        if stable and len(description.members) == count:
            return
        assert time.monotonic() < deadline, f"{description.state} {description.members}"
        time.sleep(0.2)


# The line each mode logs for a failed attempt, once per 10 s at most.
FAILED_ATTEMPT = {
    False: "deliveries failed; producing again",
    True: "transaction failed; retrying the batch",
}


@pytest.mark.parametrize("transactional", [False, True], ids=["acked", "transactional"])
def test_an_output_topic_refusing_the_outputs_holds_the_scorer_in_its_group(
    kafka_bootstrap: str,
    fresh_topics: Any,
    redis_url: str,
    tmp_path: Path,
    transactional: bool,
) -> None:
    """A topic whose max.message.bytes is below the outputs' size refuses
    each of them at once, for as long as the setting stays. The scorer must
    hold the batch, keep polling (or leave its group after
    max.poll.interval.ms), say so in the metrics, and lose nothing."""
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    pipeline = {
        "transactional": transactional,
        "transactional_id_prefix": f"t{uuid.uuid4().hex[:8]}",
    }
    raw = raw_config(
        kafka_bootstrap,
        redis_url,
        events,
        out,
        dlq,
        consumer_settings=CONSUMER,
        pipeline=pipeline,
    )
    config = parse_config(raw)
    workload = make_workload(KAFKA_EVENTS, 600, seed=41)
    expected = replay_workload(config, workload)

    reader = OutputLog(kafka_bootstrap, out, read_committed=transactional)
    feeder = Feeder(kafka_bootstrap, events, workload, RATE)
    scorer = ScorerProcess(raw, tmp_path, "scorer")
    reader.start()
    scorer.start()
    try:
        scorer.wait_assigned()
        feeder.start()
        reader.wait_for_more(30.0)
        set_max_message_bytes(kafka_bootstrap, out, "200")
        time.sleep(PAUSE_S)  # longer than max.poll.interval.ms
        waiting = scorer.metric("scorer_waiting_for_dependency", dependency="kafka")
        set_max_message_bytes(kafka_bootstrap, out, None)
        back = time.monotonic()
        recovery = recovery_s(reader, back)
        feeder.finish()
        wait_caught_up(kafka_bootstrap, raw["kafka"]["group_id"], events)
        figures = rebalances(scorer)
        figures["produce_retries"] = scorer.metric("scorer_produce_retries_total")
        assert scorer.terminate() == 0
    finally:
        scorer.ensure_stopped()
    outputs = reader.finish()

    figures |= check_results(
        config, redis_url, expected, outputs, allow_copies=not transactional
    )
    figures |= {"waiting_for_kafka": waiting, "recovery_s": recovery}
    log = scorer.log_text()
    assert waiting == 1.0
    assert figures["lost"] == 0 and figures["revoke"] == 0
    # One line per 10 s of refusals, not one per attempt.
    failed_attempts = log.count(FAILED_ATTEMPT[transactional])
    assert 1 <= failed_attempts <= PAUSE_S / 10 + 2
    if not transactional:
        assert figures["produce_retries"] > 0
        assert "outputs acknowledged after producing again waited_s=" in log
    Report(f"output-topic-refuses transactional={transactional}", figures).print()


def set_max_message_bytes(bootstrap: str, topic: str, value: str | None) -> None:
    """Set the topic's max.message.bytes, or delete it back to the broker's."""
    operation = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", value, incremental_operation=operation)
        ],
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_a_stop_with_the_broker_frozen_ends_within_the_pods_grace_period(
    redis_url: str, tmp_path: Path
) -> None:
    """The final commit and the group leave waited on a frozen broker for as
    long as it stayed frozen, past the 60 s after which Kubernetes kills.

    The broker freezes mid-drain, so outputs are in flight; whether offsets
    wait to be committed as well depends on the moment, so the test holds
    the scorer to the grace period only (test_pipeline_stop.py checks the
    cut itself). Nothing touches the broker once frozen: one resumed after
    a freeze that long sometimes went down by itself.
    """
    events = 40_000
    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, {"events": PARTITIONS, "out": PARTITIONS, "dlq": 1})
        raw = raw_config(bootstrap, redis_url, "events", "out", "dlq")
        produce_workload(bootstrap, "events", make_workload(events, 600, seed=37))
        scorer = ScorerProcess(raw, tmp_path, "scorer")
        scorer.start()
        try:
            wait_handled(scorer, 2_000)
            broker.pause()
            handled = scorer.metric("scorer_records_total")
            started = time.monotonic()
            code = scorer.terminate(timeout_s=GRACE_PERIOD_S)
            stopped_s = time.monotonic() - started
        finally:
            broker.resume()
            scorer.ensure_stopped()

    assert code == 0
    assert handled < events
    figures = {"stopped_s": round(stopped_s, 1), "handled": handled}
    Report("stop with the broker frozen", figures).print()


def wait_handled(scorer: ScorerProcess, records: int, timeout_s: float = 60.0) -> None:
    """Until the scorer's metrics count `records` handled, whatever the outcome."""
    deadline = time.monotonic() + timeout_s
    while scorer.metric_or_zero("scorer_records_total") < records:
        assert scorer.is_running, scorer.log_text()[-2000:]
        assert time.monotonic() < deadline, "the records were not handled in time"
        time.sleep(0.1)
