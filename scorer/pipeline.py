"""The long-running consumer: Kafka in, Redis state, Kafka out.

One loop iteration handles one batch:
1. consume up to `batch_size` records (or what arrives in `batch_timeout_ms`);
2. decode and validate them; a record that fails goes to the dead-letter
   topic with the reason in its headers;
3. score the rest in one Redis pipeline (`scorer.state`);
4. produce the outputs and dead letters, and wait for the broker's acks;
5. only then commit the batch's offsets.

A crash anywhere before step 5 replays the batch; the state store remembers
each update id, so the replay re-publishes identical outputs and changes no
score (at-least-once delivery, exactly-once effect on state).
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from scorer.config import Config
from scorer.errors import InvalidRecord, StateStoreError
from scorer.events import Firmographics, Forget, TimeBounds, parse_record
from scorer.lead import LATE, TOO_LATE
from scorer.metrics import Metrics
from scorer.publish import MQL_CROSSED
from scorer.scoring import Item, Scored, Scorer
from scorer.wire import SCORE_SCHEMA, Codec, SchemaCatalog, make_codec

log = logging.getLogger(__name__)

# Waiting for Redis doubles from the first to the last delay and stays there.
FIRST_RETRY_DELAY_S = 0.1
MAX_RETRY_DELAY_S = 5.0
# A batch whose deliveries are not acknowledged in this time is produced again.
DELIVERY_TIMEOUT_S = 30.0
# How often consumer lag is read from the client's cached watermarks.
LAG_INTERVAL_S = 5.0

DLQ_HEADER_PREFIX = "scorer.error."


@dataclass(slots=True)
class Rejected:
    """A record that cannot be scored, on its way to the dead-letter topic."""

    message: Message
    error: InvalidRecord


@dataclass(slots=True)
class Batch:
    messages: list[Message]
    items: list[Item] = field(default_factory=list)
    sources: list[Message] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]


class ScorerPipeline:
    """Consumes, scores, publishes and commits, batch after batch."""

    def __init__(
        self,
        config: Config,
        scorer: Scorer,
        consumer: Consumer,
        producer: Producer,
        metrics: Metrics,
        catalog: SchemaCatalog | None = None,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        topics = config.topics
        catalog = catalog if catalog is not None else SchemaCatalog.load()
        inputs = [*topics.events]
        if topics.firmographics is not None:
            inputs.append(topics.firmographics)
        self.codecs: dict[str, Codec] = {
            topic.name: make_codec(topic.format, catalog=catalog) for topic in inputs
        }
        self.firmographics_topic = (
            topics.firmographics.name if topics.firmographics else None
        )
        self.output_codec = make_codec(
            topics.output.format, catalog=catalog, schema_name=SCORE_SCHEMA
        )
        self.bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
        self.assignment: set[tuple[str, int]] = set()
        self.on_batch: Callable[[Batch, list[Scored]], None] | None = None
        self._last_lag_s = 0.0
        metrics.set_rules_version(scorer.rules_version)

    def run(self, stop: threading.Event) -> None:
        """Score until `stop` is set; the batch in flight is always finished."""
        self.consumer.subscribe(
            list(self.codecs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("scorer started topics=%s", ",".join(self.codecs))
        size = self.config.pipeline.batch_size
        timeout_s = self.config.pipeline.batch_timeout_ms / 1000
        try:
            while not stop.is_set():
                messages = self.consumer.consume(size, timeout_s)
                if messages:
                    self.process(messages)
                self.producer.poll(0)
                self._report_lag()
        finally:
            self._close()

    def process(self, messages: Sequence[Message]) -> list[Scored]:
        """Score, publish and commit one batch of consumed messages."""
        started = time.monotonic()
        batch = self._decode(messages)

        results = self._score(batch.items)

        self._publish(batch, results)
        self._commit(batch.messages)

        self._count(batch, results)
        self.metrics.batch_duration.observe(time.monotonic() - started)
        self.metrics.batch_size.observe(len(messages))
        self.metrics.last_batch.set(time.time())
        if self.on_batch is not None:
            self.on_batch(batch, results)
        return results

    # -- decoding ----------------------------------------------------------

    def _decode(self, messages: Sequence[Message]) -> Batch:
        batch = Batch(messages=[])
        for message in messages:
            error = message.error()
            if error is not None:
                self._client_error(error)
                continue
            batch.messages.append(message)
            self.metrics.consumed.labels(message.topic()).inc()
            try:
                item = self._item(message)
            except InvalidRecord as exc:
                batch.rejected.append(Rejected(message, exc))
                continue
            batch.items.append(item)
            batch.sources.append(message)
        return batch

    def _item(self, message: Message) -> Item:
        topic, _, _ = _where(message)
        value = message.value()
        is_firmographics = topic == self.firmographics_topic
        if value is None:
            if is_firmographics:
                return Forget(_lead_from_key(message))
            raise InvalidRecord("null_value", "the message has no value")

        record = parse_record(self.codecs[topic].decode(value), self.bounds)
        if is_firmographics != isinstance(record, Firmographics):
            expected = "firmographic records" if is_firmographics else "events"
            raise InvalidRecord(
                "wrong_topic", f"topic {topic} carries {expected} only", "type"
            )
        return record

    def _client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.metrics.kafka_errors.labels("consume").inc()
        log.warning("consume error code=%s reason=%s", error.name(), error.str())

    # -- scoring -----------------------------------------------------------

    def _score(self, items: list[Item]) -> list[Scored]:
        """Score with bounded backoff while Redis is unavailable."""
        delay = FIRST_RETRY_DELAY_S
        while True:
            try:
                return self.scorer.score(items)
            except StateStoreError as exc:
                self.metrics.redis_errors.inc()
                self.metrics.waiting.labels("redis").set(1)
                log.warning("redis unavailable; retrying in %.1fs: %s", delay, exc)
            self._wait(delay)
            self.metrics.redis_retries.inc()
            delay = min(delay * 2, MAX_RETRY_DELAY_S)
            self.metrics.waiting.labels("redis").set(0)

    def _wait(self, delay_s: float) -> None:
        # Keep serving the consumer's background duties (heartbeats run in
        # librdkafka's own thread; delivery reports need poll) while waiting.
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline:
            self.producer.poll(min(0.1, delay_s))

    # -- publishing --------------------------------------------------------

    def _publish(self, batch: Batch, results: list[Scored]) -> None:
        outgoing = [self._dead_letter(r) for r in batch.rejected]
        for message, result in zip(batch.sources, results, strict=True):
            for event in result.outputs:
                outgoing.append(self._output(message, event))

        pending = outgoing
        while pending:
            pending = self._deliver(pending)
            if pending:
                self.metrics.produce_retries.inc(len(pending))
                log.warning("re-producing %d undelivered messages", len(pending))

        self._observe_latency(batch, results)

    def _output(self, source: Message, event: dict[str, Any]) -> _Outgoing:
        return _Outgoing(
            topic=self.config.topics.output.name,
            key=str(event["lead_id"]).encode(),
            value=self.output_codec.encode(event),
            headers=[("type", str(event["type"]).encode())],
        )

    def _dead_letter(self, rejected: Rejected) -> _Outgoing:
        message, error = rejected.message, rejected.error
        reason_headers = {
            "class": type(error).__name__,
            "reason": error.reason,
            "message": error.message,
            "field": error.field or "",
        }
        topic, partition, offset = _where(message)
        reason_headers |= {
            "topic": topic,
            "partition": str(partition),
            "offset": str(offset),
        }
        headers = _headers(message)
        headers += [
            (DLQ_HEADER_PREFIX + k, v.encode()) for k, v in reason_headers.items()
        ]
        log.warning(
            "dead-lettered topic=%s partition=%d offset=%d reason=%s field=%s",
            message.topic(),
            message.partition(),
            message.offset(),
            error.reason,
            error.field,
        )
        return _Outgoing(
            topic=self.config.topics.dead_letter,
            key=message.key(),
            value=message.value(),
            headers=headers,
        )

    def _deliver(self, outgoing: list[_Outgoing]) -> list[_Outgoing]:
        """Produce and wait for acks; returns the messages that failed."""
        failed: list[_Outgoing] = []

        def report(item: _Outgoing) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(error: KafkaError | None, _msg: Message) -> None:
                if error is not None:
                    self.metrics.kafka_errors.labels("produce").inc()
                    log.warning("delivery failed: %s", error.str())
                    failed.append(item)

            return on_delivery

        for item in outgoing:
            self._produce(item, report(item))
        remaining = self.producer.flush(DELIVERY_TIMEOUT_S)
        if remaining:
            # Not acknowledged in time: librdkafka keeps retrying them, and a
            # second copy is harmless, but the batch must not commit yet.
            log.warning(
                "%d messages unacknowledged after %.0fs", remaining, DELIVERY_TIMEOUT_S
            )
            self.producer.flush()
        return failed

    def _produce(
        self, item: _Outgoing, on_delivery: Callable[[KafkaError | None, Message], None]
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    item.topic,
                    value=item.value,
                    key=item.key,
                    headers=item.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                # The local queue is full: let deliveries drain it.
                self.producer.poll(0.1)

    def _observe_latency(self, batch: Batch, results: list[Scored]) -> None:
        now_ms = time.time() * 1000
        for message, result in zip(batch.sources, results, strict=True):
            if not result.outputs:
                continue
            kind, created_ms = message.timestamp()
            if kind != 0 and created_ms > 0:  # 0 is TIMESTAMP_NOT_AVAILABLE
                self.metrics.latency.observe(max(0.0, now_ms - created_ms) / 1000)

    # -- offsets -----------------------------------------------------------

    def _commit(self, messages: list[Message]) -> None:
        """Store the batch's offsets and commit them without waiting.

        Offsets are stored by hand only now, after the outputs were
        acknowledged: librdkafka's automatic offset store would mark a
        message as done as soon as it was handed out.
        """
        offsets = _next_offsets(messages)
        if not offsets:
            return
        try:
            self.consumer.store_offsets(offsets=offsets)
            self.consumer.commit(asynchronous=True)
        except KafkaException as exc:
            # The batch is already published; a lost commit only replays it.
            self.metrics.kafka_errors.labels("commit").inc()
            log.warning("commit failed: %s", exc)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assign").inc()
        self.assignment |= {(p.topic, p.partition) for p in partitions}
        self.metrics.assigned.set(len(self.assignment))
        log.info("partitions assigned count=%d %s", len(partitions), _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        self.assignment -= {(p.topic, p.partition) for p in partitions}
        self.metrics.assigned.set(len(self.assignment))
        log.info("partitions revoked count=%d %s", len(partitions), _names(partitions))
        self._commit_sync(consumer, "revoke")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        self.assignment -= {(p.topic, p.partition) for p in partitions}
        self.metrics.assigned.set(len(self.assignment))
        log.warning("partitions lost count=%d %s", len(partitions), _names(partitions))

    def _commit_sync(self, consumer: Consumer, moment: str) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self.metrics.kafka_errors.labels("commit").inc()
                log.warning("commit on %s failed: %s", moment, exc)

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_s < LAG_INTERVAL_S or not self.assignment:
            return
        self._last_lag_s = now
        partitions = [TopicPartition(t, p) for t, p in sorted(self.assignment)]
        try:
            positions = self.consumer.position(partitions)
        except KafkaException:
            return
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0 and tp.offset >= 0:
                lag = max(0, high - tp.offset)
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _close(self) -> None:
        log.info("scorer stopping: flushing outputs and committing")
        self.producer.flush(DELIVERY_TIMEOUT_S)
        self._commit_sync(self.consumer, "stop")
        self.consumer.close()
        log.info("scorer stopped")

    # -- metrics -----------------------------------------------------------

    def _count(self, batch: Batch, results: list[Scored]) -> None:
        m = self.metrics
        for rejected in batch.rejected:
            topic = rejected.message.topic()
            m.records.labels(topic, "dead_lettered").inc()
            m.dead_lettered.labels(topic, rejected.error.reason).inc()
        for message, result in zip(batch.sources, results, strict=True):
            m.records.labels(message.topic(), result.status).inc()
            self._count_outputs(result)

    def _count_outputs(self, result: Scored) -> None:
        m = self.metrics
        if result.outcome is not None and result.outcome.late in (LATE, TOO_LATE):
            m.late_events.labels("too_late" if result.too_late else "late").inc()
        for event in result.outputs:
            if event["type"] == MQL_CROSSED:
                m.mql_crossings.labels(event["direction"]).inc()
            else:
                m.score_changes.inc()


def _lead_from_key(message: Message) -> str:
    key = message.key()
    if not key:
        raise InvalidRecord("missing_key", "a tombstone needs the lead id as key")
    try:
        lead_id = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord("bad_key", "the key is not UTF-8") from exc
    if not lead_id.strip() or not lead_id.isprintable():
        raise InvalidRecord("bad_key", "the key is not a lead id")
    return lead_id


def _headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    original = message.headers() or []
    pairs = original.items() if isinstance(original, dict) else original
    return [(str(pair[0]), pair[1]) for pair in pairs]


def _where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed (hence placed) message."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = _where(message)
        highest[(topic, partition)] = max(highest.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in highest.items()]


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
