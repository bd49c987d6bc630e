"""Another rule set on this instance's key prefix, group or output is noticed.

Two instances with other rules on one `redis.key_prefix` mix their leads'
state: whichever scores an event first writes the lead, and the other takes
the event as a duplicate and publishes the first one's scores under its own
rules version. In one `kafka.group_id` they split the partitions, and each
commits, for good, records the other never scores. On one output topic,
sales gets both sets of alerts (README, "A candidate beside the baseline").
Nothing in a lead's keys says that this happened, so it is looked for while
it happens, in three places:

- the key prefix: every instance writes its `rules_version` and the time
  into one hash beside the leads' keys, ``<prefix>:rules``, and reads the
  others' (`Marks.of_key_prefix`);
- the output topic: the same, into a hash named after the topic
  (`Marks.of_output`), which instances with other key prefixes share as long as
  they share the Redis database;
- the consumer group: every commit carries `commit_note` as its offsets'
  metadata, which the group's committed offsets show (`ConsumerGroup`).

Every `ANNOUNCE_EVERY_S`, a version other than this instance's seen in
any of them within `SEEN_WITHIN_S` is in use. A rolling restart to new rules
shows one for as long as the restart takes; a candidate sharing a place by
mistake, for as long as it runs. The count per place is a metric
(`scorer_other_rules_versions`) with an alert, and each version that appears
is a WARNING line.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Gauge
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from scorer.state import Client

log = logging.getLogger(__name__)

# Lead keys always hold "{", so this one can never be a lead's.
KEY_SUFFIX = "rules"
# `<prefix>:rules` holds one ":" (a key prefix holds none), an output's
# `scorer-output:<topic>:rules` two: no place's hash is also another's.
OUTPUT_KEY_PREFIX = "scorer-output:"
# Often enough that a new neighbour shows within seconds of its start.
ANNOUNCE_EVERY_S = 10.0
# Several missed announcements (a pause, a slow Redis, clock skew between
# hosts) before a version counts as gone.
SEEN_WITHIN_S = 60.0
# Versions unseen for this long are deleted from the hash, so it stays small.
FORGET_AFTER_S = 86_400.0
# How long a look at the group's committed offsets may take.
GROUP_TIMEOUT_S = 5.0
# The start of a commit's metadata; what follows is "<ms> <rules_version>".
NOTE_MARK = "scorer-rules-at="


def commit_note(rules_version: str, now_s: float) -> str:
    """The metadata of a commit: when, and under which rules."""
    return f"{NOTE_MARK}{int(now_s * 1000)} {rules_version}"


class Place(Protocol):
    """Where rule sets leave their mark, and how long ago each did."""

    where: str
    """The metric's label: ``key_prefix``, ``output`` or ``group``."""
    setting: str
    """The setting shared, as the log names it: ``redis.key_prefix=scorer``."""

    def ages_s(self, now_s: float) -> dict[str, float]:
        """Seconds since each rules version last left its mark here."""
        ...

    def close(self) -> None:
        """Let go of the place's client, if it made one."""
        ...


class Marks:
    """A Redis hash where each rules version writes when it was last in use."""

    def __init__(
        self,
        client: Callable[[], Client],
        key: str,
        where: str,
        setting: str,
        rules_version: str,
    ) -> None:
        self._make_client = client
        self._client: Client | None = None
        self.key = key
        self.where = where
        self.setting = setting
        self.rules_version = rules_version

    @classmethod
    def of_key_prefix(
        cls, client: Callable[[], Client], key_prefix: str, rules_version: str
    ) -> "Marks":
        """The hash `<prefix>:rules`, beside the leads' keys."""
        key, setting = f"{key_prefix}:{KEY_SUFFIX}", f"redis.key_prefix={key_prefix}"
        return cls(client, key, "key_prefix", setting, rules_version)

    @classmethod
    def of_output(
        cls, client: Callable[[], Client], topic: str, rules_version: str
    ) -> "Marks":
        """The hash `scorer-output:<topic>:rules`, whatever the key prefix."""
        key = f"{OUTPUT_KEY_PREFIX}{topic}:{KEY_SUFFIX}"
        setting = f"topics.output.name={topic}"
        return cls(client, key, "output", setting, rules_version)

    def ages_s(self, now_s: float) -> dict[str, float]:
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        pipe.hset(self.key, self.rules_version, str(int(now_s * 1000)))
        pipe.hgetall(self.key)
        _, written = pipe.execute()

        ages, forgotten = {}, []
        for version, stamp in written.items():
            age_s = _age_s(stamp, now_s)
            if age_s > FORGET_AFTER_S:
                forgotten.append(version)  # as written, so HDEL finds it
            else:
                ages[_text(version)] = age_s
        if forgotten:
            client.hdel(self.key, *forgotten)
        return ages

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _redis(self) -> Client:
        # Made at the first look: a cluster client connects as it is made,
        # which fails while Redis is away.
        if self._client is None:
            self._client = self._make_client()
        return self._client


def key_prefix_versions(client: Client, key_prefix: str, now_s: float) -> list[str]:
    """The rules versions marked in `<prefix>:rules` within a day, newest first.

    Read only (HGETALL), for `scorer state`: it writes nothing of its own.
    """
    written = client.hgetall(f"{key_prefix}:{KEY_SUFFIX}")
    ages = {_text(version): _age_s(stamp, now_s) for version, stamp in written.items()}
    recent = [version for version, age_s in ages.items() if age_s <= FORGET_AFTER_S]
    return sorted(recent, key=ages.__getitem__)


def other_rules_warning(
    marked: list[str], key_prefix: str, rules_version: str
) -> str | None:
    """Why leads read under this config's rules may not be the ones it scores.

    `scorer state` decays with the config's half-lives, and a candidate's
    config without the candidate's key prefix reads the baseline's leads:
    the rules that wrote there say which it is.
    """
    if not marked or rules_version in marked:
        return None
    shown = ", ".join(_shown(version) for version in marked[:3])
    more = f" and {len(marked) - 3} more" if len(marked) > 3 else ""
    return (
        f"the leads under redis.key_prefix={key_prefix} were scored by rules "
        f"{shown}{more} (newest first), not this config's {rules_version}: "
        "is it the key prefix of these rules?"
    )


class ConsumerGroup:
    """The group's committed offsets, whose metadata is a `commit_note`.

    Read by a consumer of its own that never joins the group: one with a
    `group.id` may fetch the group's offsets without subscribing. (An
    AdminClient's list_consumer_group_offsets crashed librdkafka 2.16 in its
    OffsetFetch handling on a broker just started, and aborted on broker
    restarts.)
    """

    where = "group"

    def __init__(
        self, consumer: Callable[[], Consumer], group_id: str, topics: list[str]
    ) -> None:
        self._make_consumer = consumer
        self._consumer: Consumer | None = None
        self.group_id = group_id
        self.topics = topics
        self.setting = f"kafka.group_id={group_id}"

    def ages_s(self, now_s: float) -> dict[str, float]:
        if self._consumer is None:
            self._consumer = self._make_consumer()
        try:
            return self._committed_ages_s(self._consumer, now_s)
        finally:
            # The client's log lines wait in a queue that only a poll serves:
            # unpolled, they all came out at the scorer's stop, stamped then.
            self._consumer.poll(0)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _committed_ages_s(self, consumer: Consumer, now_s: float) -> dict[str, float]:
        partitions = self._partitions(consumer)
        if not partitions:
            return {}
        committed = consumer.committed(partitions, timeout=GROUP_TIMEOUT_S)

        ages: dict[str, float] = {}
        for partition in committed:
            note = _read_note(partition.metadata, now_s)
            if note is not None:
                version, age_s = note
                ages[version] = min(age_s, ages.get(version, age_s))
        return ages

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        found = []
        for topic in self.topics:
            listed = consumer.list_topics(topic, timeout=GROUP_TIMEOUT_S).topics
            held = listed.get(topic)
            if held is None or held.error is not None:
                continue  # a missing topic: the scorer's start-up warned of it
            found += [TopicPartition(topic, p) for p in held.partitions]
        return found


class Presence:
    """Looks at each place in turn and reports the other rules versions."""

    def __init__(
        self,
        rules_version: str,
        places: list[Place],
        gauge: Gauge,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules_version = rules_version
        self.places = places
        self.gauge = gauge
        self.clock = clock
        self.others: dict[str, set[str]] = {p.where: set() for p in places}
        self._refused: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Look until `stop` is set; a place out of reach only skips a round."""
        failed = False
        while not stop.is_set():
            try:
                self.look()
            except Exception:  # a look must not end the thread, whatever failed
                if not failed:
                    log.exception("looking for other rule sets failed")
                failed = True
            stop.wait(ANNOUNCE_EVERY_S)
        for place in self.places:
            place.close()

    def look(self) -> None:
        for place in self.places:
            try:
                ages = place.ages_s(self.clock())
            except ResponseError as exc:
                self._refused_once(place, exc)
                continue
            except (
                RedisError,
                RedisClusterException,
                KafkaException,
                TimeoutError,
            ) as exc:
                # The scoring loop reports Redis or Kafka being away.
                log.debug("no look at %s: %s", place.setting, exc)
                continue
            ages.pop(self.rules_version, None)
            in_use = {v: age_s for v, age_s in ages.items() if age_s <= SEEN_WITHIN_S}
            self._report(place, in_use)

    def _refused_once(self, place: Place, exc: Exception) -> None:
        # An ACL that allows scoring but not this key: say so once.
        if place.where not in self._refused:
            log.warning(
                "cannot announce rules under %s, so another rule set on it "
                "goes unnoticed: %s",
                place.setting,
                exc,
            )
        self._refused.add(place.where)

    def _report(self, place: Place, in_use: Mapping[str, float]) -> None:
        seen = self.others[place.where]
        for version in sorted(in_use.keys() - seen):
            log.warning(
                "rules %s also in use on %s (%.0f s ago): two rule sets there "
                "mix their scoring; give one its own, unless a rolling restart "
                "is changing the rules",
                _shown(version),
                place.setting,
                max(in_use[version], 0.0),
            )
        for version in sorted(seen - in_use.keys()):
            log.info("rules %s no longer in use on %s", _shown(version), place.setting)
        self.others[place.where] = set(in_use)
        self.gauge.labels(place.where).set(len(in_use))


def start(presence: Presence) -> threading.Event:
    """Run `presence` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=presence.run, args=(stop,), name="presence", daemon=True
    )
    thread.start()
    return stop


def _read_note(metadata: str | None, now_s: float) -> tuple[str, float] | None:
    """The rules version and age of a `commit_note`; None for other metadata."""
    if not metadata or not metadata.startswith(NOTE_MARK):
        return None
    stamp, _, version = metadata[len(NOTE_MARK) :].partition(" ")
    if not version or not stamp.isdigit():
        return None
    age_s = now_s - int(stamp) / 1000
    return (version, age_s) if age_s >= -SEEN_WITHIN_S else None


def _age_s(stamp: bytes | str, now_s: float) -> float:
    try:
        age_s = now_s - int(stamp) / 1000
    except ValueError:
        return FORGET_AFTER_S + 1  # not written by us: let it go
    # Ahead by more than clock skew explains: it would count for ever.
    return age_s if age_s >= -SEEN_WITHIN_S else FORGET_AFTER_S + 1


def _text(value: bytes | str) -> str:
    # Anyone may write into the hash; a field that is no UTF-8 is still shown.
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _shown(version: str) -> str:
    # Anyone may write into the hash: a name that would break the log line
    # (a newline, an escape) or vanish in it is shown quoted.
    plain = version.isprintable() and version.strip() == version and version
    return version if plain else repr(version)
