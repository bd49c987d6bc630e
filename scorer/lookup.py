"""Leads' scores as Redis holds them now: what `scorer state` prints.

The live scorer keeps each lead's state in Redis; this reads it without
writing (HGETALL, and SCAN for every lead), so it is safe against the
production store while the scorer runs. A lead is shown as `replay
--state-out` shows it (fit, engagement, score, MQL flag), decayed to a
given time. The command decays to now: the flag Redis holds is the one of
the lead's newest event, and a lead who went quiet is told to be no MQL
only at its next event, so after a backfill or a quiet month "who is an
MQL today" needs the decay to today.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import redis
from redis.exceptions import RedisClusterException

from scorer.errors import StateStoreError
from scorer.lead import Snapshot
from scorer.replay import state_line
from scorer.state import RedisStore

NO_STATE = "no state (never scored, erased, or under another redis.key_prefix)"


def standings(
    store: RedisStore, lead_ids: Iterable[str] | None, as_of_ms: int | None
) -> Iterator[tuple[str, Snapshot | None]]:
    """Each lead with its scores, or None when Redis holds nothing of it.

    Without `lead_ids`, every lead Redis holds, in no set order.
    """
    try:
        for lead_id in store.lead_ids() if lead_ids is None else lead_ids:
            yield lead_id, store.snapshot(lead_id, as_of_ms)
    except (redis.RedisError, RedisClusterException) as exc:
        # The scan of --all meets Redis outside the store's own calls.
        raise StateStoreError(f"cannot list the leads: {exc}") from exc


@dataclass(slots=True)
class Written:
    held: int = 0
    missing: int = 0


def write(
    found: Iterable[tuple[str, Snapshot | None]],
    out: IO[str],
    errors: IO[str],
    mql_only: bool = False,
) -> Written:
    """One line per lead held, as replay's --state-out; the others named on
    `errors`."""
    written = Written()
    for lead_id, snapshot in found:
        if snapshot is None:
            written.missing += 1
            print(f"{lead_id}: {NO_STATE}", file=errors)
            continue
        written.held += 1
        if not mql_only or snapshot.is_mql:
            out.write(state_line(snapshot))
    return written
