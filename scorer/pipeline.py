"""The long-running consumer: Kafka in, Redis state, Kafka out.

A batch goes through these steps:
1. consume up to `batch_size` records (or what arrives in `batch_timeout_ms`);
2. decode and validate them; a record that fails goes to the dead-letter
   topic with the reason in its headers;
3. score the rest in Redis (`scorer.state`), in parts of `PART_RECORDS`
   sent one after another on a thread of their own (`scorer.lane`);
4. hand the outputs and dead letters to the delivery (`scorer.delivery`):
   published and acknowledged, then the batch's offsets committed; or both
   in one Kafka transaction (`pipeline.transactional`).

Three batches overlap: while one waits for the acks of its outputs, the
next is in step 3 and the one after it is consumed and decoded, its parts
queued for Redis behind those of the batch before. Redis, the broker and
Python work at the same time instead of taking turns; a lead's updates
still reach Redis in consumed order.

A crash replays every batch whose step 4 had not ended (up to three); the
state store remembers each update id, so the replay re-publishes identical
outputs and changes no score (at-least-once delivery, exactly-once effect
on state).

While Redis or the broker is away, the batch waits with the consumer held
(`scorer.assignment`): partitions paused, the group kept, nothing lost.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from scorer import backoff
from scorer.assignment import Assignment, Key, Rejoin
from scorer.clients import consumer_settings
from scorer.config import Config, Topic
from scorer.confluent_wire import topic_codec
from scorer.dead_letter import DeadLetters, Rejected, placed
from scorer.delivery import (
    AtLeastOnce,
    Handoff,
    Interrupted,
    Outgoing,
    Sent,
    Transactional,
    Waiting,
)
from scorer.errors import InvalidRecord, StateStoreError
from scorer.events import (
    MAX_ID_CHARS,
    Firmographics,
    Forget,
    TimeBounds,
    parse_record,
    tombstone_op_id,
    unexpected_error,
    wrong_topic,
)
from scorer.lane import StoreLane
from scorer.lead import Outcome
from scorer.metrics import LATENESS, MQL_DIRECTIONS, Metrics
from scorer.presence import commit_note
from scorer.publish import MQL_CROSSED, SCORE_CHANGED, encode_outputs
from scorer.registry import RegistryClient, RegistryError
from scorer.scoring import DUPLICATE_RECORD, Item, Plan, Scored, Scorer
from scorer.silence import BrokerSilence
from scorer.wire import INPUT_SCHEMAS, SCORE_SCHEMA, Codec, SchemaCatalog

log = logging.getLogger(__name__)

# At stop, outputs still unacknowledged after this are left to a redelivery.
DELIVERY_TIMEOUT_S = 30.0
# The whole stop of the Kafka clients (that flush, the final commit, the
# group leave): with the brokers out of reach the last two waited for ever,
# past the pod's grace period (60 s in deploy/kubernetes).
CLIENTS_CLOSE_TIMEOUT_S = 45.0
# How often consumer lag is read from the client's cached watermarks.
LAG_INTERVAL_S = 5.0
# While a batch waits for Redis the held consumer fetches nothing, so its
# cached watermarks stand still; the brokers are asked instead, each
# partition's ListOffsets given this long.
LAG_QUERY_TIMEOUT_S = 1.0
# At start, how long to wait for the broker's topic list (a check only).
TOPIC_CHECK_S = 5.0

# The Avro records an input topic carries; any other is refused by its
# header or schema id, before its body is read.
INPUT_RECORDS = frozenset(INPUT_SCHEMAS.values())
# Records per part of a batch sent to Redis at once (`_start`):
# small enough that Redis starts early and little of its work is left
# without Python work beside it, large enough for several updates per call.
PART_RECORDS = 200


@dataclass(slots=True)
class BatchBytes:
    """How many records to consume next, for a batch of about `limit` bytes.

    librdkafka can only be asked for a number of records, so the number
    follows the mean size of the records consumed so far: small records
    give whole batches, a burst of large ones smaller batches at once.
    """

    limit: int
    most: int
    mean: float = 0.0

    def count(self) -> int:
        if self.mean * self.most <= self.limit:
            return self.most
        return max(1, int(self.limit / self.mean))

    def observe(self, messages: Sequence[Message]) -> None:
        if not messages:
            return

        mean = sum(map(len, messages)) / len(messages)
        # Up at once, down by halves: one batch of small records after a
        # burst of large ones does not let the next take 1,000 large ones.
        self.mean = mean if mean > self.mean else (self.mean + mean) / 2


@dataclass(slots=True)
class Batch:
    messages: list[Message]
    items: list[Item] = field(default_factory=list)
    sources: list[Message] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


Applied = Future[list[Outcome | None]]
Part = tuple[Batch, Plan, Applied]  # decoded records, their plan, its Redis reply


@dataclass(slots=True)
class InFlight:
    """A batch decoded and on its way through Redis, not yet published."""

    started_s: float
    size: int  # messages consumed, errors included
    batch: Batch
    parts: list[Part]
    offsets: dict[Key, int]  # the next offset of each input partition
    epochs: dict[Key, int]  # ownership of those partitions when consumed
    retried: list[Scored] | None = None  # results scored again after a failure


@dataclass(slots=True)
class Sending:
    """A batch whose outputs the producer has, awaiting their acks."""

    in_flight: InFlight
    results: list[Scored]
    sent: Sent


class ScorerPipeline:
    """Consumes, scores, publishes and commits, batch after batch."""

    def __init__(
        self,
        config: Config,
        scorer: Scorer,
        consumer: Consumer,
        make_producer: Callable[[], Producer],
        metrics: Metrics,
        catalog: SchemaCatalog | None = None,
        registry: RegistryClient | None = None,
        rejoin: Rejoin | None = None,
        silence: BrokerSilence | None = None,
    ) -> None:
        self.config = config
        self.rules_version = config.scoring.rules_version
        # One list per output type, shared by its outputs: a router picks
        # events by type, and a subscriber tells rule sets apart, undecoded.
        rules_header = ("rules_version", self.rules_version.encode())
        self._output_headers: dict[str, list[tuple[str, str | bytes | None]]] = {
            kind: [("type", kind.encode()), rules_header]
            for kind in (SCORE_CHANGED, MQL_CROSSED)
        }
        self.scorer = scorer
        self.consumer = consumer
        self.rejoin = rejoin
        self.metrics = metrics
        topics = config.topics
        catalog = catalog if catalog is not None else SchemaCatalog.load()
        inputs: list[Topic] = [*topics.events]
        if topics.firmographics is not None:
            inputs.append(topics.firmographics)
        if registry is None and config.schema_registry is not None:
            registry = RegistryClient.from_config(config.schema_registry)
        self.codecs: dict[str, Codec] = {
            topic.name: topic_codec(topic, catalog, registry, reads=INPUT_RECORDS)
            for topic in inputs
        }
        self.firmographics_topic = (
            topics.firmographics.name if topics.firmographics else None
        )
        self.output_codec = topic_codec(topics.output, catalog, registry, SCORE_SCHEMA)
        self.bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
        self.dead_letters = DeadLetters(config)
        self.partitions = Assignment(
            consumer,
            metrics,
            before_revoke=lambda: self.delivery.commit_stored("revoke"),
            on_error=self._client_error,
        )
        self.silence = silence or BrokerSilence.of(config, metrics)
        self.silence.fetching = lambda: self.partitions.fetching
        # The stop event is run()'s; until then nothing waits.
        self.waiting = Waiting(self.partitions, metrics, threading.Event())
        self.waiting.on_poll = self._polled
        mode = Transactional if config.pipeline.transactional else AtLeastOnce
        self.delivery = mode(make_producer, consumer, self.waiting, metrics)
        self.lane = StoreLane(scorer.store)
        self.on_batch: Callable[[Batch, list[Scored]], None] | None = None
        self._last_lag_s = 0.0
        # Per input partition, the epoch and next offset of its latest batch
        # started and latest published: the batches in flight between them
        # count in the lag (`_report_lag`).
        self._started: dict[Key, tuple[int, int]] = {}
        self._done: dict[Key, tuple[int, int]] = {}
        # And the epoch and first offset of its first batch of that epoch:
        # before one is published, the batches in flight start there.
        self._first: dict[Key, tuple[int, int]] = {}
        reset = str(consumer_settings(config)["auto.offset.reset"])
        self._from_earliest = reset in ("earliest", "smallest", "beginning")
        # Read by /readyz from the probe thread (scorer.probes): monotonic
        # times of the last poll (None before the first) and commit, and
        # the lag of the last reading.
        self.polled_at_s: float | None = None
        self.committed_at_s = time.monotonic()
        self.lag_records = 0
        metrics.set_rules_version(scorer.rules_version)

    @property
    def producer(self) -> Producer:
        """The producer of outputs now (a failed one is replaced)."""
        return self.delivery.producer

    @property
    def assignment(self) -> set[Key]:
        """The input partitions this instance owns now."""
        return self.partitions.owned

    @property
    def silent_brokers(self) -> dict[int, float]:
        """Brokers of fetched partitions that stopped answering (scorer.silence)."""
        return self.silence.silent

    @property
    def silence_judged(self) -> bool:
        return self.silence.judged

    @property
    def kafka_waited_s(self) -> float:
        """Seconds the batch in flight has waited for the brokers, if it does."""
        return self.waiting.waited_s("kafka")

    @property
    def redis_waited_s(self) -> float:
        """Seconds a batch has waited for Redis to score it again, if one does."""
        return self.waiting.waited_s("redis")

    def run(self, stop: threading.Event) -> None:
        """Score until `stop` is set, finishing the batches in flight.

        A wait for Redis or the broker after `stop` is set (longer than the
        first second of an ack wait, or any Redis retry) leaves the waiting
        batch and those behind it uncommitted instead: they are consumed
        again after the restart.
        """
        self.waiting.stop = stop
        try:
            self.delivery.start()
            self._warn_of_missing_topics()
            self._subscribe()
            self._log_start()
            self._loop(stop)
        except Interrupted:
            spans = uncommitted_spans(self._started, self._done, self._first)
            log.warning(
                "stopped while waiting; the batches in flight are not committed "
                "and are consumed again after the restart: %s",
                ", ".join(spans) or "none started",
            )
        finally:
            self._close()

    def _log_start(self) -> None:
        # What tells two instances apart, such as a candidate rule set run
        # beside the baseline: each needs its own group, prefix and output.
        config = self.config
        log.info(
            "scorer started topics=%s delivery=%s group=%s key_prefix=%s "
            "output=%s rules=%s",
            ",".join(self.codecs),
            self.delivery.name,
            config.kafka.group_id,
            config.redis.key_prefix,
            config.topics.output.name,
            self.rules_version,
        )

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            list(self.codecs),
            on_assign=self.partitions.on_assign,
            on_revoke=self.partitions.on_revoke,
            on_lost=self.partitions.on_lost,
        )

    def _warn_of_missing_topics(self) -> None:
        """Name the configured topics the broker does not have.

        Outputs to a missing topic wait for acknowledgements that never come,
        and the wait's own log lines cannot say why.
        """
        topics = self.config.topics
        roles = {name: "input" for name in self.codecs}
        roles |= {topics.output.name: "output", topics.dead_letter: "dead_letter"}
        try:
            known = self.consumer.list_topics(timeout=TOPIC_CHECK_S).topics
        except KafkaException:
            return  # the broker is away: the waits say so
        for name, role in roles.items():
            if name not in known:
                log.warning(
                    "%s topic %s does not exist on the broker; records for it "
                    "wait until it does",
                    role,
                    name,
                )

    def _loop(self, stop: threading.Event) -> None:
        """Three batches at once, each a step ahead of the next.

        In each turn the loop consumes and decodes a batch (its parts queue
        for Redis behind the batch before), confirms the batch before that
        (acks, then the commit) and sends the outputs of the batch between.
        Redis, the broker and Python thus work at the same time instead of
        taking turns. Whatever is in flight when `stop` is set is finished:
        what reached Redis is published and committed.
        """
        pipeline = self.config.pipeline
        sizes = BatchBytes(pipeline.batch_bytes, pipeline.batch_size)
        timeout_s = pipeline.batch_timeout_ms / 1000
        in_flight: InFlight | None = None
        sent: Sending | None = None
        while not stop.is_set():
            if in_flight is None and sent is None:
                self._rejoin_if_cut_off()
            messages = self.partitions.take_carried()
            if not messages:
                # With a batch in flight, take only what has arrived: waiting
                # for a batch to fill up would hold back the batches ahead.
                busy = in_flight is not None or sent is not None
                wait_s = 0.0 if busy else timeout_s
                messages = self.consumer.consume(sizes.count(), wait_s)
                sizes.observe(messages)
                self._polled()
            self._report_lag()
            self.delivery.commit_due()
            started = self._start(messages) if messages else None
            if sent is not None:
                self._confirm(sent)
            sent = self._send(in_flight, behind=started) if in_flight else None
            in_flight = started
            self.delivery.producer.poll(0)
        if sent is not None:
            self._confirm(sent)
        if in_flight is not None:
            self._confirm(self._send(in_flight, behind=None))

    def _rejoin_if_cut_off(self) -> None:
        """Replace a consumer that lost its partitions and never rejoined.

        After a broker restart, librdkafka's consumer has been seen to queue
        its requests to the group coordinator for good, so that no
        assignment ever follows the loss; a new consumer finds the
        coordinator again. Called with no batch in flight: a lost
        assignment's batches commit nothing anyway.
        """
        rejoin = self.rejoin
        if rejoin is None:
            return
        now_s = time.monotonic()
        cut_off_s = self.partitions.cut_off_s(now_s)
        if cut_off_s is None or not rejoin.due(cut_off_s, now_s):
            return

        log.warning(
            "no partitions assigned since losing them %.1f s ago; "
            "replacing the Kafka consumer",
            cut_off_s,
        )
        old, self.consumer = self.consumer, rejoin.make_consumer()
        self.partitions.replace_consumer(self.consumer)
        self.delivery.consumer = self.consumer
        self._subscribe()
        self.metrics.consumer_replacements.inc()
        rejoin.close_later(old)

    def _polled(self) -> None:
        """The loop polled Kafka: for /readyz and the last-poll metric."""
        self.polled_at_s = time.monotonic()
        self.metrics.last_poll.set(time.time())

    def _start(self, messages: Sequence[Message]) -> InFlight:
        """Decode a batch in parts, each sent to Redis once it is planned.

        Redis (`scorer.lane`) applies a part while the next one is decoded.
        """
        started_s = time.monotonic()
        batch = Batch(messages=[])
        parts = []
        for start in range(0, len(messages), PART_RECORDS):
            part = self._decode(messages[start : start + PART_RECORDS])
            plan = self.scorer.plan(part.items)
            parts.append((part, plan, self.lane.submit(plan.updates)))
            batch.messages += part.messages
            batch.items += part.items
            batch.sources += part.sources
            batch.rejected += part.rejected

        next_offsets = _next_offsets_by_key(batch.messages)
        epochs = self.partitions.epochs(next_offsets)
        started = InFlight(started_s, len(messages), batch, parts, next_offsets, epochs)
        _mark(self._started, started)
        self._note_first_batches(batch.messages, epochs)
        return started

    def _note_first_batches(
        self, messages: list[Message], epochs: dict[Key, int]
    ) -> None:
        """Where the first batch of each newly owned partition starts."""
        new = {
            key
            for key, epoch in epochs.items()
            if self._first.get(key, (-1,))[0] != epoch
        }
        for message in messages:
            if not new:
                return
            key = (str(message.topic()), int(message.partition() or 0))
            if key in new:  # a partition's records come in offset order
                self._first[key] = (epochs[key], int(message.offset() or 0))
                new.discard(key)

    def _send(self, in_flight: InFlight, behind: InFlight | None) -> Sending:
        """Hand a started batch's outputs and dead letters to the producer."""
        batch = in_flight.batch
        results, outputs = self._scored(in_flight, behind)

        outgoing = [self.dead_letters.letter(r) for r in batch.rejected] + outputs
        # The note tells the group which rules committed (scorer.presence).
        note = commit_note(self.rules_version, time.time())
        offsets = [
            TopicPartition(t, p, o, metadata=note)
            for (t, p), o in in_flight.offsets.items()
        ]
        sent = self.delivery.send(Handoff(outgoing, offsets, in_flight.epochs))
        return Sending(in_flight, results, sent)

    def _confirm(self, sending: Sending) -> None:
        """Wait for the acks of a sent batch, then commit it."""
        self.delivery.confirm(sending.sent)

        in_flight, results = sending.in_flight, sending.results
        batch = in_flight.batch
        self._observe_latency(batch, results)
        self._count(batch, results)
        self.metrics.batch_duration.observe(time.monotonic() - in_flight.started_s)
        self.metrics.batch_size.observe(in_flight.size)
        self.metrics.last_batch.set(time.time())
        self.committed_at_s = time.monotonic()
        _mark(self._done, in_flight)
        if self.on_batch is not None:
            self.on_batch(batch, results)

    # -- decoding ----------------------------------------------------------

    def _decode(self, messages: Sequence[Message]) -> Batch:
        batch = Batch(messages=[])
        for message in messages:
            error = message.error()
            if error is not None:
                self._client_error(error)
                continue
            batch.messages.append(message)
            try:
                item = self._item(message)
            except InvalidRecord as exc:
                batch.rejected.append(Rejected(message, exc))
                continue
            except RegistryError:
                # The schema registry failed, not the record: stop before
                # anything of the batch is committed. (Parts already sent to
                # Redis are remembered by update id, so the batch consumed
                # again after the restart publishes the same outputs.)
                raise
            except Exception as exc:
                # A bug must not stop the partition behind one record.
                rejection = unexpected_error(exc)
                batch.rejected.append(Rejected(message, rejection, type(exc).__name__))
                continue
            batch.items.append(item)
            batch.sources.append(message)
        return batch

    def _item(self, message: Message) -> Item:
        topic = str(message.topic())
        value = message.value()
        is_firmographics = topic == self.firmographics_topic
        if value is None:
            if is_firmographics:
                return _tombstone(message)
            raise InvalidRecord("null_value", "the message has no value")

        record = parse_record(self.codecs[topic].decode(value), self.bounds)
        if is_firmographics != isinstance(record, Firmographics):
            raise wrong_topic(topic, is_firmographics)
        return record

    def _client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.metrics.kafka_errors.labels("consume").inc()
        log.warning("consume error code=%s reason=%s", error.name(), error.str())

    # -- scoring -----------------------------------------------------------

    def _scored(
        self, in_flight: InFlight, behind: InFlight | None
    ) -> tuple[list[Scored], list[Outgoing]]:
        """The batch's results and outputs, in consumed order.

        A part's outputs are encoded while Redis applies the parts behind it.
        """
        rejected = in_flight.batch.rejected
        if in_flight.retried is not None:
            retried = in_flight.retried
            return retried, self._outputs(in_flight.batch, retried, rejected)

        results: list[Scored] = []
        outputs: list[Outgoing] = []
        for index, (part, plan, applied) in enumerate(in_flight.parts):
            try:
                outcomes = applied.result()
            except StateStoreError as exc:
                again, again_out = self._scored_again(
                    in_flight.parts[index:], behind, exc, rejected
                )
                return results + again, outputs + again_out
            scored = self.scorer.finish(plan, outcomes)
            results += scored
            outputs += self._outputs(part, scored, rejected)
        return results, outputs

    def _scored_again(
        self,
        parts: list[Part],
        behind: InFlight | None,
        failure: StateStoreError,
        rejected: list[Rejected],
    ) -> tuple[list[Scored], list[Outgoing]]:
        """Score the parts from a failed one on, then the batch behind, in order.

        Nothing behind the failed part reached Redis, the batch behind
        included (`scorer.lane`). The parts before it keep their results:
        scored again, a fit update or a tombstone would not give the same
        outcome, since the store remembers those by lead, not by update id.
        """
        self.lane.settle()

        rest = Batch(messages=[])
        for part, _plan, _applied in parts:
            rest.items += part.items
            rest.sources += part.sources
        results = self._score_when_redis_returns(rest.items, failure)
        if behind is not None:
            behind.retried = self._score_now(behind.batch.items)
        return results, self._outputs(rest, results, rejected)

    def _score_now(self, items: list[Item]) -> list[Scored]:
        try:
            return self.scorer.score(items)
        except StateStoreError as exc:
            return self._score_when_redis_returns(items, exc)

    def _score_when_redis_returns(
        self, items: list[Item], error: StateStoreError
    ) -> list[Scored]:
        """Retry with bounded backoff, holding the consumer meanwhile.

        A retry may repeat writes of a round trip that failed half way (or
        whose reply was lost): each update id is applied once, and a repeat
        returns the first outcome (see scorer.state).
        """
        started = time.monotonic()
        attempts = 0
        with self.waiting.holding("redis"):
            for delay in backoff.delays():
                self.metrics.redis_errors.inc()
                log.warning(
                    "redis unavailable; batch held, retrying in %.1fs "
                    "attempt=%d error=%s",
                    delay,
                    attempts + 1,
                    error,
                )
                self.waiting.serve_for(delay, self.delivery.producer)
                self._report_lag(ask_brokers=True)
                self.metrics.redis_retries.inc()
                attempts += 1
                try:
                    results = self.scorer.score(items)
                    break
                except StateStoreError as exc:
                    error = exc
        waited_s = time.monotonic() - started
        log.warning("redis back waited_s=%.1f attempts=%d", waited_s, attempts)
        return [_as_first_delivery(result) for result in results]

    # -- publishing --------------------------------------------------------

    def _outputs(
        self, batch: Batch, results: list[Scored], rejected: list[Rejected]
    ) -> list[Outgoing]:
        """The outputs of `batch`'s records, in consumed order.

        A record whose outputs cannot be encoded joins `rejected` (its
        in-flight batch's), which `_send` turns into dead letters: they are
        acknowledged before the offsets are committed, as outputs are.
        """
        outputs = []
        for message, result in zip(batch.sources, results, strict=True):
            if not result.outputs:
                continue
            try:
                values = encode_outputs(result.outputs, self.output_codec.encode)
            except InvalidRecord as exc:
                rejected.append(Rejected(message, exc, scored=True))
                continue
            for event, value in zip(result.outputs, values, strict=True):
                outputs.append(self._output(message, event, value))
        return outputs

    def _output(self, source: Message, event: dict[str, Any], value: bytes) -> Outgoing:
        topic, partition, _ = placed(source)
        return Outgoing(
            topic=self.config.topics.output.name,
            key=str(event["lead_id"]).encode(),
            value=value,
            headers=self._output_headers[event["type"]],
            source=(topic, partition),
        )

    def _observe_latency(self, batch: Batch, results: list[Scored]) -> None:
        now_ms = time.time() * 1000
        for message, result in _published(batch, results):
            if not result.outputs:
                continue
            kind, created_ms = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE and created_ms > 0:
                self.metrics.latency.observe(max(0.0, now_ms - created_ms) / 1000)

    # -- lifecycle ---------------------------------------------------------

    def _report_lag(self, ask_brokers: bool = False) -> None:
        """Lag per partition, from cached watermarks or, held, the brokers'."""
        now = time.monotonic()
        if now - self._last_lag_s < LAG_INTERVAL_S or not self.assignment:
            return
        self._last_lag_s = now
        partitions = [TopicPartition(t, p) for t, p in sorted(self.assignment)]
        try:
            positions = self.consumer.position(partitions)
        except KafkaException:
            return
        # A broker that does not answer: the cache is as old as the hold and
        # would show the backlog shrink. The gauge keeps its last reading,
        # and the next retry of Redis is not held up by a second per
        # partition.
        starts = self._starts_of_unfetched(positions) if ask_brokers else {}
        if starts is None:
            return
        lags = {}
        for tp in positions:
            marks = self._watermarks(tp, ask_brokers)
            if marks is None and ask_brokers:
                return
            key = (tp.topic, tp.partition)
            start = starts.get(key) if tp.offset < 0 else self._undone_from(tp)
            if marks is not None and marks[1] >= 0 and start is not None:
                lags[key] = max(0, marks[1] - start)
        # Set together, so that a scrape sees one reading, not two halves.
        for (topic, partition), lag in lags.items():
            self.metrics.lag.labels(topic, str(partition)).set(lag)
        self.lag_records = sum(lags.values())

    def _watermarks(
        self, tp: TopicPartition, ask_brokers: bool
    ) -> tuple[int, int] | None:
        if not ask_brokers:
            # Cached: the watermarks that came with the latest fetch
            # response, so no request to the broker from the consume loop.
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            return None if high is None else (int(low), int(high))
        return self._asked_watermarks(tp)

    def _starts_of_unfetched(
        self, positions: list[TopicPartition]
    ) -> dict[Key, int] | None:
        """Where partitions held since their assignment start; None if unknown.

        A partition assigned during a hold is paused at once and never
        fetched, so it has no position: a restart during an outage with
        more than one batch waiting, or partitions handed back by a
        rebalance. Its backlog starts at its committed offset or, with none,
        where `auto.offset.reset` puts it (the low watermark for earliest).
        """
        unfetched = [
            TopicPartition(tp.topic, tp.partition) for tp in positions if tp.offset < 0
        ]
        if not unfetched:
            return {}
        try:
            committed = self.consumer.committed(unfetched, timeout=LAG_QUERY_TIMEOUT_S)
        except KafkaException:
            return None
        starts = {}
        for tp in committed:
            key = (tp.topic, tp.partition)
            if tp.offset >= 0:
                starts[key] = int(tp.offset)
            elif self._from_earliest:
                marks = self._asked_watermarks(tp)
                if marks is None:
                    return None
                starts[key] = marks[0]
        return starts

    def _asked_watermarks(self, tp: TopicPartition) -> tuple[int, int] | None:
        """The partition's watermarks from its leader, None if it is silent.

        The cached ones (above) come with each fetch response, so they cost
        no request; a held consumer fetches nothing, so during a wait for
        Redis they would stand still while the backlog grows.
        """
        try:
            marks = self.consumer.get_watermark_offsets(
                tp, timeout=LAG_QUERY_TIMEOUT_S, cached=False
            )
        except KafkaException:
            return None
        return None if marks is None else (int(marks[0]), int(marks[1]))

    def _undone_from(self, position: TopicPartition) -> int:
        """The first offset of the partition not yet published.

        The consumer's position is past the batches in flight: under a slow
        Redis a tester saw 1,100 records wait while a lag from the position
        read 0. With none in flight it is the position, which is also past
        offsets that hold no record (a transaction's marker). Before the
        partition's first batch of its current assignment is published, the
        batches in flight start at that first batch's first offset.
        """
        key = (position.topic, position.partition)
        started = self._started.get(key)
        start = _in_flight_from(key, self._started, self._done, self._first)
        if start is None or started is None:
            return int(position.offset)
        if not self.partitions.still_owned({key: started[0]}):
            return int(position.offset)
        return min(start, int(position.offset))

    def _close(self) -> None:
        log.info("scorer stopping: flushing outputs and committing")
        if not finished_within(CLIENTS_CLOSE_TIMEOUT_S, self._close_clients):
            log.warning(
                "the brokers did not let the Kafka clients close within %.0fs; "
                "stopping without them: what is not committed is consumed again",
                CLIENTS_CLOSE_TIMEOUT_S,
            )
        self.lane.close()
        log.info("scorer stopped")

    def _close_clients(self) -> None:
        self.delivery.close(DELIVERY_TIMEOUT_S)
        self.consumer.close()

    # -- metrics -----------------------------------------------------------

    def _count(self, batch: Batch, results: list[Scored]) -> None:
        """Tally the batch, then update each metric once per label set.

        A labelled increment costs microseconds; once per record it was a
        tenth of the scorer's time.
        """
        consumed = Counter(message.topic() for message in batch.messages)
        records: Counter[tuple[str | None, str]] = Counter()
        dead: Counter[tuple[str | None, str]] = Counter()
        for rejected in batch.rejected:
            topic = rejected.message.topic()
            records[(topic, "dead_lettered")] += 1
            dead[(topic, rejected.error.reason)] += 1
        outputs: Counter[str] = Counter()
        for message, result in _published(batch, results):
            records[(message.topic(), result.status)] += 1
            _tally_outputs(result, outputs)

        m = self.metrics
        for topic, count in consumed.items():
            m.consumed.labels(topic).inc(count)
        for (topic, outcome), count in records.items():
            m.records.labels(topic, outcome).inc(count)
        for (topic, reason), count in dead.items():
            m.dead_lettered.labels(topic, reason).inc(count)
        _count_outputs(m, outputs)


def _as_first_delivery(result: Scored) -> Scored:
    """A retried record found applied, counted as the first delivery it is.

    A Redis call that timed out may still run once Redis answers again; the
    retry then finds its updates applied and gets their first outcomes back
    (scorer.state), whose outputs were never published. Counted as
    duplicates, they left the output counters short after every Redis stall
    longer than redis.timeout_s. Known limitation: a record redelivered
    from an earlier life that meets a Redis retry is counted as new.
    """
    if result.status != DUPLICATE_RECORD:
        return result
    return Scored(result.first_status, result.outcome, result.outputs)


def _published(batch: Batch, results: list[Scored]) -> Iterator[tuple[Message, Scored]]:
    """The scored records with their results, but those dead-lettered after all.

    A record whose outputs could not be encoded is in `batch.rejected` too,
    and counted there: once, as dead-lettered, with none of its outputs.
    """
    dead = {id(r.message) for r in batch.rejected if r.scored}
    for message, result in zip(batch.sources, results, strict=True):
        if id(message) not in dead:
            yield message, result


def _tally_outputs(result: Scored, tally: Counter[str]) -> None:
    # A redelivered record re-publishes its first outputs byte for byte: they
    # are copies, counted as a duplicate record, not as new changes.
    if result.status == DUPLICATE_RECORD:
        return
    if result.lateness is not None:
        tally[result.lateness] += 1
    for event in result.outputs:
        if event["type"] == MQL_CROSSED:
            tally[f"mql_{event['direction']}"] += 1
        else:
            tally["score_changed"] += 1


def _count_outputs(m: Metrics, tally: Counter[str]) -> None:
    for lateness in LATENESS:
        if tally[lateness]:
            m.late_events.labels(lateness).inc(tally[lateness])
    for direction in MQL_DIRECTIONS:
        if tally[f"mql_{direction}"]:
            m.mql_crossings.labels(direction).inc(tally[f"mql_{direction}"])
    if tally["score_changed"]:
        m.score_changes.inc(tally["score_changed"])


def _tombstone(message: Message) -> Forget:
    place = (str(message.topic()), message.partition() or 0, message.offset() or 0)
    kind, at_ms = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        # The outcome is remembered, so a redelivery keeps this first time.
        at_ms = int(time.time() * 1000)
    return Forget(_lead_from_key(message), tombstone_op_id(*place), at_ms)


def _lead_from_key(message: Message) -> str:
    key = message.key()
    if not key:
        raise InvalidRecord("missing_key", "a tombstone needs the lead id as key")
    try:
        lead_id = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord("bad_key", "the key is not UTF-8") from exc
    # The checks an event's lead_id passes: no other key names a lead.
    if not lead_id.strip() or not lead_id.isprintable() or len(lead_id) > MAX_ID_CHARS:
        raise InvalidRecord("bad_key", "the key is not a lead id")
    return lead_id


def uncommitted_spans(
    started: Mapping[Key, tuple[int, int]],
    done: Mapping[Key, tuple[int, int]],
    first: Mapping[Key, tuple[int, int]],
) -> list[str]:
    """`topic/partition offsets A-B` of each partition's batches in flight.

    Each map holds a partition's epoch and offset: the next offset after its
    latest batch started, after its latest published, and the first offset
    of its first batch of the epoch. Those published are committed by the
    stop; the ones after them, to the latest started, are left.
    """
    spans = []
    for key, (_epoch, end) in sorted(started.items()):
        if done.get(key) == started[key]:
            continue
        start = _in_flight_from(key, started, done, first)
        topic, partition = key
        shown = f"{start}-{end - 1}" if start is not None else f"up to {end - 1}"
        spans.append(f"{topic}/{partition} offsets {shown}")
    return spans


def _in_flight_from(
    key: Key,
    started: Mapping[Key, tuple[int, int]],
    done: Mapping[Key, tuple[int, int]],
    first: Mapping[Key, tuple[int, int]],
) -> int | None:
    """The first offset of a partition's batches in flight, in the epoch of
    its latest batch started; None with none in flight, or where unknown.

    After the epoch's latest batch published; with none published yet (a
    batch held for Redis from the start, as after a restart during an
    outage), from the epoch's first batch.
    """
    latest = started.get(key)
    if latest is None or done.get(key) == latest:
        return None
    epoch = latest[0]
    for mark in (done.get(key), first.get(key)):
        if mark is not None and mark[0] == epoch:
            return mark[1]
    return None


def _mark(marks: dict[Key, tuple[int, int]], in_flight: InFlight) -> None:
    """Note the epoch and next offset of each partition of `in_flight`."""
    for key, offset in in_flight.offsets.items():
        if key in in_flight.epochs:
            marks[key] = (in_flight.epochs[key], offset)


def _next_offsets_by_key(messages: list[Message]) -> dict[Key, int]:
    """One past the highest offset of each partition among `messages`."""
    highest: dict[Key, int] = {}
    for message in messages:
        # Once per record: the plain calls, not _where and its checks.
        key = (str(message.topic()), int(message.partition() or 0))
        offset = int(message.offset() or 0)
        if offset > highest.get(key, -1):
            highest[key] = offset
    return {key: offset + 1 for key, offset in highest.items()}


def finished_within(timeout_s: float, work: Callable[[], None]) -> bool:
    """Run `work` on a daemon thread; False if it is still running after
    `timeout_s`, and then left behind (the process exits without it).

    An exception of `work` is raised here, as if it had run in this thread.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name="scorer-stop", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if errors:
        raise errors[0]
    return not thread.is_alive()
