"""How a scored batch leaves: its outputs published, then its offsets committed.

Two modes, chosen by `pipeline.transactional`:

- `AtLeastOnce` (default): produce the outputs and dead letters, wait until
  the broker acknowledged every one, and only then store and commit the
  batch's offsets. A crash before the commit replays the batch; Redis
  remembers each update id, so the replay changes no score and publishes
  byte-identical copies (same output event id) of what was published.
- `Transactional`: the outputs and the batch's offsets go in one Kafka
  transaction (KIP-98; offsets with the consumer group's metadata, KIP-447).
  A consumer reading with `isolation.level=read_committed` sees each output
  exactly once, crashes included.

Both keep the consumer alive while they wait (`scorer.assignment`), and
commit offsets only for partitions the instance still owns.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from scorer import backoff
from scorer.assignment import Assignment, Key
from scorer.errors import BrokerError, ScorerError
from scorer.metrics import Metrics

log = logging.getLogger(__name__)

# Acknowledgements normally take milliseconds; after this the wait serves
# the consumer (see scorer.assignment) and says so in the metrics.
ACK_WAIT_S = 1.0
# Poll interval of every wait that holds the consumer.
HOLD_POLL_S = 0.1
# A wait longer than this is logged again, as a reminder.
WAIT_LOG_EVERY_S = 10.0
# One try of a transaction call; a retriable failure is tried again after
# serving the consumer, so this stays well below max.poll.interval.ms.
TRANSACTION_CALL_S = 1.0
# A transactional call still running after this is taken as stuck (see
# Transactional._in_worker); calls normally end within TRANSACTION_CALL_S.
STUCK_CALL_S = 20.0
# Outputs still unacknowledged after this are taken as stuck in their
# producer: after a broker restart librdkafka can keep a partition's leader
# "not found in cache" and retry for message.timeout.ms (5 min; librdkafka
# issue 4976). A new producer asks the broker afresh.
STUCK_ACKS_S = 20.0
# Offsets are committed at most this often; those stored in between go with
# the next commit. A commit per batch of a few records (pipeline.batch_size
# 2) piled up over a thousand commit requests on a busy coordinator, and
# the group's members lost their sessions.
COMMIT_EVERY_S = 0.05
# librdkafka's codes for "another producer now has this transactional.id".
FENCED = (
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
)


class Interrupted(ScorerError):
    """The scorer was asked to stop while a batch waited; it is not committed."""


@dataclass(slots=True)
class Outgoing:
    """One message to publish, and the input partition whose record caused it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]
    source: Key


@dataclass(slots=True)
class Handoff:
    """A scored batch, ready to leave: its messages and the offsets after it."""

    outgoing: list[Outgoing]
    offsets: list[TopicPartition]  # the next offset of each input partition
    epochs: dict[Key, int]  # ownership of those partitions when consumed

    def offsets_of(self, owned: set[Key]) -> list[TopicPartition]:
        return [tp for tp in self.offsets if (tp.topic, tp.partition) in owned]


class Deliveries:
    """Messages handed to one producer, and the failures it reported.

    Successes go unreported (the pipeline's producer sets
    delivery.report.only.error): a message is acknowledged once its producer
    has flushed without reporting it failed. A producer replaced meanwhile
    voids that, since its purge may leave messages unreported (a two-broker
    kill lost an output so): all it was given is produced again.
    """

    def __init__(self, producer: Producer, items: list[Outgoing]) -> None:
        self.producer = producer
        self.items = items
        self.failures: list[tuple[Outgoing, KafkaError]] = []


@dataclass(slots=True)
class Sent:
    """A batch whose outputs were handed to the producer, not yet confirmed."""

    handoff: Handoff
    deliveries: Deliveries  # failures filled by delivery reports


class Waiting:
    """Waits that keep the consumer alive and end when the scorer stops."""

    def __init__(
        self, assignment: Assignment, metrics: Metrics, stop: threading.Event
    ) -> None:
        self.assignment = assignment
        self.metrics = metrics
        self.stop = stop
        # Told of each poll of the held consumer: it is the consume loop's
        # poll while the loop waits (the pipeline's poll time and metric).
        self.on_poll: Callable[[], None] | None = None
        self._holds: Counter[str] = Counter()
        self._since_s: dict[str, float] = {}

    @contextmanager
    def holding(self, dependency: str) -> Iterator[None]:
        """Hold the consumer (see scorer.assignment) while `dependency` is away.

        Holds nest: the waiting gauge falls back to 0 with the outermost.
        """
        with self.timing(dependency):
            self.assignment.hold()
            self._holds[dependency] += 1
            self.metrics.waiting.labels(dependency).set(1)
            try:
                yield
            finally:
                self._holds[dependency] -= 1
                if not self._holds[dependency]:
                    self.metrics.waiting.labels(dependency).set(0)
                self.assignment.release()

    @contextmanager
    def timing(self, dependency: str) -> Iterator[None]:
        """One wait for `dependency`, however many holds it takes.

        A batch's wait for acks can hold, replace its producer (which ends
        the hold) and hold again: /readyz counts it as one (`waited_s`).
        """
        outermost = dependency not in self._since_s
        if outermost:
            self._since_s[dependency] = time.monotonic()
        try:
            yield
        finally:
            if outermost:
                del self._since_s[dependency]

    def waited_s(self, dependency: str) -> float:
        """Seconds the wait for `dependency` has lasted; 0 if there is none."""
        since_s = self._since_s.get(dependency)
        return 0.0 if since_s is None else time.monotonic() - since_s

    def serve_for(self, seconds: float, producer: Producer | None = None) -> None:
        """Serve the held consumer for `seconds`; raises `Interrupted` on stop."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_stop()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.assignment.serve(min(HOLD_POLL_S, left))
            if self.on_poll is not None:
                self.on_poll()
            if producer is not None:
                producer.poll(0)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted("stopped while the batch in flight waited")


MakeProducer = Callable[[], Producer]


class _Delivery:
    """What both modes share: the producer, and replacing it when it fails."""

    name = ""
    _failure_logged_s = float("-inf")

    def __init__(
        self,
        make_producer: MakeProducer,
        consumer: Consumer,
        waiting: Waiting,
        metrics: Metrics,
    ) -> None:
        self.make_producer = make_producer
        self.producer = make_producer()
        self.consumer = consumer
        self.waiting = waiting
        self.metrics = metrics

    def commit_due(self) -> None:
        """Commit offsets stored since the last commit, if it is time."""

    def _failure_worth_logging(self) -> bool:
        """True once per WAIT_LOG_EVERY_S: a lasting failure repeats every 2 s."""
        now = time.monotonic()
        if now - self._failure_logged_s < WAIT_LOG_EVERY_S:
            return False
        self._failure_logged_s = now
        return True

    def _replace_producer(self, why: str) -> None:
        """Carry on with a new producer: the old one failed for good or is stuck.

        What the old one had queued is purged, and the batch produces again
        all it gave the old one (see Deliveries).
        """
        log.warning("producer %s; replacing it", why)
        self.producer.purge()
        self.producer.flush(0)
        self.producer = self.make_producer()


class CommitFailures:
    """librdkafka's `on_commit` callback: count and log failed asynchronous commits.

    An asynchronous commit's outcome reaches only this callback, served by
    the consumer's next poll; a synchronous one raises instead, and is
    counted where it is made (confluent-kafka does not call the callback for
    it). The offsets of a failed commit stay stored and go with the next one.
    """

    def __init__(
        self, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self._logged_s = float("-inf")
        self._unlogged = 0  # failures since the last warning

    def __call__(
        self, error: KafkaError | None, partitions: list[TopicPartition]
    ) -> None:
        reason = _commit_failure(error, partitions)
        if reason is None:
            return

        self.metrics.kafka_errors.labels("commit").inc()
        self._unlogged += 1

        # A coordinator away fails every commit, up to one per COMMIT_EVERY_S.
        now = self.clock()
        if now - self._logged_s < WAIT_LOG_EVERY_S:
            return
        log.warning(
            "commit failed (%d since the last warning); the offsets go with "
            "the next commit: %s",
            self._unlogged,
            reason,
        )
        self._logged_s, self._unlogged = now, 0


def _commit_failure(
    error: KafkaError | None, partitions: list[TopicPartition]
) -> str | None:
    """What failed in a commit, or None when nothing did.

    "No offset stored" is no failure: nothing was waiting to be committed.
    """
    if error is not None and error.code() == KafkaError._NO_OFFSET:
        return None
    failed = [(p, p.error) for p in partitions if p.error is not None]
    if error is None and not failed:
        return None

    named = ", ".join(f"{p.topic}[{p.partition}]: {e.str()}" for p, e in failed)
    return named or (error.str() if error is not None else "")


class AtLeastOnce(_Delivery):
    """Publish and await every acknowledgement, then commit the offsets."""

    name = "at-least-once"
    stuck_acks_s = STUCK_ACKS_S
    commit_every_s = COMMIT_EVERY_S
    _committed_s = float("-inf")  # monotonic time of the last async commit
    _uncommitted = False  # offsets stored since then

    def start(self) -> None:
        """Nothing to set up: the idempotent producer needs no handshake."""

    def send(self, handoff: Handoff) -> Sent:
        """Produce the batch's messages; their acks arrive while the next is scored."""
        return Sent(handoff, self._produce(handoff.outgoing))

    def confirm(self, sent: Sent) -> None:
        """Wait for every ack, producing failed messages again; then commit."""
        with self.waiting.timing("kafka"):
            pending = self._await(sent.deliveries)
            if pending:
                self._produce_until_acknowledged(pending)

        owned = self.waiting.assignment.still_owned(sent.handoff.epochs)
        self._commit(sent.handoff.offsets_of(owned))

    def commit_due(self) -> None:
        """Commit the offsets stored since the last commit, at most this often.

        The consume loop calls this each turn, so a stored offset waits
        `commit_every_s`, or one turn of an idle loop (`batch_timeout_ms`), or
        a wait for Redis or the broker that began before its commit was due.
        """
        if not self._uncommitted:
            return
        now = time.monotonic()
        if now - self._committed_s < self.commit_every_s:
            return

        self._committed_s, self._uncommitted = now, False
        try:
            self.consumer.commit(asynchronous=True)
        except KafkaException as exc:
            self._commit_failed(exc)

    def commit_stored(self, moment: str) -> None:
        """Commit what is stored, and wait for it (on revocation and stop)."""
        self._uncommitted = False
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self._commit_failed(exc, moment)

    def _commit_failed(self, exc: KafkaException, moment: str | None = None) -> None:
        # The batch is published; a lost commit only replays it.
        self.metrics.kafka_errors.labels("commit").inc()
        if moment is None:
            log.warning("commit failed: %s", exc)
        else:
            log.warning("commit on %s failed: %s", moment, exc)

    def close(self, timeout_s: float) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            log.warning("outputs unacknowledged at stop count=%d", remaining)
        self.commit_stored("stop")

    def _produce_until_acknowledged(self, pending: list[Outgoing]) -> None:
        """Produce again what failed, holding the consumer, until all is acked.

        A failure can last: a topic whose max.message.bytes refuses the
        outputs fails each attempt at once. Backing off between attempts, and
        serving the consumer meanwhile, keeps the scorer in its group, its
        CPU and its log quiet, and shows the wait in the metrics.
        """
        started = time.monotonic()
        with self.waiting.holding("kafka"):
            for delay in backoff.delays():
                self.metrics.produce_retries.inc(len(pending))
                pending = self._await(self._produce(pending))
                if not pending:
                    break
                self.waiting.serve_for(delay, self.producer)
        waited_s = time.monotonic() - started
        log.warning(
            "outputs acknowledged after producing again waited_s=%.1f", waited_s
        )

    def _produce(self, outgoing: list[Outgoing]) -> Deliveries:
        """Hand messages to the producer; failures are reported into Deliveries."""
        deliveries = Deliveries(self.producer, outgoing)
        for item in outgoing:
            produce(self.producer, item, self._report(item, deliveries.failures))
        return deliveries

    def _await(self, deliveries: Deliveries) -> list[Outgoing]:
        """Wait for the acks of what was produced; returns what to produce again."""
        if self.producer.flush(ACK_WAIT_S):
            self._wait_for_acks()
        if self.producer is not deliveries.producer:
            count = len(deliveries.items)
            log.warning("producing again through the new producer count=%d", count)
            return deliveries.items

        failures = deliveries.failures
        if not failures:
            return []

        first = failures[0][1]
        if self._failure_worth_logging():
            topics = sorted({item.topic for item, _ in failures})
            log.warning(
                "deliveries failed; producing again count=%d topics=%s code=%s: %s",
                len(failures),
                ",".join(topics),
                first.name(),
                first.str(),
            )
        fatal = [error for _, error in failures if error.fatal()]
        if fatal:
            self._replace_producer(_failed_for_good(fatal[0]))
        return [item for item, _ in failures]

    def _report(
        self, item: Outgoing, failures: list[tuple[Outgoing, KafkaError]]
    ) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self.metrics.kafka_errors.labels("produce").inc()
                failures.append((item, error))

        return on_delivery

    def _wait_for_acks(self) -> None:
        """Wait until the producer has nothing unacknowledged.

        librdkafka retries until `message.timeout.ms`, then reports a
        failure; a producer stuck for `stuck_acks_s` is replaced sooner. The
        wait ends either way, with acks or with failures to produce again.
        """
        started = time.monotonic()
        logged = started
        log.warning("waiting for the broker to acknowledge outputs")
        with self.waiting.holding("kafka"):
            while self.producer.flush(0) > 0:
                self.waiting.serve_for(HOLD_POLL_S, self.producer)
                now = time.monotonic()
                pending = len(self.producer)
                if now - started > self.stuck_acks_s:
                    self._replace_producer(
                        f"stuck with {pending} outputs unacknowledged"
                    )
                    return
                if now - logged > WAIT_LOG_EVERY_S:
                    logged = now
                    log.warning("outputs still unacknowledged count=%d", pending)
        log.warning("outputs acknowledged waited_s=%.1f", time.monotonic() - started)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        """Store the offsets by hand, now that the outputs are acknowledged.

        librdkafka's automatic offset store (enable.auto.offset.store) would
        mark a record done as soon as it was handed to the application,
        before its Redis write; the service turns it off for good.
        """
        if not offsets:
            return
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            self._commit_failed(exc)
            return
        self._uncommitted = True
        self.commit_due()


class Transactional(_Delivery):
    """Outputs and offsets in one Kafka transaction per batch.

    The producer's `transactional.id` is stable per instance (see
    `scorer.clients.transactional_id`): a restarted instance aborts what
    its previous life left open, at once instead of after
    `transaction.timeout.ms`. Zombies, instances that lost their partitions
    without noticing, are fenced by the group metadata sent with the
    offsets (KIP-447): the coordinator refuses offsets of an old generation,
    and the transaction aborts.

    Every call that talks to the broker has a short timeout and is made
    again while it fails in a retriable way, serving the consumer between
    tries: a broker outage must not cost the group membership.
    """

    name = "transactional"
    _failures = 0  # deliveries of the open transaction that failed

    def start(self) -> None:
        """Fence and abort whatever a previous life of this instance left open."""
        started = time.monotonic()
        try:
            self._init_transactions(partial(self._wait_at_start, started))
        finally:
            self.metrics.waiting.labels("kafka").set(0)
        log.info("transactions initialised waited_s=%.1f", time.monotonic() - started)

    def _init_transactions(self, between: Callable[[KafkaError], None]) -> None:
        while True:
            try:
                self.producer.init_transactions(TRANSACTION_CALL_S)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal() or not error.retriable():
                    raise
            between(error)

    def _wait_at_start(self, started: float, error: KafkaError) -> None:
        # Before the first poll there is no group to keep alive, but the wait
        # must show: the producer's poll serves its error callback and log
        # lines (a refused connection), which init_transactions does not.
        self.waiting.check_stop()
        self.metrics.waiting.labels("kafka").set(1)
        if self._failure_worth_logging():
            log.warning(
                "waiting for the broker to initialise transactions "
                "waited_s=%.1f code=%s",
                time.monotonic() - started,
                error.name(),
            )
        self.producer.poll(HOLD_POLL_S)

    def _serve(self, _error: KafkaError | None = None) -> None:
        with self.waiting.holding("kafka"):
            self.waiting.serve_for(HOLD_POLL_S, self.producer)

    def send(self, handoff: Handoff) -> Sent:
        """The whole transaction: outputs and offsets cannot be split in two."""
        with self.waiting.timing("kafka"):
            for delay in backoff.delays():
                try:
                    if self._attempt(handoff):
                        break
                except StuckCall as exc:
                    self._abandon_producer(exc)
                with self.waiting.holding("kafka"):
                    self.waiting.serve_for(delay, self.producer)
        return Sent(handoff, Deliveries(self.producer, handoff.outgoing))

    def confirm(self, sent: Sent) -> None:
        """Committed by `send` already."""

    def commit_stored(self, moment: str) -> None:
        """Offsets are committed in the transactions; nothing is stored."""

    def close(self, timeout_s: float) -> None:
        """A transaction left open by a stop is aborted by the next start."""

    def _attempt(self, handoff: Handoff) -> bool:
        """One transaction for the batch; False if it failed and was cleared."""
        owned = self.waiting.assignment.still_owned(handoff.epochs)
        try:
            self._transaction(handoff, owned)
            return True
        except KafkaException as exc:
            self._recover(exc.args[0])
        return False

    def _transaction(self, handoff: Handoff, owned: set[Key]) -> None:
        # Outputs of a partition that moved away are the new owner's to
        # publish: it consumes the records again from the committed offset.
        outgoing = [item for item in handoff.outgoing if item.source in owned]
        offsets = handoff.offsets_of(owned)
        self._failures = 0

        self.producer.begin_transaction()
        for item in outgoing:
            produce(self.producer, item, self._report)
        if offsets:
            metadata = self.consumer.consumer_group_metadata()
            send = partial(self.producer.send_offsets_to_transaction, offsets, metadata)
            self._retrying("send_offsets", send)
        self._retrying("commit", self.producer.commit_transaction)

    def _recover(self, error: KafkaError) -> None:
        """After a failed transaction: abort it, or replace the producer."""
        self.metrics.kafka_errors.labels("commit").inc()
        if self._failure_worth_logging():
            log.warning(
                "transaction failed; retrying the batch code=%s "
                "failed_deliveries=%d: %s",
                error.name(),
                self._failures,
                error.str(),
            )
        if error.fatal():
            self._restart_producer(error)
            return
        try:
            self._retrying("abort", self.producer.abort_transaction)
        except KafkaException as exc:
            abort_error: KafkaError = exc.args[0]
            if abort_error.fatal():
                self._restart_producer(abort_error)
            elif abort_error.code() != KafkaError._STATE:
                raise
            # _STATE: the failure came before any transaction began.

    def _abandon_producer(self, stuck: "StuckCall") -> None:
        # Its thread stays blocked in librdkafka; the new producer's
        # init_transactions fences it and aborts its transaction.
        log.warning("transactional producer stuck; replacing it: %s", stuck)
        self.producer = self.make_producer()
        self._init_transactions(self._serve)

    def _restart_producer(self, error: KafkaError) -> None:
        if error.code() in FENCED:
            # Another live process has this transactional.id: two instances
            # share an instance id, or this one is the zombie. Only one may run.
            message = (
                f"fenced by another producer with this transactional.id: {error.str()}"
            )
            raise BrokerError(message)
        self._replace_producer(_failed_for_good(error))
        self._init_transactions(self._serve)

    def _retrying(self, step: str, call: Callable[[float], None]) -> None:
        """A transaction call, made again while it fails in a retriable way."""
        started = time.monotonic()
        while True:
            try:
                self._in_worker(partial(call, TRANSACTION_CALL_S))
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal() or not error.retriable():
                    raise
                if time.monotonic() - started > WAIT_LOG_EVERY_S:
                    started = time.monotonic()
                    log.warning("transaction %s still waiting: %s", step, error.str())
            self._serve()

    def _in_worker(self, call: Callable[[], None]) -> None:
        """Make a blocking producer call in a thread, serving the consumer meanwhile.

        librdkafka may block a transactional call far beyond its timeout
        while a coordinator is away (librdkafka issues 5456 and 5511, open in
        2.16): send_offsets_to_transaction took 60 s with a timeout of 1 s
        against a stopped broker, and after a broker restart it may never
        return. So the consumer is served while the call runs, and a call
        still running after `STUCK_CALL_S` raises `StuckCall`. The call's
        own error, if any, is raised here.
        """
        worker = _Worker(call)
        if worker.wait(ACK_WAIT_S):
            worker.result()
            return
        deadline = time.monotonic() + STUCK_CALL_S
        with self.waiting.holding("kafka"):
            # No stop check: the call runs on, to its end or to the deadline.
            while not worker.wait(0):
                if time.monotonic() > deadline:
                    raise StuckCall(f"a transaction call ran for {STUCK_CALL_S:.0f}s")
                self.waiting.assignment.serve(HOLD_POLL_S)
        worker.result()

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        # A failed delivery fails the commit; the whole batch is retried.
        if error is not None:
            self.metrics.kafka_errors.labels("produce").inc()
            self._failures += 1


class StuckCall(ScorerError):
    """A transactional call of librdkafka that does not return."""


class _Worker:
    """One blocking call in a daemon thread: a stuck call must not block exit."""

    def __init__(self, call: Callable[[], None]) -> None:
        self._call = call
        self._done = threading.Event()
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="transaction", daemon=True).start()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def result(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # raised in the caller's thread by result()
            self._error = exc
        finally:
            self._done.set()


def produce(
    producer: Producer,
    item: Outgoing,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    send(producer, item.topic, item.value, item.key, item.headers, on_delivery)


def send(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, str | bytes | None]] | None = None,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """`producer.produce`, waiting while librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=on_delivery
            )
            return
        except BufferError:
            # The local queue is full: let deliveries drain it.
            producer.poll(0.1)


def _failed_for_good(error: KafkaError) -> str:
    return f"failed for good code={error.name()}: {error.str()}"
