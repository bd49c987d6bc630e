"""A Kafka broker gone silent, told from a quiet topic.

A broker that stops answering without closing its connections (a network
black hole, a frozen process) looks like a quiet topic to the consume loop:
no records, no error, until librdkafka's request timeout (60 s) gives up.
The lag gauge looks fine as well, since its watermarks come with the fetch
responses that no longer come.

librdkafka's statistics tell the two apart. A broker leading a partition
that the consumer fetches answers each fetch within fetch.wait.max.ms, even
when nothing was written; its `rxidle` (microseconds since the consumer last
received anything on the connection) stays below that. So a broker whose
silence grows past `metrics.silent_after` while it leads a partition being
fetched is silent. A fetched partition with no leader known (every broker
gone) is counted the same way, under the broker id -1. Partitions not being
fetched do not count: paused ones (the scorer holds while it waits) and
ones whose fetched records still wait in the client's queue (librdkafka
fetches no more until the loop takes them).

A consumer whose group coordinator falls silent loses its partitions when
its session times out (45 s), and with them every broker to judge; that
does not end the silence. While the consumer fetches nothing at all, a
broker found silent stays so until it answers on any of its connections
(the group coordinator's among them).
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Set
from typing import Any

from scorer.assignment import Key
from scorer.config import STATISTICS_INTERVAL_MS, Config, consumer_setting_ms
from scorer.metrics import Metrics

log = logging.getLogger(__name__)

# The broker id under which fetched partitions without a leader count.
NO_LEADER = -1
# librdkafka's fetch states of a partition it asks nothing of its leader in;
# the others (active, and the offset queries and epoch validation before and
# after an outage) wait for the leader's answer.
NOT_FETCHING = frozenset({"none", "stopping", "stopped"})
# librdkafka's statistics give times in microseconds.
_US = 1_000_000


def leaders_idle(
    stats: Mapping[str, Any], fetching: Set[Key]
) -> dict[int, float | None]:
    """Seconds since each broker leading a partition of `fetching` last answered.

    Only partitions librdkafka is fetching now count: a fetch state that
    asks the leader for something, and an empty queue of fetched records.
    librdkafka counts from the last answer on the broker's current
    connection; None stands for no answer to count from: a connection with
    none yet (a broker reconnecting, its -1), or partitions with no leader
    (NO_LEADER).
    """
    leaders = _fetching_leaders(stats, fetching)
    idle: dict[int, float | None] = {}
    if NO_LEADER in leaders:
        idle[NO_LEADER] = None
    for broker in stats.get("brokers", {}).values():
        # Bootstrap and coordinator handles have no id of their own (-1).
        node = broker.get("nodeid", NO_LEADER)
        if node != NO_LEADER and node in leaders:
            idle_us = broker.get("rxidle", -1)
            idle[node] = idle_us / _US if idle_us >= 0 else None
    return idle


def _fetching_leaders(stats: Mapping[str, Any], fetching: Set[Key]) -> set[int]:
    topics = stats.get("topics", {})
    leaders = set()
    for topic, partition in fetching:
        partitions = topics.get(topic, {}).get("partitions", {})
        state = partitions.get(str(partition))
        if state is None or state.get("fetch_state") in NOT_FETCHING:
            continue
        leader = state.get("leader", NO_LEADER)
        # With no leader nothing can be fetched, whatever waits in the queue
        # (seen: one item, an error, while every broker was down).
        if leader == NO_LEADER or state.get("fetchq_cnt", 0) == 0:
            leaders.add(leader)
    return leaders


def idle_by_address(stats: Mapping[str, Any]) -> dict[str, float]:
    """Seconds since each broker address last answered, on any connection.

    librdkafka talks to a broker on its own connection and on logical ones
    (the group coordinator's, the bootstrap's), which have no id of their
    own but the broker's address; and it may drop the broker's own handle
    while the broker answers nothing. Addresses no connection has had an
    answer from are left out.
    """
    idle: dict[str, float] = {}
    for broker in stats.get("brokers", {}).values():
        address, idle_us = broker.get("nodename", ""), broker.get("rxidle", -1)
        if address and idle_us >= 0:
            idle[address] = min(idle.get(address, idle_us / _US), idle_us / _US)
    return idle


def addresses(stats: Mapping[str, Any]) -> dict[int, str]:
    """The address of each broker with an id of its own."""
    found = {}
    for broker in stats.get("brokers", {}).values():
        node, address = broker.get("nodeid", NO_LEADER), broker.get("nodename", "")
        if node != NO_LEADER and address:
            found[node] = address
    return found


def describe(node: int, seconds: float) -> str:
    """One silence, as /readyz and the log name it."""
    if node == NO_LEADER:
        return f"partitions without a leader for {seconds:.1f}s"
    return f"broker {node} silent {seconds:.1f}s"


class BrokerSilence:
    """The brokers silent for `after_s` or more, from the consumer's statistics.

    librdkafka calls `listener()`'s callback from the consumer's poll, on
    the consume loop's thread; /readyz reads `silent` from the probe thread.
    """

    def __init__(self, metrics: Metrics, after_s: float) -> None:
        self.metrics = metrics
        self.after_s = after_s
        # The partitions the consumer fetches; the pipeline sets it.
        self.fetching: Callable[[], Set[Key]] = frozenset
        # False where the consumer reports no statistics (interval 0).
        self.judged = True
        self._lock = threading.Lock()
        self._silent: dict[int, float] = {}
        # Monotonic times at which each broker leading fetched partitions
        # last answered, and since which it has led them without a break.
        self._heard_at_s: dict[int, float] = {}
        self._since_s: dict[int, float] = {}
        self._generation = 0
        self._told_unreadable = False
        # Each broker's address, kept after librdkafka drops its handle.
        self._addresses: dict[int, str] = {}

    @classmethod
    def of(cls, config: Config, metrics: Metrics) -> "BrokerSilence":
        """As `metrics.silent_after` and the consumer's statistics interval say."""
        silence = cls(metrics, config.metrics.silent_after / 1000)
        every_ms = consumer_setting_ms(
            config.kafka, "statistics.interval.ms", STATISTICS_INTERVAL_MS
        )
        silence.judged = every_ms != 0
        return silence

    @property
    def silent(self) -> dict[int, float]:
        """Broker id to seconds without an answer, for the silent ones."""
        with self._lock:
            return dict(self._silent)

    def listener(self) -> Callable[[str], None]:
        """The `stats_cb` of a new consumer; a replaced consumer's is ignored.

        A replaced consumer closes on a thread of its own (scorer.assignment)
        and may still report on brokers it no longer fetches from.
        """
        with self._lock:
            self._generation += 1
            generation = self._generation

        def on_stats(text: str) -> None:
            if generation != self._generation:
                return
            # Raised here, an error would come out of the consumer's poll.
            try:
                self.note(json.loads(text))
            except (ValueError, TypeError, AttributeError) as exc:
                self._unreadable(exc)

        return on_stats

    def _unreadable(self, exc: Exception) -> None:
        level = logging.DEBUG if self._told_unreadable else logging.WARNING
        self._told_unreadable = True
        log.log(
            level,
            "kafka statistics unreadable; broker silence not judged error=%s: %s",
            type(exc).__name__,
            exc,
        )

    def note(self, stats: Mapping[str, Any], now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        fetching = self.fetching()
        idle = leaders_idle(stats, fetching)
        self._addresses |= addresses(stats)
        if not fetching:
            idle |= self._unanswered(stats)
        quiet = self._quiet(idle, now_s)
        self.metrics.kafka_silence.set(max(quiet.values(), default=0.0))

        silent = {node: s for node, s in quiet.items() if s >= self.after_s}
        with self._lock:
            before, self._silent = self._silent, silent
        _tell(before, silent, quiet)

    def _unanswered(self, stats: Mapping[str, Any]) -> dict[int, float | None]:
        """The brokers found silent that have not answered since, on any
        connection to their address; under NO_LEADER, the silence of all.

        Called while the consumer fetches nothing: its partitions lost with
        its group session, or paused, the silence is not over for that.
        """
        idle = idle_by_address(stats)
        unanswered: dict[int, float | None] = {}
        for node in self._silent:
            if node == NO_LEADER:
                if all(s >= self.after_s for s in idle.values()):
                    unanswered[node] = None
                continue
            heard_s = idle.get(self._addresses.get(node, ""))
            if heard_s is None or heard_s >= self.after_s:
                unanswered[node] = heard_s
        return unanswered

    def _quiet(self, idle: dict[int, float | None], now_s: float) -> dict[int, float]:
        """Seconds without an answer, across the broker's reconnections.

        A connection with no answer yet does not make its broker heard from:
        the silence counts on from the last answer on an earlier connection.
        Nor does a silence count from before the broker last began to lead
        a fetched partition: paused during a wait, the partitions were not
        fetched, and statistics made then can arrive after the resume.
        """
        since_s, heard_at_s, quiet = {}, {}, {}
        for node, idle_s in idle.items():
            since_s[node] = self._since_s.get(node, now_s)
            if idle_s is None:
                idle_s = now_s - self._heard_at_s.get(node, since_s[node])
            quiet[node] = min(idle_s, now_s - since_s[node])
            heard_at_s[node] = now_s - quiet[node]
        self._since_s, self._heard_at_s = since_s, heard_at_s
        return quiet


def _tell(
    before: dict[int, float], silent: dict[int, float], quiet: dict[int, float]
) -> None:
    for node in sorted(silent.keys() - before.keys()):
        log.warning(
            "kafka silent: %s, past metrics.silent_after, on partitions this "
            "instance fetches broker=%d",
            describe(node, silent[node]),
            node,
        )
    for node in sorted(before.keys() - silent.keys()):
        log.info(
            "kafka silence over: %s broker=%d silent_s=%.1f (at least)",
            _ended(node, quiet),
            node,
            before[node],
        )


def _ended(node: int, quiet: dict[int, float]) -> str:
    if node == NO_LEADER:
        return "the fetched partitions have a leader again, or are not fetched"
    if node in quiet:
        return f"broker {node} answers again"
    return f"broker {node} answers again, or leads no fetched partition now"
