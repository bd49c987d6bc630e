"""Redis beside Python: the store's round trips on a thread of their own.

The live pipeline plans a batch in parts (decode, validate, match rules) and
hands each part's updates to the lane as soon as the part is planned. While
Redis runs the scoring script for one part, the pipeline's thread decodes
the next part and encodes the outputs of the parts before: the two work at
once instead of taking turns (bench/pipeline.py measures the gain).

One worker thread applies the parts in the order they were handed in, so a
lead's updates reach Redis in the order they were consumed, as they would
without the lane. Once a part fails, the parts behind it are not sent until
the pipeline `settle`s the lane: it then scores again, in order, the failed
part and everything behind it (a part that failed half way inside Redis is
made harmless to repeat by the update ids the store remembers).
"""

import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from scorer.errors import StateStoreError
from scorer.lead import Outcome, Update
from scorer.scoring import LeadStore

# How long a thread may keep the GIL while another waits for it. Python's
# default, 5 ms, lets the worker sit on a Redis reply for up to that long
# each time the pipeline's thread is busy decoding, which is most of the time;
# the worker needs the GIL two or three times per part.
SWITCH_INTERVAL_S = 0.0005


class NotSent(StateStoreError):
    """A part was not sent to Redis because a part before it failed."""


class StoreLane:
    """Applies batches of updates to a store, one after another, on one thread."""

    def __init__(self, store: LeadStore) -> None:
        self.store = store
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis")
        # Set and read on the worker only, and reset (by `settle`) only while
        # the worker is idle, so it needs no lock.
        self._failed = False
        self._last: Future[list[Outcome | None]] | None = None
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))

    def submit(self, updates: Sequence[Update]) -> Future[list[Outcome | None]]:
        """Queue `updates` behind every part submitted before them."""
        self._last = self._worker.submit(self._apply, updates)
        return self._last

    def settle(self) -> None:
        """Wait until every part submitted has ended, then forget a failure."""
        if self._last is not None:
            wait([self._last])
        self._failed = False

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        if self._failed:
            raise NotSent("a part before this one failed")

        try:
            return self.store.apply(updates)
        except BaseException:
            self._failed = True
            raise
