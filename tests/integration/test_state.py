"""The Redis Lua script against its Python twin, on a real redis-server."""

import itertools
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorer.errors import StateStoreError
from scorer.events import Forget
from scorer.lead import (
    APPLIED,
    DUPLICATE,
    LATE,
    ON_TIME,
    TOO_LATE,
    ActivityUpdate,
    FitUpdate,
    MemoryStore,
    Params,
    Update,
)
from scorer.rules import ScoringRule
from scorer.sandbox.redis import RedisServer
from scorer.state import APPLY_UPDATES, RedisStore

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
PARAMS = Params(1.0, 0.8, 60.0, 10.0, DAY_MS, 20 * DAY_MS)
EN_US_SOURCE = "/usr/share/i18n/locales/en_US"  # Debian's locales package
# Digests of firmographic records; of unequal lengths, so that one is a
# prefix of another.
DIGESTS = ["0a", "a0", "a", "9f"]
RULES = [
    ScoringRule("pricing", 20.0, 7 * DAY_MS, 40.0, DAY_MS),
    ScoringRule("blog", 1.0, 14 * DAY_MS, 5.0, 3_600_000),
    ScoringRule("careers", -15.0, 14 * DAY_MS, 15.0, DAY_MS),
    ScoringRule("webinar", 12.5, 3 * DAY_MS, None, None),
]
# Their accumulators' names sort one way by bytes (Python) and another under
# a language's collation, which skips '_' and ':' at first (glibc's en_US).
LOCALE_RULES = [
    ScoringRule("page", 20.0, 7 * DAY_MS, 40.0, DAY_MS),
    ScoringRule("page_view", 1.0, 14 * DAY_MS, 5.0, 3_600_000),
    ScoringRule("pageb", -15.0, 14 * DAY_MS, None, None),
    ScoringRule("pag_z", 12.5, 3 * DAY_MS, 30.0, DAY_MS),
]
# Names in byte order, each pair of neighbours ordered otherwise by some
# language's collation.
TRICKY_NAMES = [
    *("b:0", "b:9", "b:Z", "b:_", "b:a", "b:a_", "b:a_c", "b:aa", "b:ab"),
    *("b:ch", "b:ci", "w:a0:z", "w:a:0", "w:a:10", "w:a:9", "w:a:z", "w:a_a"),
]


def random_updates(
    seed: int, count: int, rules: list[ScoringRule] = RULES
) -> list[Update]:
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
            # Few tombstone ids: the same one redelivered meets often.
            place = rng.randrange(3)
            at = T0 + rng.randrange(45 * DAY_MS)
            updates.append(Forget(lead, f"tombstone:crm:0:{place}", at))
        else:
            event_id = f"e{rng.randrange(count)}"  # repeats are redeliveries
            at = T0 + rng.randrange(45 * DAY_MS)
            updates.append(ActivityUpdate(lead, event_id, at, rng.choice(rules)))
    return updates


# The test empties the database itself for every input, so sharing the
# function-scoped client between inputs is intended.
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32),
    per_call=st.sampled_from([1, 3, 64]),
    min_engagement=st.sampled_from([None, 0.0, 12.5]),
)
def test_lua_and_python_agree_to_the_bit(
    redis_client: redis.Redis, seed: int, per_call: int, min_engagement: float | None
) -> None:
    redis_client.flushdb()
    params = replace(PARAMS, min_engagement=min_engagement)

    assert_twins_agree(redis_client, random_updates(seed, 400), per_call, params)


# With PARAMS' engagement weight of 0.8: 64 is an MQL, (5 + 62) * 0.8 = 53.6
# inside the band, (5 + 75) * 0.8 = 64 over the threshold.
@pytest.mark.parametrize(("points", "stays"), [(62.0, False), (75.0, True)])
def test_an_mql_decayed_out_of_the_band_is_judged_alike_in_lua(
    redis_client: redis.Redis, points: float, stays: bool
) -> None:
    big = ScoringRule("big", 80.0, 7 * DAY_MS, None, None)
    comeback = ScoringRule("comeback", points, 7 * DAY_MS, None, None)
    updates: list[Update] = [
        ActivityUpdate("L1", "e1", T0, big),
        ActivityUpdate("L1", "e2", T0 + 28 * DAY_MS, comeback),  # 4 before it
    ]

    assert_twins_agree(redis_client, updates, per_call=64)
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    snapshot = store.snapshot("L1")
    assert snapshot is not None and snapshot.is_mql is stays


# Fit 50 is in the band (60 - 10) for good; 50 + 15 * 0.8 = 62 crosses, with
# engagement 15 over min_engagement 8. A week on, 7.5 + 1 keeps the 4 it
# needs to stay; three weeks on, 1.875 + 1 does not.
@pytest.mark.parametrize(("quiet_days", "stays"), [(7, True), (21, False)])
def test_fit_alone_keeps_no_mql_in_lua_either(
    redis_client: redis.Redis, quiet_days: int, stays: bool
) -> None:
    params = replace(PARAMS, min_engagement=8.0)
    visit_15 = ScoringRule("visit", 15.0, 7 * DAY_MS, None, None)
    small = ScoringRule("small", 1.0, 7 * DAY_MS, None, None)
    updates: list[Update] = [
        FitUpdate("L1", "f", T0, 50.0, "d"),
        ActivityUpdate("L1", "e1", T0, visit_15),
        ActivityUpdate("L1", "e2", T0 + quiet_days * DAY_MS, small),
    ]

    assert_twins_agree(redis_client, updates, per_call=64, params=params)
    store = RedisStore(redis_client, params, key_prefix="p")
    snapshot = store.snapshot("L1")
    assert snapshot is not None and snapshot.is_mql is stays


# Each bound hit exactly (tests/unit/test_lead.py has them in Python): the
# threshold and min_engagement reached by equal values, an MQL on the band's
# floor with half its entry engagement (a week, one half-life, after it came
# in at 40 + 20), an event exactly the allowed lateness behind, and a full
# window whose end is exactly that far behind the newest event, and an id
# applied exactly a dedupe horizon before it.
def test_lua_draws_every_bound_where_python_does(redis_client: redis.Redis) -> None:
    params = Params(1.0, 1.0, 60.0, 10.0, DAY_MS, 20 * DAY_MS, min_engagement=20.0)
    ten = ScoringRule("ten", 10.0, 7 * DAY_MS, None, None)
    nothing = ScoringRule("nothing", 0.0, 7 * DAY_MS, None, None)
    blog = ScoringRule("blog", 1.0, 7 * DAY_MS, 5.0, DAY_MS)
    window_end = (T0 // DAY_MS + 1) * DAY_MS
    updates: list[Update] = [
        *(ActivityUpdate("up", f"u{n}", T0, ten) for n in range(6)),
        FitUpdate("band", "f", T0, 40.0, "d"),
        ActivityUpdate("band", "b1", T0, ten),
        ActivityUpdate("band", "b2", T0, ten),
        ActivityUpdate("band", "b3", T0 + 7 * DAY_MS, nothing),
        ActivityUpdate("late", "l1", T0 + DAY_MS, ten),
        ActivityUpdate("late", "l2", T0, ten),
        ActivityUpdate("late", "l3", T0 - 1, ten),
        *(ActivityUpdate("fold", f"w{n}", window_end - 1, blog) for n in range(5)),
        ActivityUpdate("fold", "closes", window_end + DAY_MS, blog),
        ActivityUpdate("fold", "too_late", window_end - 2, blog),
        *horizon_and_again("kept", 20 * DAY_MS),
        *horizon_and_again("forgotten", 20 * DAY_MS + 1),
    ]

    assert_twins_agree(redis_client, updates, per_call=64, params=params)
    outcomes = MemoryStore(params).apply(updates)
    flags = [(o.score, o.is_mql, o.late) for o in outcomes if o is not None]
    assert flags[4:6] == [(50.0, False, ON_TIME), (60.0, True, ON_TIME)]
    assert flags[8:10] == [(60.0, True, ON_TIME), (50.0, True, ON_TIME)]
    assert [late for _, _, late in flags[10:13]] == [ON_TIME, LATE, TOO_LATE]
    # The full window (5 reads, its cap) was folded: the too-late read
    # starts a window of its own, whose cap is not reached.
    too_late = outcomes[-7]
    assert too_late is not None and too_late.points_applied > 0
    # An id applied exactly a dedupe horizon before the newest time is kept;
    # one a millisecond older is forgotten, and applied again.
    again = [outcomes[-4], outcomes[-1]]
    assert [o.status for o in again if o is not None] == [DUPLICATE, APPLIED]


def horizon_and_again(lead: str, later_ms: int) -> list[Update]:
    """An event, one `later_ms` after it, then the first one delivered again."""
    ten = ScoringRule("ten", 10.0, 7 * DAY_MS, None, None)
    first = ActivityUpdate(lead, "first", T0, ten)
    return [first, ActivityUpdate(lead, "later", T0 + later_ms, ten), first]


def assert_twins_agree(
    client: redis.Redis,
    updates: list[Update],
    per_call: int,
    params: Params = PARAMS,
) -> None:
    memory = MemoryStore(params)
    store = RedisStore(client, params, key_prefix="p", ops_per_call=per_call)

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
        assert_same_ids_remembered(client, store, memory, lead)


def assert_same_ids_remembered(
    client: redis.Redis, store: RedisStore, memory: MemoryStore, lead: str
) -> None:
    """Both prune old update ids alike; Python keeps them in applied order."""
    seen_key, outcomes_key = store.keys(lead)[1:]
    ids = memory.remembered_ids(lead)
    seen = client.zrange(seen_key, 0, -1, withscores=True)
    applied_at = {member.decode(): score for member, score in seen}

    assert sorted(ids) == sorted(applied_at)
    assert set(client.hkeys(outcomes_key)) == {op_id.encode() for op_id in ids}
    in_python_order = [applied_at[op_id] for op_id in ids]
    assert in_python_order == sorted(in_python_order)


@pytest.fixture(scope="module")
def en_us_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A redis-server whose Lua compares strings as glibc's en_US.UTF-8 does.

    redis-server takes LC_COLLATE from its environment; the locale is built
    here, as a machine may have only C locales installed.
    """
    localedef = shutil.which("localedef")
    if localedef is None or not Path(EN_US_SOURCE).exists():
        pytest.skip("needs localedef and glibc's en_US locale source")
    locales = tmp_path_factory.mktemp("locales")
    command = [localedef, "-i", "en_US", "-f", "UTF-8", f"{locales}/en_US.UTF-8"]
    subprocess.run(command, check=True, capture_output=True)

    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOCPATH", str(locales))
        env.setenv("LC_ALL", "en_US.UTF-8")
        server = RedisServer()
        server.start()
    try:
        client = server.client()
        # Proof the locale took: bytes put '_' (95) before 'b' (98).
        assert client.eval("return 'b:ab' < 'b:a_c' and 1 or 0", 0) == 1
        yield client
        client.close()
    finally:
        server.close()


@pytest.mark.integration
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_lua_and_python_agree_under_a_language_locale(
    en_us_redis: redis.Redis, seed: int
) -> None:
    en_us_redis.flushdb()

    assert_twins_agree(en_us_redis, random_updates(seed, 400, LOCALE_RULES), 64)


def lua_functions(*names: str) -> str:
    """Local functions of the scoring script, to call on their own."""
    texts = ["local byte = string.byte"]
    for name in names:
        pattern = rf"^local function {name}\(.*?^end$"
        found = re.search(pattern, APPLY_UPDATES, re.DOTALL | re.MULTILINE)
        assert found is not None, name
        texts.append(found.group(0))
    return "\n".join(texts) + "\n"


def test_the_lua_comparator_orders_names_as_python_does(
    redis_client: redis.Redis,
) -> None:
    script = lua_functions("bytes_less") + "table.sort(ARGV, bytes_less)\n"
    shuffled = random.Random(1).sample(TRICKY_NAMES, k=len(TRICKY_NAMES))

    got = redis_client.eval(script + "return ARGV", 0, *shuffled)

    assert [name.decode() for name in got] == sorted(TRICKY_NAMES)


def test_the_probe_tells_a_language_collation_from_bytes(
    redis_client: redis.Redis, en_us_redis: redis.Redis
) -> None:
    script = lua_functions("collation_is_bytewise")
    script += "return collation_is_bytewise() and 1 or 0"

    assert redis_client.eval(script, 0) == 1
    assert en_us_redis.eval(script, 0) == 0


def test_a_flushed_script_is_reloaded(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="p")
    store.apply([ActivityUpdate("L1", "a", T0, RULES[0])])
    redis_client.script_flush()

    outcome = store.apply([ActivityUpdate("L1", "b", T0 + 1, RULES[0])])[0]

    assert outcome is not None
    assert outcome.engagement == pytest.approx(40.0)


def test_a_lead_with_thousands_of_open_windows_is_still_scored(
    redis_client: redis.Redis,
) -> None:
    """Past about 4,000 windows, saving them overflowed Lua's unpack, and
    every call holding the lead failed for good. check-config now refuses
    rules that open that many; the script copes all the same.

    The windows are written directly: opening 4,500 through the script would
    take minutes, each update summing every window.
    """
    minute, half_life, windows = 60_000, 14 * DAY_MS, 4500
    rule = ScoringRule("read", 1.0, half_life, 5.0, minute)
    params = replace(PARAMS, lateness_ms=7 * DAY_MS)
    store = RedisStore(redis_client, params, key_prefix="p")
    newest = T0 // minute * minute + windows * minute - 1
    state = {"fit": "0", "m": "0", "r": str(newest)}
    engagement = 0.0
    for back in range(windows):
        at = newest - back * minute  # a read at the end of each window
        decayed = 0.5 ** ((newest - at) / half_life)
        engagement += decayed
        state[f"w:read:{at // minute}"] = f"1 {decayed!r} {half_life} 5 {at + 1}"
    state["s"] = repr(engagement)
    redis_client.hset(store.keys("L1")[0], mapping=state)

    outcome = store.apply([ActivityUpdate("L1", "last", newest + 1, rule)])[0]

    assert outcome is not None
    assert outcome.engagement == pytest.approx(
        engagement * 0.5 ** (1 / half_life) + 1, rel=1e-12
    )
    saved = redis_client.hgetall(store.keys("L1")[0])
    assert len([name for name in saved if name.startswith(b"w:")]) == windows + 1
    assert saved[b"r"] == str(newest + 1).encode()


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


@pytest.mark.parametrize("lead", ["}acme", "~acme", "~}acme", "a}b", "plain"])
def test_a_lead_id_maps_to_one_hash_tag_and_back(
    redis_client: redis.Redis, lead: str
) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="tag")
    store.apply([ActivityUpdate(lead, "e1", T0, RULES[0])])

    tag = store.keys(lead)[0][len("tag:{") : -len("}:s")]

    assert tag and not tag.startswith("}")
    assert list(store.lead_ids()) == [lead]


def test_a_call_refused_while_a_later_one_runs_keeps_each_leads_order() -> None:
    """Calls of one round trip fail one by one (OOM, ACL, MISCONF refusals).

    Here an ACL refuses the keys of lead "no" until it is granted them: the
    call holding that lead fails while the next runs. Had lead "ok" been
    split over both calls, the retry would apply its first updates after its
    last ones, and their outcomes would not be those of the consumed order.
    """
    updates: list[Update] = [ActivityUpdate("no", "n0", T0, RULES[3])]
    updates += [
        ActivityUpdate("ok", f"e{i}", T0 + i * 3_600_000, RULES[3]) for i in range(6)
    ]
    expected = MemoryStore(PARAMS).apply(updates)

    with RedisServer() as server:
        admin = server.client()
        admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+pw"],
            keys=["p:{ok}*"],
            commands=["+@all"],
        )
        limited = redis.Redis(
            host="127.0.0.1", port=server.port, username="limited", password="pw"
        )
        store = RedisStore(limited, PARAMS, key_prefix="p", ops_per_call=4)
        with pytest.raises(StateStoreError, match="no permissions"):
            store.apply(updates)
        assert admin.exists(store.keys("ok")[0]) == 1  # the later call did run

        admin.acl_setuser("limited", keys=["*"])
        got = store.apply(updates)

    # The retry finds "ok"'s updates applied and returns their first outcomes.
    assert [o.status for o in got if o is not None] == [APPLIED] + [DUPLICATE] * 6
    as_first = [replace(o, status=APPLIED) if o is not None else None for o in got]
    assert as_first == expected


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_a_redis_that_may_evict_keys_is_refused(policy: str) -> None:
    args = ["--maxmemory", "64mb", "--maxmemory-policy", policy]
    with RedisServer(extra_args=args) as server:
        store = RedisStore(server.client(), PARAMS, key_prefix="p")
        with pytest.raises(StateStoreError) as refused:
            store.load_script()

    assert f"maxmemory 67108864, maxmemory-policy {policy}" in str(refused.value)
    assert "set maxmemory-policy noeviction, or no maxmemory" in str(refused.value)


@pytest.mark.parametrize(
    "args",
    [
        ["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"],
        ["--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"],
    ],
)
def test_a_redis_that_keeps_every_key_is_taken(args: list[str]) -> None:
    with RedisServer(extra_args=args) as server:
        store = RedisStore(server.client(), PARAMS, key_prefix="p")
        store.load_script()
        outcome = store.apply([ActivityUpdate("L1", "e1", T0, RULES[3])])[0]

    assert outcome is not None and outcome.status == APPLIED


def test_eviction_turned_on_meanwhile_holds_the_store_at_its_next_script_load() -> None:
    with RedisServer() as server:
        client = server.client()
        store = RedisStore(client, PARAMS, key_prefix="p")
        store.apply([ActivityUpdate("L1", "e1", T0, RULES[3])])
        client.config_set("maxmemory", "1gb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.script_flush()  # as a restart does

        for _attempt in range(2):
            with pytest.raises(StateStoreError, match="may evict keys"):
                store.apply([ActivityUpdate("L1", "e2", T0 + 1, RULES[3])])
        client.config_set("maxmemory-policy", "noeviction")
        outcome = store.apply([ActivityUpdate("L1", "e2", T0 + 1, RULES[3])])[0]

    assert outcome is not None and outcome.status == APPLIED


def test_a_lead_lives_on_for_expire_after_each_change(
    redis_client: redis.Redis,
) -> None:
    expire_ms = 40 * DAY_MS
    store = RedisStore(redis_client, PARAMS, key_prefix="exp", expire_ms=expire_ms)
    visit = ActivityUpdate("L1", "e1", T0, RULES[0])
    updates: list[Update] = [visit, FitUpdate("L2", "f:a", T0, 30.0, "a")]

    outcomes = store.apply(updates)

    assert outcomes == MemoryStore(PARAMS).apply(updates)
    for key in store.keys("L1"):
        assert expire_ms - 60_000 < redis_client.pttl(key) <= expire_ms
    state, seen, outs = store.keys("L2")
    assert expire_ms - 60_000 < redis_client.pttl(state) <= expire_ms
    assert (redis_client.exists(seen), redis_client.exists(outs)) == (0, 0)


def test_the_expiry_is_set_again_once_a_tenth_of_it_has_passed(
    redis_client: redis.Redis,
) -> None:
    expire_ms = 40 * DAY_MS
    store = RedisStore(redis_client, PARAMS, key_prefix="exp1", expire_ms=expire_ms)
    store.apply([ActivityUpdate("L1", "e1", T0, RULES[0])])
    state = store.keys("L1")[0]
    for key in store.keys("L1"):
        redis_client.pexpire(key, 60_000)

    store.apply([ActivityUpdate("L1", "e2", T0 + 1, RULES[0])])  # within 4 days
    within = [redis_client.pttl(key) for key in store.keys("L1")]
    set_at = int(redis_client.hget(state, "e") or 0)
    redis_client.hset(state, "e", set_at - 4 * DAY_MS)
    store.apply([ActivityUpdate("L1", "e3", T0 + 2, RULES[0])])
    after = [redis_client.pttl(key) for key in store.keys("L1")]

    assert all(0 < ttl <= 60_000 for ttl in within)
    assert all(expire_ms - 60_000 < ttl <= expire_ms for ttl in after)
    assert int(redis_client.hget(state, "e") or 0) >= set_at


def test_a_first_event_after_a_fit_gives_its_new_keys_the_expiry_at_once(
    redis_client: redis.Redis,
) -> None:
    expire_ms = 40 * DAY_MS
    store = RedisStore(redis_client, PARAMS, key_prefix="exp4", expire_ms=expire_ms)
    store.apply([FitUpdate("L1", "f:a", T0, 30.0, "a")])

    store.apply([ActivityUpdate("L1", "e1", T0 + 1, RULES[0])])

    for key in store.keys("L1"):
        assert expire_ms - 60_000 < redis_client.pttl(key) <= expire_ms


def test_leads_stay_once_expiry_is_turned_off(redis_client: redis.Redis) -> None:
    expiring = RedisStore(redis_client, PARAMS, key_prefix="exp5", expire_ms=DAY_MS)
    expiring.apply([ActivityUpdate("L1", "e1", T0, RULES[0])])
    lasting = RedisStore(redis_client, PARAMS, key_prefix="exp5")

    lasting.apply([ActivityUpdate("L1", "e2", T0 + 1, RULES[0])])

    assert [redis_client.pttl(key) for key in lasting.keys("L1")] == [-1, -1, -1]
    assert not redis_client.hexists(lasting.keys("L1")[0], "e")


def test_a_repeat_keeps_no_lead_alive_and_an_erasure_keeps_its_own_expiry(
    redis_client: redis.Redis,
) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="exp2", expire_ms=40 * DAY_MS)
    store.apply([ActivityUpdate("L1", "e1", T0, RULES[0])])
    for key in store.keys("L1"):
        redis_client.pexpire(key, 60_000)

    store.apply([ActivityUpdate("L1", "e1", T0, RULES[0])])  # the same event
    repeat_ttls = [redis_client.pttl(key) for key in store.keys("L1")]
    store.apply([Forget("L1", "tombstone:crm:0:1", T0 + 1)])

    assert all(0 < ttl <= 60_000 for ttl in repeat_ttls)
    # The erasure's memory lasts a day (scorer.state's ERASURE_MEMORY_S).
    assert 0 < redis_client.pttl(store.keys("L1")[0]) <= DAY_MS


def test_an_expired_lead_is_scored_afresh(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, PARAMS, key_prefix="exp3", expire_ms=100)
    lasting = RedisStore(redis_client, PARAMS, key_prefix="exp3-kept")
    first = [FitUpdate("L1", "f:a", T0, 30.0, "a")]
    store.apply(first)
    lasting.apply(first)

    deadline = time.monotonic() + 10.0
    while redis_client.exists(*store.keys("L1")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (outcome,) = store.apply([ActivityUpdate("L1", "e1", T0 + 1, RULES[0])])
    (kept,) = lasting.apply([ActivityUpdate("L1", "e1", T0 + 1, RULES[0])])

    assert outcome is not None and kept is not None
    assert (outcome.fit, kept.fit) == (0.0, 30.0)
    assert redis_client.pttl(lasting.keys("L1")[0]) == -1  # no expiry: for ever
