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
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

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

    @property
    def owned(self) -> set[Key]:
        return set(self._epochs)

    def epochs(self, keys: Iterable[Key]) -> dict[Key, int]:
        """The current epoch of each owned partition among `keys`."""
        return {key: self._epochs[key] for key in keys if key in self._epochs}

    def still_owned(self, epochs: Mapping[Key, int]) -> set[Key]:
        """The partitions of `epochs` owned now, in the same epoch."""
        return {key for key, epoch in epochs.items() if self._epochs.get(key) == epoch}

    # -- rebalance callbacks -----------------------------------------------

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing calls back with empty lists between rounds.
        if not partitions:
            return
        for tp in partitions:
            self._epochs[(tp.topic, tp.partition)] = self._next_epoch
            self._next_epoch += 1
        self._changed("assign", partitions)
        log.info("partitions assigned count=%d %s", len(partitions), names(partitions))

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        self._drop(partitions)
        self._changed("revoke", partitions)
        log.info("partitions revoked count=%d %s", len(partitions), names(partitions))
        # Offsets stored for finished batches still count; the new owner
        # starts from them.
        self.before_revoke()

    def on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop(partitions)
        self._changed("lost", partitions)
        log.warning("partitions lost count=%d %s", len(partitions), names(partitions))

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


def _key(message: Message) -> Key:
    topic, partition = message.topic(), message.partition()
    assert topic is not None and partition is not None
    return topic, partition


def names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
