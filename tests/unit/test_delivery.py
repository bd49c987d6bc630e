"""The bookkeeping behind the delivery guarantees: ownership epochs, holding
the consumer, and the settings the service derives for the two modes.

The consumer here is a stand-in that records calls: what is tested is which
partitions this code pauses, resumes and commits, not librdkafka. The real
thing is exercised in tests/integration (test_crash, test_faults, ...).
"""

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import KafkaError, Producer, TopicPartition

from scorer.assignment import Assignment
from scorer.clients import (
    output_producer_settings,
    producer_settings,
    redis_client,
    transactional_id,
)
from scorer.config import Config, default_config_path, parse_config
from scorer.delivery import (
    WAIT_LOG_EVERY_S,
    AtLeastOnce,
    CommitFailures,
    Handoff,
    Interrupted,
    Outgoing,
    Transactional,
    Waiting,
)
from scorer.errors import ConfigError
from scorer.metrics import Metrics
from scorer.service import _count_errors


class StandInMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


class StandInConsumer:
    """Records pause and resume; `consume` hands out what `arriving` holds."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.resumed: list[tuple[str, int]] = []
        self.arriving: list[StandInMessage] = []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.paused -= set(keys)
        self.resumed += keys

    def consume(self, _count: int, _timeout_s: float) -> list[StandInMessage]:
        arrived, self.arriving = self.arriving, []
        return arrived


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("events", p) for p in partitions]


def assignment() -> tuple[Assignment, StandInConsumer]:
    consumer = StandInConsumer()
    return Assignment(consumer, Metrics()), consumer  # type: ignore[arg-type]


def test_a_partition_given_back_is_a_new_epoch() -> None:
    owned, consumer = assignment()
    owned.on_assign(consumer, tps(0, 1))  # type: ignore[arg-type]
    epochs = owned.epochs([("events", 0), ("events", 1), ("events", 9)])

    owned.on_revoke(consumer, tps(1))  # type: ignore[arg-type]
    owned.on_assign(consumer, tps(1))  # type: ignore[arg-type]

    assert set(epochs) == {("events", 0), ("events", 1)}
    assert owned.still_owned(epochs) == {("events", 0)}


def test_holding_pauses_all_and_release_resumes_even_partitions_gone_since() -> None:
    owned, consumer = assignment()
    owned.on_assign(consumer, tps(0, 1, 2))  # type: ignore[arg-type]

    owned.hold()
    paused_at_hold = set(consumer.paused)
    owned.on_lost(consumer, tps(2))  # type: ignore[arg-type]
    owned.on_assign(consumer, tps(3))  # type: ignore[arg-type]
    owned.serve(0.0)
    paused_while_held = set(consumer.paused)
    owned.release()

    assert paused_at_hold == {("events", 0), ("events", 1), ("events", 2)}
    assert ("events", 3) in paused_while_held
    # librdkafka keeps a pause through an unassign: resume what left too.
    assert sorted(consumer.resumed) == [("events", p) for p in range(4)]
    assert consumer.paused == set()


def test_a_nested_hold_ends_with_the_outer_one() -> None:
    owned, consumer = assignment()
    owned.on_assign(consumer, tps(0))  # type: ignore[arg-type]

    owned.hold()
    owned.hold()
    owned.release()
    paused_after_inner = set(consumer.paused)
    owned.release()

    assert paused_after_inner == {("events", 0)}
    assert consumer.paused == set()


def test_records_arriving_while_held_are_carried_unless_their_partition_left() -> None:
    owned, consumer = assignment()
    owned.on_assign(consumer, tps(0, 1))  # type: ignore[arg-type]
    owned.hold()
    consumer.arriving = [StandInMessage("events", 0, 7), StandInMessage("events", 1, 3)]

    owned.serve(0.0)
    owned.on_revoke(consumer, tps(1))  # type: ignore[arg-type]
    owned.release()
    carried = owned.take_carried()

    places = [(m.partition(), m.offset()) for m in carried]
    assert places == [(0, 7)]
    assert owned.take_carried() == []


def test_a_handoff_commits_only_the_offsets_of_owned_partitions() -> None:
    offsets = [TopicPartition("events", 0, 10), TopicPartition("events", 1, 20)]
    handoff = Handoff([], offsets, {("events", 0): 1, ("events", 1): 2})

    kept = handoff.offsets_of({("events", 1)})

    assert [(tp.partition, tp.offset) for tp in kept] == [(1, 20)]


def config(**pipeline: Any) -> Config:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["pipeline"] = {**raw.get("pipeline", {}), **pipeline}
    return parse_config(raw)


def with_consumer_settings(base: Config, **settings: Any) -> Config:
    kafka = base.kafka.model_copy(update={"consumer_settings": settings})
    return base.model_copy(update={"kafka": kafka})


def test_the_transactional_id_is_the_prefix_and_a_stable_instance_name() -> None:
    named = config(transactional=True, transactional_id_prefix="s", instance_id="p-0")
    static = with_consumer_settings(
        config(transactional=True, transactional_id_prefix="s"),
        **{"group.instance.id": "static-1"},
    )
    plain = config(transactional=True, transactional_id_prefix="s")
    shared = plain.model_copy(
        update={
            "kafka": plain.kafka.model_copy(
                update={"settings": {"group.instance.id": "static-2"}}
            )
        }
    )

    assert transactional_id(named) == "s-p-0"
    assert transactional_id(static) == "s-static-1"
    # As SCORER_RDKAFKA_GROUP_INSTANCE_ID sets it: for every client.
    assert transactional_id(shared) == "s-static-2"
    assert transactional_id(plain) == f"s-{socket.gethostname()}"


def test_only_the_transactional_mode_gets_a_transactional_id() -> None:
    on = output_producer_settings(config(transactional=True, instance_id="a"))
    off = output_producer_settings(config())

    assert on["transactional.id"] == "lead-scorer-a"
    assert "transactional.id" not in off
    assert on["enable.idempotence"] is True and on["acks"] == "all"


def test_a_transactional_id_in_the_producer_settings_is_refused() -> None:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["kafka"] = {"producer_settings": {"transactional.id": "mine"}}

    with pytest.raises(ConfigError) as caught:
        producer_settings(parse_config(raw))

    assert caught.value.field == "kafka.producer_settings.transactional.id"


def test_redis_commands_retry_once_on_a_broken_connection_and_never_on_timeout() -> (
    None
):
    client = redis_client(config())
    retry = client.get_retry()
    client.close()
    assert retry is not None

    def failing(*errors: Exception) -> tuple[list[int], Any]:
        calls: list[int] = []

        def call() -> str:
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return "ok"

        return calls, call

    reconnects, after_reset = failing(redis.ConnectionError("reset by peer"))
    assert retry.call_with_retry(after_reset, lambda _error: None) == "ok"
    assert len(reconnects) == 2

    waits, timing_out = failing(redis.TimeoutError("no answer"))
    with pytest.raises(redis.TimeoutError):
        retry.call_with_retry(timing_out, lambda _error: None)
    assert len(waits) == 1

    twice, broken = failing(redis.ConnectionError("a"), redis.ConnectionError("b"))
    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(broken, lambda _error: None)
    assert len(twice) == 2


class StuckProducer:
    """Takes messages and never gets them acknowledged, as librdkafka did
    after a broker restart (librdkafka issue 4976); `purge` fails them."""

    def __init__(self) -> None:
        self.queued: list[Callable[[KafkaError | None, Any], None]] = []
        self.purged: list[Callable[[KafkaError | None, Any], None]] = []
        self.first_flush = 0.0

    def produce(self, *_args: Any, on_delivery: Any, **_kwargs: Any) -> None:
        self.queued.append(on_delivery)

    def flush(self, _timeout_s: float = 0.0) -> int:
        # The test fails here, instead of waiting for ever, without a fix.
        self.first_flush = self.first_flush or time.monotonic()
        assert time.monotonic() - self.first_flush < 10.0, "never replaced"
        for report in self.purged:
            report(KafkaError(KafkaError._PURGE_QUEUE), None)
        self.purged = []
        return len(self.queued)

    def poll(self, _timeout_s: float) -> int:
        return 0

    def purge(self) -> None:
        self.purged, self.queued = self.queued, []

    def __len__(self) -> int:
        return len(self.queued)


class SilentlyPurgedProducer(StuckProducer):
    """Stuck too, but its purge reports nothing: librdkafka left messages
    queued for a dead broker unreported after a purge (a two-broker kill)."""

    def purge(self) -> None:
        self.queued = []


class AckingProducer:
    """Acknowledges every message at once, and reports only failures (as
    delivery.report.only.error has librdkafka do); keeps their values."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def produce(self, _topic: str, value: bytes, **_kwargs: Any) -> None:
        self.values.append(value)

    def flush(self, _timeout_s: float = 0.0) -> int:
        return 0

    def poll(self, _timeout_s: float) -> int:
        return 0


@pytest.mark.parametrize("stuck_kind", [StuckProducer, SilentlyPurgedProducer])
def test_outputs_stuck_in_their_producer_go_out_through_a_new_one(
    stuck_kind: type[StuckProducer],
) -> None:
    owned, consumer = assignment()
    stuck, fresh = stuck_kind(), AckingProducer()
    made = iter([stuck, fresh])
    metrics = Metrics()
    waiting = Waiting(owned, metrics, threading.Event())
    delivery = AtLeastOnce(
        lambda: next(made),  # type: ignore[arg-type,return-value]
        consumer,  # type: ignore[arg-type]
        waiting,
        metrics,
    )
    delivery.stuck_acks_s = 0.3
    outgoing = [
        Outgoing("out", b"L1", value, [], ("events", 0)) for value in (b"a", b"b")
    ]

    delivery.confirm(delivery.send(Handoff(outgoing, [], {})))

    assert delivery.producer is fresh
    assert fresh.values == [b"a", b"b"]
    retries = metrics.registry.get_sample_value("scorer_produce_retries_total")
    assert retries == 2


class RefusingProducer(AckingProducer):
    """Fails every message at once for `refusals` attempts, as a topic whose
    max.message.bytes is below the outputs' size does; then acknowledges.
    Each attempt records the wait gauge and the consumer's polls so far."""

    def __init__(self, refusals: int, metrics: Metrics, consumer: "CountingConsumer"):
        super().__init__()
        self.refusals = refusals
        self.metrics = metrics
        self.consumer = consumer
        self.attempts: list[tuple[float | None, int]] = []
        self.reports: list[Callable[[KafkaError | None, Any], None]] = []
        self.flushed = True

    def produce(self, _topic: str, value: bytes, **kwargs: Any) -> None:
        if self.flushed:  # the first message of an attempt
            self.flushed = False
            gauge = self.metrics.registry.get_sample_value(
                "scorer_waiting_for_dependency", {"dependency": "kafka"}
            )
            self.attempts.append((gauge, self.consumer.polls))
        if len(self.attempts) <= self.refusals:
            self.reports.append(kwargs["on_delivery"])
        else:
            self.values.append(value)

    def flush(self, _timeout_s: float = 0.0) -> int:
        self.flushed = True
        for report in self.reports:
            report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
        self.reports = []
        return 0


class CountingConsumer(StandInConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def consume(self, count: int, timeout_s: float) -> list[StandInMessage]:
        self.polls += 1
        return super().consume(count, timeout_s)


def test_refused_outputs_are_produced_again_after_a_wait_that_serves_the_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = CountingConsumer()
    metrics = Metrics()
    owned = Assignment(consumer, metrics)  # type: ignore[arg-type]
    owned.on_assign(consumer, tps(0))  # type: ignore[arg-type]
    producer = RefusingProducer(3, metrics, consumer)
    waiting = Waiting(owned, metrics, threading.Event())
    delivery = AtLeastOnce(
        lambda: producer,  # type: ignore[arg-type,return-value]
        consumer,  # type: ignore[arg-type]
        waiting,
        metrics,
    )
    outgoing = [
        Outgoing("out", b"L1", value, [], ("events", 0)) for value in (b"a", b"b")
    ]

    delivery.confirm(delivery.send(Handoff(outgoing, [], {})))

    assert producer.values == [b"a", b"b"]
    gauges = [gauge for gauge, _ in producer.attempts]
    polls = [count for _, count in producer.attempts]
    # The first attempt is the batch's own; the retries wait, holding the
    # consumer and polling it, with the wait in the metrics.
    assert gauges == [0.0, 1.0, 1.0, 1.0]
    assert polls[0] == 0 and polls[1] < polls[2] < polls[3]
    assert consumer.paused == set() and consumer.resumed == [("events", 0)]
    assert (
        metrics.registry.get_sample_value(
            "scorer_waiting_for_dependency", {"dependency": "kafka"}
        )
        == 0.0
    )
    failures = [r for r in caplog.records if "deliveries failed" in r.getMessage()]
    assert len(failures) == 1  # one line per WAIT_LOG_EVERY_S, not per attempt
    assert "count=2 topics=out code=" in failures[0].getMessage()


def test_a_transactional_start_without_a_broker_shows_its_wait_and_stops_on_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on the port: a real librdkafka producer is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = Metrics()
    settings = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "transactional.id": "start-without-broker",
        "error_cb": _count_errors(metrics),
    }
    owned, consumer = assignment()
    stop = threading.Event()
    delivery = Transactional(
        lambda: Producer(settings),
        consumer,  # type: ignore[arg-type]
        Waiting(owned, metrics, stop),
        metrics,
    )
    ended: list[str] = []

    def start() -> None:
        try:
            delivery.start()
        except Interrupted:
            ended.append("interrupted")

    def sample(name: str, labels: dict[str, str]) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    thread = threading.Thread(target=start)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        sample("scorer_kafka_errors_total", {"kind": "client"})
        and sample("scorer_waiting_for_dependency", {"dependency": "kafka"}) == 1
    ):
        time.sleep(0.1)
    client_errors = sample("scorer_kafka_errors_total", {"kind": "client"})
    stop.set()
    thread.join(15)

    assert client_errors is not None and client_errors > 0
    assert ended == ["interrupted"]
    assert "waiting for the broker to initialise transactions" in caplog.text
    waiting = sample("scorer_waiting_for_dependency", {"dependency": "kafka"})
    assert waiting == 0


class CommittingConsumer(StandInConsumer):
    """Keeps the offsets stored and how each commit was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[tuple[str, int], int] = {}
        self.commits: list[tuple[bool, dict[tuple[str, int], int]]] = []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored |= {(tp.topic, tp.partition): tp.offset for tp in offsets}

    def commit(self, asynchronous: bool) -> None:
        self.commits.append((asynchronous, dict(self.stored)))


def test_many_small_batches_share_a_commit_and_the_last_one_is_not_left_behind() -> (
    None
):
    consumer = CommittingConsumer()
    owned = Assignment(consumer, Metrics())  # type: ignore[arg-type]
    owned.on_assign(consumer, tps(0))  # type: ignore[arg-type]
    epochs = owned.epochs([("events", 0)])
    metrics = Metrics()
    delivery = AtLeastOnce(
        AckingProducer,  # type: ignore[arg-type]
        consumer,  # type: ignore[arg-type]
        Waiting(owned, metrics, threading.Event()),
        metrics,
    )
    delivery.commit_every_s = 3600.0

    for offset in range(1, 101):
        handoff = Handoff([], [TopicPartition("events", 0, offset)], epochs)
        delivery.confirm(delivery.send(handoff))
    delivery.commit_due()

    assert consumer.stored == {("events", 0): 100}
    assert consumer.commits == [(True, {("events", 0): 1})]

    delivery.commit_every_s = 0.0
    delivery.commit_due()
    delivery.commit_due()  # nothing stored since: no commit

    assert consumer.commits[1:] == [(True, {("events", 0): 100})]


def test_failed_async_commits_are_counted_each_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, now = Metrics(), [100.0]
    on_commit = CommitFailures(metrics, clock=lambda: now[0])
    away = KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE)

    on_commit(KafkaError(KafkaError._NO_OFFSET), tps(0))  # nothing was stored
    on_commit(None, tps(0, 1))  # committed
    on_commit(away, tps(0))
    now[0] += 1.0
    on_commit(away, tps(0))
    now[0] += WAIT_LOG_EVERY_S
    on_commit(away, tps(0))

    failed = metrics.registry.get_sample_value(
        "scorer_kafka_errors_total", {"kind": "commit"}
    )
    assert failed == 3.0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "(1 since the last warning)" in warnings[0]
    assert "(2 since the last warning)" in warnings[1]
    assert "Coordinator not available" in warnings[1]


def test_a_wait_is_timed_from_its_outermost_hold() -> None:
    """/readyz counts a long wait for acks as a broker silence (scorer.probes)."""
    owned, _ = assignment()
    waiting = Waiting(owned, Metrics(), threading.Event())

    assert waiting.waited_s("kafka") == 0.0
    with waiting.holding("kafka"):
        time.sleep(0.2)
        with waiting.holding("kafka"):
            inner_s = waiting.waited_s("kafka")
        after_inner_s = waiting.waited_s("kafka")
        redis_s = waiting.waited_s("redis")

    assert 0.2 <= inner_s <= after_inner_s
    assert (redis_s, waiting.waited_s("kafka")) == (0.0, 0.0)


def test_a_wait_of_several_holds_is_timed_as_one() -> None:
    """A stuck producer is replaced, which ends its hold, and the batch holds
    again for the new one: /readyz must not see a fresh wait in between."""
    owned, _ = assignment()
    waiting = Waiting(owned, Metrics(), threading.Event())

    with waiting.timing("kafka"):
        with waiting.holding("kafka"):
            time.sleep(0.1)
        between_s = waiting.waited_s("kafka")
        time.sleep(0.1)
        with waiting.holding("kafka"):
            second_s = waiting.waited_s("kafka")

    assert 0.1 <= between_s < second_s
    assert second_s >= 0.2
    assert waiting.waited_s("kafka") == 0.0
