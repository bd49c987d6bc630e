"""The input partitions this instance owns, and the consumer kept alive.

A batch can wait a long time: for Redis to come back, for the broker to
acknowledge outputs. librdkafka leaves the group when the application does
not poll for `max.poll.interval.ms`, so a long wait must keep polling. While
a batch waits, its instance *holds*: every owned partition is paused and the
consumer is polled with short timeouts, which serves heartbeats, rebalance
callbacks and the poll-interval timer but delivers no records.

Ownership is counted in epochs: each assignment of a partition gets a new
one. A batch remembers the epochs of its partitions; when it is done, only
the partitions still owned in the same epoch may have their offsets
committed. A partition revoked (or lost, or revoked and given back) while
the batch waited belongs to whoever consumes it now, from the last
committed offset.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from scorer.metrics import Metrics

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (topic, partition)

# Records per poll while holding; only those fetched before a pause arrive.
HOLD_POLL_RECORDS = 100


class Assignment:
    """What the consumer owns, with the rebalance callbacks that keep it."""

    def __init__(
        self,
        consumer: Consumer,
        metrics: Metrics,
        before_revoke: Callable[[], None] = lambda: None,
        on_error: Callable[[KafkaError], None] = lambda _error: None,
    ) -> None:
        self.consumer = consumer
        self.metrics = metrics
        self.before_revoke = before_revoke
        self.on_error = on_error
        self._epochs: dict[Key, int] = {}
        self._next_epoch = 1
        self._holds = 0  # nested holds release on the outermost release
        self._paused: set[Key] = set()
        self._carried: list[Message] = []
        # Monotonic time of a loss not yet followed by any assignment.
        self._lost_at_s: float | None = None

    @property
    def owned(self) -> set[Key]:
        return set(self._epochs)

    @property
    def fetching(self) -> set[Key]:
        """The owned partitions not paused: those librdkafka fetches."""
        return set(self._epochs).difference(self._paused)

    def epochs(self, keys: Iterable[Key]) -> dict[Key, int]:
        """The current epoch of each owned partition among `keys`."""
        return {key: self._epochs[key] for key in keys if key in self._epochs}

    def still_owned(self, epochs: Mapping[Key, int]) -> set[Key]:
        """The partitions of `epochs` owned now, in the same epoch."""
        return {key for key, epoch in epochs.items() if self._epochs.get(key) == epoch}

    # -- rebalance callbacks -----------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return  # a replaced consumer, closing
        # Even an empty assignment says the consumer is in the group again:
        # a spare instance, or a rebalance that moved nothing.
        self._lost_at_s = None
        # Cooperative rebalancing calls back with empty lists between rounds.
        if not partitions:
            return
        for tp in partitions:
            self._epochs[(tp.topic, tp.partition)] = self._next_epoch
            self._next_epoch += 1
        self._changed("assign", partitions)
        log.info("partitions assigned count=%d %s", len(partitions), names(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer or not partitions:
            return
        self._drop(partitions)
        self._changed("revoke", partitions)
        log.info("partitions revoked count=%d %s", len(partitions), names(partitions))
        # Offsets stored for finished batches still count; the new owner
        # starts from them.
        self.before_revoke()

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return
        if self._lost_at_s is None:
            self._lost_at_s = time.monotonic()
        self._drop(partitions)
        self._changed("lost", partitions)
        log.warning("partitions lost count=%d %s", len(partitions), names(partitions))

    def cut_off_s(self, now_s: float) -> float | None:
        """Seconds since a loss that no assignment has followed, if any."""
        if self._lost_at_s is None:
            return None
        return now_s - self._lost_at_s

    def replace_consumer(self, consumer: Consumer) -> None:
        """Follow a new consumer; the old one's callbacks are ignored from now.

        The new consumer owns nothing yet and has paused nothing.
        """
        self.consumer = consumer
        self._paused.clear()
        self._carried = []
        self._lost_at_s = None
        # A loss takes every partition, so normally none is left here.
        left = [TopicPartition(t, p) for t, p in sorted(self._epochs)]
        if left:
            self._drop(left)
            self._changed("lost", left)

    # -- holding -----------------------------------------------------------

    def hold(self) -> None:
        """Pause every owned partition; `serve` keeps the consumer alive."""
        self._holds += 1
        if self._holds == 1:
            self._pause_new()

    def serve(self, timeout_s: float) -> None:
        """Poll once while holding: callbacks and heartbeats, no records.

        Partitions assigned during the hold are paused here. Records that
        still arrive (fetched before a pause took effect) are carried over:
        `take_carried` hands them out after the hold, in their order.
        """
        assert self._holds > 0, "serve() is for holding only"
        messages = self.consumer.consume(HOLD_POLL_RECORDS, timeout_s)
        self._pause_new()
        for message in messages:
            error = message.error()
            if error is not None:
                self.on_error(error)
            else:
                self._carried.append(message)

    def take_carried(self) -> list[Message]:
        carried, self._carried = self._carried, []
        return carried

    def release(self) -> None:
        """Resume what `hold` paused; records flow again."""
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds > 0:
            return
        # Partitions that moved away meanwhile too: librdkafka keeps a
        # partition's pause flag through an unassign, so one given back later
        # would stay paused for good.
        resumed = [TopicPartition(t, p) for t, p in sorted(self._paused)]
        self._paused.clear()
        if resumed:
            self.consumer.resume(resumed)

    # -- internals ---------------------------------------------------------

    def _pause_new(self) -> None:
        fresh = sorted(self.owned - self._paused)
        if not fresh:
            return
        self.consumer.pause([TopicPartition(t, p) for t, p in fresh])
        self._paused.update(fresh)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._epochs.pop(key, None)
        # Whoever owns them next consumes them again from the committed offset.
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._carried = [m for m in self._carried if _key(m) not in gone]

    def _changed(self, kind: str, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind).inc()
        self.metrics.assigned.set(len(self._epochs))
        if kind != "assign":
            for tp in partitions:
                self.metrics.forget_lag(tp.topic, tp.partition)


# Consumer errors that say no broker can be reached: no rejoin can happen
# until one answers again.
UNREACHABLE = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
)


class Reachability:
    """When the consumer last reported the brokers out of reach."""

    def __init__(self) -> None:
        self._unreachable_at_s = float("-inf")

    def note(self, error: KafkaError) -> None:
        """librdkafka's error callback (the consumer's) calls this."""
        if error.code() in UNREACHABLE:
            self._unreachable_at_s = time.monotonic()

    def reachable_for_s(self, now_s: float) -> float:
        return now_s - self._unreachable_at_s


class Rejoin:
    """How a consumer cut off from its group is replaced (`scorer.pipeline`)."""

    def __init__(
        self,
        make_consumer: Callable[[], Consumer],
        after_s: float,
        reach: Reachability | None = None,
    ) -> None:
        self.make_consumer = make_consumer
        self.after_s = after_s
        self.reach = reach or Reachability()

    def due(self, cut_off_s: float | None, now_s: float) -> bool:
        """Whether a consumer cut off for `cut_off_s` is to be replaced.

        The wait counts from the loss, or from the last sign of the brokers
        being away if later: after an outage, a rejoin still takes up to a
        session timeout (the broker expires the members it had) and a
        rebalance, and a consumer replaced meanwhile leaves a member behind
        that holds up the group's next rebalance for a session timeout.
        """
        if cut_off_s is None:
            return False
        waited_s = min(cut_off_s, self.reach.reachable_for_s(now_s))
        return waited_s >= self.after_s

    def close_later(self, consumer: Consumer) -> None:
        """Close a replaced consumer on a thread of its own.

        Closing leaves the group through the coordinator the consumer could
        not reach, and librdkafka's close has no timeout.
        """
        threading.Thread(
            target=_close, args=(consumer,), name="replaced-consumer", daemon=True
        ).start()


def _close(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("replaced consumer closed with an error: %s", exc)
        return
    log.info("replaced consumer closed")


def _key(message: Message) -> Key:
    topic, partition = message.topic(), message.partition()
    assert topic is not None and partition is not None
    return topic, partition


def names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
