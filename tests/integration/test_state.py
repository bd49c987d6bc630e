"""The Redis Lua script against its Python twin, on a real redis-server."""

import itertools
import random
from dataclasses import replace

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorer.events import Forget
from scorer.lead import (
    APPLIED,
    DUPLICATE,
    ActivityUpdate,
    FitUpdate,
    MemoryStore,
    Params,
    Update,
)
from scorer.rules import ScoringRule
from scorer.state import RedisStore

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
PARAMS = Params(1.0, 0.8, 60.0, 10.0, DAY_MS, 20 * DAY_MS)
# Digests of firmographic records; of unequal lengths, so that one is a
# prefix of another.
DIGESTS = ["0a", "a0", "a", "9f"]
RULES = [
    ScoringRule("pricing", 20.0, 7 * DAY_MS, 40.0, DAY_MS),
    ScoringRule("blog", 1.0, 14 * DAY_MS, 5.0, 3_600_000),
    ScoringRule("careers", -15.0, 14 * DAY_MS, 15.0, DAY_MS),
    ScoringRule("webinar", 12.5, 3 * DAY_MS, None, None),
]


def random_updates(seed: int, count: int) -> list[Update]:
    rng = random.Random(seed)
    updates: list[Update] = []
    for _ in range(count):
        lead = f"L{rng.randrange(12)}"
        roll = rng.random()
        if roll < 0.06:
            # Few times and digests: records stamped alike meet often.
            at = T0 + rng.randrange(20) * DAY_MS
            digest = rng.choice(DIGESTS)
            fit = float(rng.randrange(60))
            updates.append(FitUpdate(lead, f"f:{at}:{digest}", at, fit, digest))
        elif roll < 0.07:
            updates.append(Forget(lead))
        else:
            event_id = f"e{rng.randrange(count)}"  # repeats are redeliveries
            at = T0 + rng.randrange(45 * DAY_MS)
            updates.append(ActivityUpdate(lead, event_id, at, rng.choice(RULES)))
    return updates


# The test empties the database itself for every input, so sharing the
# function-scoped client between inputs is intended.
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32), per_call=st.sampled_from([1, 3, 64]))
def test_lua_and_python_agree_to_the_bit(
    redis_client: redis.Redis, seed: int, per_call: int
) -> None:
    redis_client.flushdb()
    updates = random_updates(seed, 400)
    memory = MemoryStore(PARAMS)
    store = RedisStore(redis_client, PARAMS, key_prefix="p", ops_per_call=per_call)

    expected = memory.apply(updates)
    got = []
    for start in range(0, len(updates), 97):
        got += store.apply(updates[start : start + 97])

    assert got == expected
    leads = sorted(memory.lead_ids())
    assert sorted(store.lead_ids()) == leads
    for lead in leads:
        as_of = T0 + 50 * DAY_MS
        assert store.snapshot(lead, as_of) == memory.snapshot(lead, as_of)


def test_a_flushed_script_is_reloaded(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    store.apply([ActivityUpdate("L1", "a", T0, RULES[0])])
    redis_client.script_flush()

    outcome = store.apply([ActivityUpdate("L1", "b", T0 + 1, RULES[0])])[0]

    assert outcome is not None
    assert outcome.engagement == pytest.approx(40.0)


def test_old_update_ids_are_pruned_after_the_horizon(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    store.apply([ActivityUpdate("L1", f"e{i}", T0 + i, RULES[3]) for i in range(5)])
    seen_key, outcomes_key = store.keys("L1")[1:]
    assert redis_client.zcard(seen_key) == 5

    later = T0 + 21 * DAY_MS
    store.apply([ActivityUpdate("L1", "late", later, RULES[3])])

    assert redis_client.zrange(seen_key, 0, -1) == [b"late"]
    assert redis_client.hkeys(outcomes_key) == [b"late"]


def test_an_update_older_than_the_horizon_is_remembered(
    redis_client: redis.Redis,
) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    newest = T0 + 40 * DAY_MS
    old = ActivityUpdate("L1", "old", newest - 37 * DAY_MS, RULES[3])
    updates: list[Update] = [ActivityUpdate("L1", "new", newest, RULES[3])]
    updates += [old, old, old]

    outcomes = store.apply(updates)

    assert outcomes == MemoryStore(PARAMS).apply(updates)
    assert [o.status for o in outcomes if o is not None] == [
        APPLIED,
        APPLIED,
        DUPLICATE,
        DUPLICATE,
    ]
    # Kept by the lead's newest time when it was applied, not its own time.
    assert redis_client.zscore(store.keys("L1")[1], "old") == newest


def test_firmographic_records_in_any_order_give_the_same_fit(
    redis_client: redis.Redis,
) -> None:
    records = [
        FitUpdate("L", "f:a0", T0, 30.0, "a0"),
        FitUpdate("L", "f:0a", T0, 10.0, "0a"),
        FitUpdate("L", "f:a", T0, 20.0, "a"),
        FitUpdate("L", "f:old", T0 - DAY_MS, 40.0, "ff"),
        FitUpdate("L", "f:a0", T0, 30.0, "a0"),  # a redelivery
    ]
    # Each order on a lead of its own, all in one batch.
    updates: list[Update] = []
    for number, order in enumerate(itertools.permutations(records)):
        lead = f"L{number}"
        updates.append(ActivityUpdate(lead, "e", T0, RULES[3]))
        updates += [replace(record, lead_id=lead) for record in order]
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    memory = MemoryStore(PARAMS)

    assert store.apply(updates) == memory.apply(updates)
    finals = set()
    for lead in memory.lead_ids():
        snapshot = store.snapshot(lead)
        assert snapshot is not None and snapshot == memory.snapshot(lead)
        finals.add(replace(snapshot, lead_id=""))
    assert len(finals) == 1
    assert finals.pop().fit == 30.0


def test_keys_carry_the_lead_as_hash_tag(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="scorer")

    assert store.keys("acme:42") == (
        "scorer:{acme:42}:s",
        "scorer:{acme:42}:seen",
        "scorer:{acme:42}:out",
    )
