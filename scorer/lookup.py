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

import json
from collections.abc import Iterable, Iterator
from typing import IO

import redis
from redis.exceptions import RedisClusterException

from scorer.errors import StateStoreError
from scorer.lead import Snapshot
from scorer.replay import snapshot_json
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


def write(
    found: Iterable[tuple[str, Snapshot | None]],
    out: IO[str],
    errors: IO[str],
    mql_only: bool = False,
) -> int:
    """One JSON line per lead held; the others named on `errors`. How many
    were missing."""
    missing = 0
    for lead_id, snapshot in found:
        if snapshot is None:
            missing += 1
            print(f"{lead_id}: {NO_STATE}", file=errors)
            continue
        if mql_only and not snapshot.is_mql:
            continue
        out.write(json.dumps(snapshot_json(snapshot), ensure_ascii=False) + "\n")
    return missing
