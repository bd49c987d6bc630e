"""Which rule sets write under one Redis key prefix: each instance says so.

Two instances with other rules on one `redis.key_prefix` mix their leads'
state: whichever scores an event first writes the lead, and the other takes
the event as a duplicate and publishes the first one's scores under its own
rules version (README, "A candidate beside the baseline"). Nothing in a
lead's keys says which rules wrote it, so the mix cannot be found later.

So every instance writes its `rules_version` and the time into one hash
beside the leads' keys, ``<prefix>:rules``, every `ANNOUNCE_EVERY_S`, and
reads the others'. A version written within `SEEN_WITHIN_S` is in use. A
rolling restart to new rules shows one for as long as the restart takes; a
candidate sharing the prefix by mistake, for as long as it runs. The count
is a metric (`scorer_other_rules_versions`) with an alert, and each version
that appears is a WARNING line.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import Gauge
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from scorer.state import Client

log = logging.getLogger(__name__)

# Lead keys always hold "{", so this one can never be a lead's.
KEY_SUFFIX = "rules"
# Often enough that a new neighbour shows within a few seconds of its start.
ANNOUNCE_EVERY_S = 10.0
# Several missed announcements (a pause, a slow Redis, clock skew between
# hosts) before a version counts as gone.
SEEN_WITHIN_S = 60.0
# Versions unseen for this long are deleted, so the hash stays small.
FORGET_AFTER_S = 86_400.0


class Presence:
    """Announces this instance's rules under a key prefix and notes others."""

    def __init__(
        self,
        client: Callable[[], Client],
        key_prefix: str,
        rules_version: str,
        gauge: Gauge,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._make_client = client
        self._client: Client | None = None
        self.key_prefix = key_prefix
        self.key = f"{key_prefix}:{KEY_SUFFIX}"
        self.rules_version = rules_version
        self.gauge = gauge
        self.clock = clock
        self.others: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Announce until `stop` is set; Redis being away only skips a round."""
        refused = False
        while not stop.is_set():
            try:
                self.announce()
            except ResponseError as exc:
                # An ACL that allows scoring but not this key: say so once.
                if not refused:
                    log.warning(
                        "cannot announce rules under redis.key_prefix=%s, so "
                        "another rule set on it goes unnoticed: %s",
                        self.key_prefix,
                        exc,
                    )
                refused = True
            except (RedisError, RedisClusterException) as exc:
                # The scoring loop reports Redis being away, with more to say.
                log.debug("rules announcement skipped: %s", exc)
            stop.wait(ANNOUNCE_EVERY_S)

    def announce(self) -> None:
        """Write this instance's time, read the others', report the change."""
        now_s = self.clock()
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        pipe.hset(self.key, self.rules_version, str(int(now_s * 1000)))
        pipe.hgetall(self.key)
        _, written = pipe.execute()

        ages_s = _ages_s(written, now_s)
        ages_s.pop(self.rules_version, None)
        forgotten = [v for v, age_s in ages_s.items() if age_s > FORGET_AFTER_S]
        if forgotten:
            client.hdel(self.key, *forgotten)
        in_use = {v: age_s for v, age_s in ages_s.items() if age_s <= SEEN_WITHIN_S}
        self._report(in_use)

    def _redis(self) -> Client:
        # Made at the first announcement: a cluster client connects as it is
        # made, which fails while Redis is away.
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _report(self, in_use: Mapping[str, float]) -> None:
        for version in sorted(in_use.keys() - self.others):
            log.warning(
                "rules %s also write under redis.key_prefix=%s (%.0f s ago): "
                "two rule sets on one prefix mix their leads' state; give one "
                "its own prefix, unless a rolling restart is changing the rules",
                version,
                self.key_prefix,
                max(in_use[version], 0.0),
            )
        for version in sorted(self.others - in_use.keys()):
            log.info(
                "rules %s no longer write under redis.key_prefix=%s",
                version,
                self.key_prefix,
            )
        self.others = set(in_use)
        self.gauge.set(len(in_use))


def _ages_s(
    written: Mapping[bytes | str, bytes | str], now_s: float
) -> dict[str, float]:
    """Seconds since each version's last announcement; unreadable ones old."""
    ages = {}
    for version, stamp in written.items():
        name = version.decode() if isinstance(version, bytes) else version
        try:
            ages[name] = now_s - int(stamp) / 1000
        except ValueError:
            ages[name] = FORGET_AFTER_S + 1  # not ours to read: let it go
    return ages


def start(presence: Presence) -> threading.Event:
    """Run `presence` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=presence.run, args=(stop,), name="presence", daemon=True
    )
    thread.start()
    return stop
