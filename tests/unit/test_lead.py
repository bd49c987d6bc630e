"""The scoring state machine: decay, caps, dedupe, ordering, hysteresis."""

import itertools
import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.events import Forget
from scorer.lead import (
    APPLIED,
    DUPLICATE,
    LATE,
    ON_TIME,
    TOO_LATE,
    ActivityUpdate,
    FitUpdate,
    LeadState,
    MemoryStore,
    Outcome,
    Params,
    Window,
)
from scorer.rules import ScoringRule

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = 1_750_000_000_000  # 2025-06-15, an arbitrary moment

PARAMS = Params(
    fit_weight=1.0,
    engagement_weight=1.0,
    threshold=60.0,
    hysteresis=10.0,
    lateness_ms=DAY_MS,
    dedupe_horizon_ms=30 * DAY_MS,
)
PRICING = ScoringRule("pricing", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
BLOG = ScoringRule("blog", 1.0, 7 * DAY_MS, 5.0, DAY_MS)
PLAIN = ScoringRule("plain", 10.0, 7 * DAY_MS, None, None)
CAREERS = ScoringRule("careers", -15.0, 14 * DAY_MS, 15.0, DAY_MS)


def visit(rule: ScoringRule, at_ms: int, event_id: str, lead: str = "L1"):
    return ActivityUpdate(lead, event_id, at_ms, rule)


def engagement(store: MemoryStore, lead: str = "L1", as_of: int | None = None):
    snapshot = store.snapshot(lead, as_of)
    assert snapshot is not None
    return snapshot.engagement


def test_points_halve_after_one_half_life() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PLAIN, T0, "e1")])

    assert engagement(store) == pytest.approx(10.0)
    assert engagement(store, as_of=T0 + 7 * DAY_MS) == pytest.approx(5.0)
    assert engagement(store, as_of=T0 + 14 * DAY_MS) == pytest.approx(2.5)


def test_an_old_visit_counts_less_than_a_new_one() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PLAIN, T0, "old"), visit(PLAIN, T0 + 7 * DAY_MS, "new")])

    # As of the newest event: the old one is worth half, the new one full.
    assert engagement(store) == pytest.approx(15.0)


def test_decay_lost_is_reported_when_time_moves_on() -> None:
    store = MemoryStore(PARAMS)
    first, second = store.apply(
        [visit(PLAIN, T0, "e1"), visit(PLAIN, T0 + 7 * DAY_MS, "e2")]
    )

    assert first is not None and second is not None
    assert first.decay == 0.0
    assert second.decay == pytest.approx(5.0)
    assert second.previous_score == pytest.approx(10.0)
    assert second.score == pytest.approx(15.0)


def test_thirty_reloads_in_an_hour_score_no_more_than_the_cap() -> None:
    store = MemoryStore(PARAMS)
    reloads = [visit(BLOG, T0 + i * 120_000, f"r{i}") for i in range(30)]
    outcomes = store.apply(reloads)

    assert engagement(store) <= BLOG.cap_points
    assert engagement(store) == pytest.approx(5.0, rel=1e-2)
    assert [o.capped for o in outcomes if o is not None].count(True) == 25


def test_cap_restarts_in_the_next_window() -> None:
    store = MemoryStore(PARAMS)
    day1 = [visit(BLOG, T0 + i, f"a{i}") for i in range(10)]
    day2 = [visit(BLOG, T0 + DAY_MS + i, f"b{i}") for i in range(10)]
    store.apply(day1 + day2)

    # Day one's ten reads count as its cap of 5, a day old; day two's as 5.
    assert engagement(store) == pytest.approx(5.0 * 2 ** (-1 / 7) + 5.0)


def test_the_same_event_twice_changes_nothing_the_second_time() -> None:
    store = MemoryStore(PARAMS)
    first = store.apply([visit(PRICING, T0, "e1")])[0]
    before = store.snapshot("L1")
    again = store.apply([visit(PRICING, T0, "e1")])[0]

    assert first is not None and again is not None
    assert again.status == DUPLICATE
    assert first.status == APPLIED
    assert again.score == first.score
    assert store.snapshot("L1") == before


def test_a_redelivery_after_later_events_is_still_recognised() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PRICING, T0, "e1"), visit(PLAIN, T0 + HOUR_MS, "e2")])
    before = store.snapshot("L1")
    again = store.apply([visit(PRICING, T0, "e1")])[0]

    assert again is not None and again.status == DUPLICATE
    assert store.snapshot("L1") == before


def test_an_event_older_than_the_horizon_counts_once() -> None:
    store = MemoryStore(PARAMS)
    newest = T0 + 40 * DAY_MS
    store.apply([visit(PLAIN, newest, "recent")])
    old = visit(PLAIN, newest - 37 * DAY_MS, "old")  # beyond the 30-day horizon

    first, second, third = store.apply([old, old, old])
    after_first = store.snapshot("L1")

    assert first is not None and first.status == APPLIED
    assert second == third == replace(first, status=DUPLICATE)
    assert store.snapshot("L1") == after_first


def test_an_update_id_is_forgotten_a_horizon_after_it_was_applied() -> None:
    # Remembered by the lead's newest time when applied, not by its own time.
    store = MemoryStore(PARAMS)
    newest = T0 + 40 * DAY_MS
    old = visit(PLAIN, T0, "old")
    store.apply([visit(PLAIN, newest, "recent"), old])
    horizon_end = newest + PARAMS.dedupe_horizon_ms

    store.apply([visit(PLAIN, horizon_end, "on_the_edge")])
    on_the_edge = store.apply([old])[0]
    store.apply([visit(PLAIN, horizon_end + 1, "past_it")])
    past_it = store.apply([old])[0]

    assert on_the_edge is not None and on_the_edge.status == DUPLICATE
    assert past_it is not None and past_it.status == APPLIED


def test_a_lead_keeps_only_the_ids_of_its_dedupe_horizon() -> None:
    # One blog read an hour for 400 days: the ids kept are those applied
    # within a horizon of the newest, as the Redis script prunes them.
    store = MemoryStore(PARAMS)
    times = [T0 + hour * HOUR_MS for hour in range(400 * 24)]
    store.apply([visit(BLOG, at, f"e{hour}") for hour, at in enumerate(times)])

    oldest_kept = times[-1] - PARAMS.dedupe_horizon_ms
    expected = [f"e{hour}" for hour, at in enumerate(times) if at >= oldest_kept]
    assert store.remembered_ids("L1") == expected
    assert len(expected) < len(times) / 10


def test_late_and_reapplied_ids_are_pruned_by_when_they_were_applied() -> None:
    store = MemoryStore(PARAMS)
    horizon = PARAMS.dedupe_horizon_ms
    first, second = T0, T0 + 10 * DAY_MS
    store.apply([visit(PLAIN, first, "a"), visit(PLAIN, second, "b")])
    store.apply([visit(PLAIN, first + horizon + 1, "c")])
    assert store.remembered_ids("L1") == ["b", "c"]

    # "a" has expired: it counts again, late, and is kept from now on.
    (again,) = store.apply([visit(PLAIN, first, "a")])
    store.apply([visit(PLAIN, second + horizon + 1, "d")])

    assert again is not None and again.status == APPLIED
    assert store.remembered_ids("L1") == ["c", "a", "d"]


def test_negative_points_lower_the_score() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PRICING, T0, "p"), visit(CAREERS, T0 + 1, "c")])

    assert engagement(store) == pytest.approx(5.0, abs=1e-3)


def test_late_events_are_flagged_by_how_late() -> None:
    store = MemoryStore(PARAMS)
    outcomes = store.apply(
        [
            visit(PLAIN, T0 + 10 * DAY_MS, "newest"),
            visit(PLAIN, T0 + 10 * DAY_MS - HOUR_MS, "an_hour_behind"),
            visit(PLAIN, T0, "ten_days_behind"),
        ]
    )

    assert [o.late for o in outcomes if o is not None] == [ON_TIME, LATE, TOO_LATE]
    # Too-late events still count, decayed to their age.
    expected = 10.0 + 10.0 * 2 ** (-1 / (7 * 24)) + 10.0 * 2 ** (-10 / 7)
    assert engagement(store) == pytest.approx(expected)


def test_mql_crossing_has_hysteresis() -> None:
    params = Params(1.0, 1.0, 60.0, 10.0, DAY_MS, 30 * DAY_MS)
    store = MemoryStore(params)
    rule = ScoringRule("big", 31.0, 7 * DAY_MS, None, None)
    down = ScoringRule("down", -5.0, 7 * DAY_MS, None, None)
    outcomes = store.apply(
        [
            visit(rule, T0, "a"),  # 31
            visit(rule, T0 + 1, "b"),  # 62: crosses up
            visit(down, T0 + 2, "c"),  # 57: inside the band, stays MQL
            visit(down, T0 + 3, "d"),  # 52: still inside (>= 50)
            visit(down, T0 + 4, "e"),  # 47: drops out
            visit(rule, T0 + 5, "f"),  # 78: crosses up again
        ]
    )

    flags = [(o.was_mql, o.is_mql) for o in outcomes if o is not None]
    assert flags == [
        (False, False),
        (False, True),
        (True, True),
        (True, True),
        (True, False),
        (False, True),
    ]


def test_no_flapping_when_the_score_wobbles_around_the_threshold() -> None:
    store = MemoryStore(PARAMS)
    up = ScoringRule("up", 3.0, 365 * DAY_MS, None, None)
    down = ScoringRule("down", -3.0, 365 * DAY_MS, None, None)
    base = ScoringRule("base", 59.0, 365 * DAY_MS, None, None)
    updates = [visit(base, T0, "base")]
    for i in range(20):
        rule = up if i % 2 == 0 else down
        updates.append(visit(rule, T0 + 1 + i, f"w{i}"))
    outcomes = [o for o in store.apply(updates) if o is not None]

    crossings = [o for o in outcomes if o.was_mql != o.is_mql]
    assert len(crossings) == 1


def test_fit_joins_engagement_in_the_total() -> None:
    params = Params(0.5, 2.0, 60.0, 10.0, DAY_MS, 30 * DAY_MS)
    store = MemoryStore(params)
    store.apply([FitUpdate("L1", "f1", T0, 40.0, "d1"), visit(PLAIN, T0, "e1")])
    snapshot = store.snapshot("L1")

    assert snapshot is not None
    assert snapshot.fit == 40.0
    assert snapshot.score == pytest.approx(0.5 * 40 + 2 * 10)


def test_an_older_firmographic_record_does_not_override_a_newer_one() -> None:
    store = MemoryStore(PARAMS)
    outcomes = store.apply(
        [fit_record(T0 + DAY_MS, 30.0, "d1"), fit_record(T0, 5.0, "d2")]
    )
    snapshot = store.snapshot("L1")

    assert outcomes[1] is None
    assert snapshot is not None and snapshot.fit == 30.0


def fit_record(at_ms: int, fit: float, digest: str) -> FitUpdate:
    return FitUpdate("L1", f"firmographics:{at_ms}:{digest}", at_ms, fit, digest)


def test_of_two_records_stamped_alike_the_larger_digest_wins() -> None:
    small, large = fit_record(T0, 10.0, "0a"), fit_record(T0, 30.0, "a0")
    first, second = MemoryStore(PARAMS), MemoryStore(PARAMS)

    in_order = first.apply([small, large])
    reversed_order = second.apply([large, small])

    assert [o is not None and o.status for o in in_order] == [APPLIED, APPLIED]
    assert reversed_order[1] is None  # stale, as an older record is
    assert first.snapshot("L1") == second.snapshot("L1")
    snapshot = first.snapshot("L1")
    assert snapshot is not None and snapshot.fit == 30.0


def test_a_firmographic_record_delivered_again_is_a_duplicate() -> None:
    store = MemoryStore(PARAMS)
    record = fit_record(T0, 20.0, "5f")

    first, other, again = store.apply([record, fit_record(T0, 5.0, "10"), record])

    assert first is not None and first.status == APPLIED
    assert other is None
    assert again == replace(first, status=DUPLICATE)


def test_firmographic_records_in_any_order_give_the_same_fit() -> None:
    records = [
        fit_record(T0, 10.0, "0a"),
        fit_record(T0, 30.0, "a0"),
        fit_record(T0, 20.0, "a"),
        fit_record(T0 - DAY_MS, 40.0, "ff"),
        fit_record(T0, 30.0, "a0"),  # a redelivery
    ]
    finals = set()
    for order in itertools.permutations(records):
        store = MemoryStore(PARAMS)
        store.apply([visit(PLAIN, T0, "e1"), *order])
        finals.add(store.snapshot("L1"))

    assert len(finals) == 1
    (final,) = finals
    assert final is not None and final.fit == 30.0


def test_forget_removes_the_lead() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PRICING, T0, "e1"), Forget("L1", "tombstone:crm:0:1", T0)])

    assert store.snapshot("L1") is None
    assert list(store.lead_ids()) == []


def test_forget_takes_an_mql_back_to_zero() -> None:
    store = MemoryStore(PARAMS)
    store.apply([FitUpdate("L1", "f1", T0, 45.0, "d1"), visit(PRICING, T0, "e1")])
    tombstone = Forget("L1", "tombstone:crm:0:7", T0 + DAY_MS)

    (outcome,) = store.apply([tombstone])

    assert outcome is not None
    assert (outcome.status, outcome.previous_score, outcome.score) == (
        APPLIED,
        65.0,
        0.0,
    )
    assert (outcome.fit, outcome.engagement) == (0.0, 0.0)
    assert (outcome.was_mql, outcome.is_mql) == (True, False)
    assert outcome.as_of_ms == T0 + DAY_MS


def test_the_same_tombstone_again_repeats_its_outcome() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PRICING, T0, "e1")])
    tombstone = Forget("L1", "tombstone:crm:0:7", T0)
    (first,) = store.apply([tombstone])

    again, other = store.apply([tombstone, Forget("L1", "tombstone:crm:0:9", T0)])

    assert first is not None and again is not None
    assert again == replace(first, status=DUPLICATE)
    assert other is None  # nothing held, and not this tombstone


def test_a_lead_back_after_an_erasure_ends_the_memory_of_it() -> None:
    store = MemoryStore(PARAMS)
    tombstone = Forget("L1", "tombstone:crm:0:7", T0)
    store.apply([visit(PRICING, T0, "e1"), tombstone, visit(BLOG, T0, "e2")])

    (again,) = store.apply([tombstone])

    assert again is not None and again.status == APPLIED
    assert again.previous_score == 1.0  # the blog read since, not the pricing


def test_a_tombstone_of_an_unknown_lead_does_nothing() -> None:
    store = MemoryStore(PARAMS)

    assert store.apply([Forget("L1", "tombstone:crm:0:7", T0)]) == [None]
    assert list(store.lead_ids()) == []


def test_state_as_of_a_later_time_can_drop_an_mql() -> None:
    store = MemoryStore(PARAMS)
    rule = ScoringRule("big", 70.0, 7 * DAY_MS, None, None)
    store.apply([visit(rule, T0, "e1")])

    now = store.snapshot("L1")
    month_later = store.snapshot("L1", T0 + 28 * DAY_MS)
    assert now is not None and now.is_mql
    assert month_later is not None and not month_later.is_mql
    assert month_later.score == pytest.approx(70 / 16)


@pytest.mark.parametrize(
    ("points", "flags"),
    [
        (55.0, (True, False)),  # back into the band only: it left while quiet
        (65.0, (True, True)),  # back over the threshold: still an MQL
    ],
)
def test_an_mql_that_decayed_out_of_the_band_is_judged_at_its_next_event(
    points: float, flags: tuple[bool, bool]
) -> None:
    store = MemoryStore(PARAMS)
    big = ScoringRule("big", 70.0, 7 * DAY_MS, None, None)
    comeback = ScoringRule("comeback", points, 7 * DAY_MS, None, None)

    # 70 is an MQL; four half-lives later it is 4.4, far below 60 - 10,
    # when an event lifts it to 59.4 (inside the band) or to 69.4.
    outcomes = store.apply(
        [visit(big, T0, "e1"), visit(comeback, T0 + 28 * DAY_MS, "e2")]
    )

    last = outcomes[-1]
    assert last is not None
    assert last.score == pytest.approx(70 / 16 + points)
    assert (last.was_mql, last.is_mql) == flags
    snapshot = store.snapshot("L1")
    assert snapshot is not None and snapshot.is_mql == flags[1]


# Fit 50 alone is in the band (60 - 10) for good: only engagement can take
# such a lead out, and it must hold half of min_engagement (10) to stay.
@pytest.mark.parametrize(
    ("quiet_days", "flags"),
    [
        (7, (True, True)),  # 12 decayed to 6, plus 1: 7 of the 5 it needs
        (14, (True, False)),  # 12 decayed to 3, plus 1: 4 < 5, out on fit alone
    ],
)
def test_fit_alone_does_not_keep_a_lead_an_mql(
    quiet_days: int, flags: tuple[bool, bool]
) -> None:
    params = replace(PARAMS, min_engagement=10.0)
    store = MemoryStore(params)
    visit_12 = ScoringRule("visit", 12.0, 7 * DAY_MS, None, None)
    small = ScoringRule("small", 1.0, 7 * DAY_MS, None, None)

    outcomes = store.apply(
        [
            FitUpdate("L1", "f", T0, 50.0, "d"),
            visit(visit_12, T0, "e1"),  # 62, engagement 12: up
            visit(small, T0 + quiet_days * DAY_MS, "e2"),
        ]
    )

    crossing, last = outcomes[1], outcomes[2]
    assert crossing is not None and (crossing.was_mql, crossing.is_mql) == (False, True)
    assert last is not None
    assert last.score == pytest.approx(50 + 12 / 2 ** (quiet_days / 7) + 1)
    assert last.score >= params.threshold - params.hysteresis  # in the band
    assert (last.was_mql, last.is_mql) == flags


def test_a_min_engagement_of_0_asks_nothing_of_an_mql_to_stay() -> None:
    # Half of 0 is 0, the entry level itself: no band, so engagement going
    # either side of 0 would flip the flag at every event.
    store = MemoryStore(replace(PARAMS, min_engagement=0.0))
    one = ScoringRule("one", 1.0, 7 * DAY_MS, None, None)
    minus = ScoringRule("minus", -15.0, 7 * DAY_MS, None, None)
    plus = ScoringRule("plus", 20.0, 7 * DAY_MS, None, None)
    updates = [FitUpdate("L1", "f", T0, 80.0, "d"), visit(one, T0, "e1")]
    for n, rule in enumerate([minus, plus, minus, plus]):
        updates.append(visit(rule, T0 + (n + 1) * HOUR_MS, f"e{n + 2}"))

    outcomes = store.apply(updates)

    engagements = [round(o.engagement) for o in outcomes[1:] if o is not None]
    flags = [o.is_mql for o in outcomes[1:] if o is not None]
    assert engagements == [1, -14, 6, -9, 11]
    assert flags == [True] * 5


def test_an_mql_on_fit_alone_is_none_in_a_later_snapshot() -> None:
    store = MemoryStore(replace(PARAMS, min_engagement=10.0))
    store.apply(
        [
            FitUpdate("L1", "f", T0, 50.0, "d"),
            visit(ScoringRule("visit", 12.0, 7 * DAY_MS, None, None), T0, "e1"),
        ]
    )

    now = store.snapshot("L1")
    years_later = store.snapshot("L1", T0 + 3650 * DAY_MS)
    assert now is not None and now.is_mql
    assert years_later is not None and not years_later.is_mql
    assert years_later.score == pytest.approx(50.0)


RULES = [PRICING, BLOG, PLAIN, CAREERS]


@st.composite
def event_sets(draw: st.DrawFn) -> list[ActivityUpdate]:
    count = draw(st.integers(min_value=1, max_value=40))
    leads = draw(st.integers(min_value=1, max_value=4))
    events = []
    for i in range(count):
        offset = draw(st.integers(min_value=0, max_value=DAY_MS))
        rule = draw(st.sampled_from(RULES))
        lead = f"L{draw(st.integers(min_value=1, max_value=leads))}"
        events.append(visit(rule, T0 + offset, f"e{i}", lead))
    return events


def final_state(events: list[ActivityUpdate]) -> dict[str, tuple[float, float]]:
    store = MemoryStore(PARAMS)
    store.apply(events)
    snapshots = [store.snapshot(lead, T0 + 2 * DAY_MS) for lead in store.lead_ids()]
    return {s.lead_id: (s.engagement, s.score) for s in snapshots if s is not None}


def assert_close(
    left: dict[str, tuple[float, float]], right: dict[str, tuple[float, float]]
) -> None:
    assert left.keys() == right.keys()
    for lead, values in left.items():
        for a, b in zip(values, right[lead], strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (lead, a, b)


@settings(max_examples=300, deadline=None)
@given(events=event_sets(), seed=st.integers(min_value=0, max_value=2**32))
def test_any_arrival_order_gives_the_same_final_state(
    events: list[ActivityUpdate], seed: int
) -> None:
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)

    assert_close(final_state(events), final_state(shuffled))


@settings(max_examples=200, deadline=None)
@given(events=event_sets(), seed=st.integers(min_value=0, max_value=2**32))
def test_duplicates_in_any_order_change_nothing(
    events: list[ActivityUpdate], seed: int
) -> None:
    rng = random.Random(seed)
    doubled = events + rng.sample(events, k=len(events) // 2 + 1)
    rng.shuffle(doubled)

    assert_close(final_state(events), final_state(doubled))


@pytest.mark.parametrize(
    ("flags", "as_of"),
    [
        (["1", "2", "0", "1"], "1750000000000"),
        (["1.0", "2.0", "0.0", "1e0"], "1.75e12"),
        (["0", "0", "1", "0"], "0"),
        (["3", "1", "-1", "0.5"], "9007199254740993"),
        (["1", "1", "1", "1"], "-1750000000000"),
    ],
)
def test_outcome_text_decodes_however_its_numbers_are_spelt(
    flags: list[str], as_of: str
) -> None:
    # The short cuts for the usual spellings must agree with the general
    # conversion for any spelling a store might write.
    text = "|".join(["applied", "1.5", "2.5", "0", "2.5", "1", "0.25", *flags, as_of])
    capped, late, was_mql, is_mql = flags

    outcome = Outcome.decode(text)

    assert outcome.capped is bool(int(float(capped)))
    assert outcome.late == int(float(late))
    assert outcome.was_mql is bool(int(float(was_mql)))
    assert outcome.is_mql is bool(int(float(is_mql)))
    assert outcome.as_of_ms == int(float(as_of))
    assert Outcome.decode(outcome.encode()) == outcome


def test_fit_alone_does_not_make_an_mql_when_engagement_is_required() -> None:
    params = Params(1.0, 1.0, 60.0, 10.0, DAY_MS, 30 * DAY_MS, min_engagement=15.0)
    store = MemoryStore(params)
    small = ScoringRule("small", 10.0, 7 * DAY_MS, None, None)
    outcomes = store.apply(
        [
            FitUpdate("L1", "f", T0, 70.0, "d1"),  # 70: over the threshold, no activity
            visit(small, T0 + 1, "a"),  # 80, engagement 10: still below 15
            visit(small, T0 + 2, "b"),  # 90, engagement 20: crosses up
            FitUpdate("L1", "g", T0 + 3, 32.0, "d2"),  # 52: inside the band, stays
        ]
    )

    flags = [o.is_mql for o in outcomes if o is not None]
    assert flags == [False, False, True, True]
    snapshot = store.snapshot("L1")
    assert snapshot is not None and snapshot.is_mql


def test_without_a_minimum_negative_engagement_does_not_block_an_mql() -> None:
    # A careers visit pulls engagement below zero; fit alone still qualifies,
    # as it did before the minimum existed.
    params = Params(1.0, 1.0, 30.0, 10.0, DAY_MS, 30 * DAY_MS)
    store = MemoryStore(params)
    outcomes = store.apply(
        [FitUpdate("L1", "f", T0, 50.0, "d1"), visit(CAREERS, T0 + 1, "c")]
    )

    assert [o.is_mql for o in outcomes if o is not None] == [True, True]
    assert params.is_mql(False, 35.0, -15.0)
    assert not replace(params, min_engagement=0.0).is_mql(False, 35.0, -15.0)


# Bounds, each exactly where it lies: the Lua twin must draw them alike
# (tests/integration/test_state.py runs the scenarios below on it).
ENTRY = Params(1.0, 1.0, 60.0, 10.0, DAY_MS, 30 * DAY_MS, min_engagement=20.0)


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def test_the_threshold_and_min_engagement_are_reached_by_equal_values() -> None:
    assert ENTRY.is_mql(False, 60.0, 20.0)
    assert not ENTRY.is_mql(False, below(60.0), 20.0)
    assert not ENTRY.is_mql(False, 60.0, below(20.0))


def test_an_mql_stays_one_on_the_bands_floor_and_half_its_entry_engagement() -> None:
    assert ENTRY.stays(50.0, 10.0)
    assert not ENTRY.stays(below(50.0), 10.0)
    assert not ENTRY.stays(50.0, below(10.0))
    assert ENTRY.is_mql(True, 50.0, 10.0)


def test_an_event_exactly_the_allowed_lateness_behind_is_late_not_too_late() -> None:
    store = MemoryStore(PARAMS)
    outcomes = store.apply(
        [
            visit(PLAIN, T0 + DAY_MS, "newest"),
            visit(PLAIN, T0, "a_lateness_behind"),
            visit(PLAIN, T0 - 1, "a_millisecond_more"),
        ]
    )

    assert [o.late for o in outcomes if o is not None] == [ON_TIME, LATE, TOO_LATE]


def test_a_window_folds_once_its_end_is_the_allowed_lateness_behind() -> None:
    def window(end_ms: int) -> Window:
        return Window(
            raw=8.0, decayed=6.0, half_life_ms=7 * DAY_MS, cap=5.0, end_ms=end_ms
        )

    reached = LeadState(ref_ms=T0, windows={"w:blog:1": window(T0 - DAY_MS)})
    open_still = LeadState(ref_ms=T0, windows={"w:blog:1": window(T0 - DAY_MS + 1)})
    reached.close_windows(DAY_MS)
    open_still.close_windows(DAY_MS)

    # Folded at its capped share: 6 decayed points of 8 raw, capped at 5.
    assert reached.windows == {} and reached.folded == {"b:blog": (3.75, 7 * DAY_MS)}
    assert list(open_still.windows) == ["w:blog:1"] and open_still.folded == {}


def test_a_snapshot_asked_before_the_newest_event_is_as_of_that_event() -> None:
    store = MemoryStore(PARAMS)
    store.apply([visit(PLAIN, T0, "e1")])

    snapshot = store.snapshot("L1", T0 - 7 * DAY_MS)

    assert snapshot is not None
    assert (snapshot.as_of_ms, snapshot.engagement) == (T0, 10.0)


def test_a_fit_record_of_a_lead_without_events_is_as_of_its_own_time() -> None:
    store = MemoryStore(PARAMS)

    (outcome,) = store.apply([fit_record(T0, 30.0, "aa")])

    assert outcome is not None and outcome.as_of_ms == T0


def test_a_snapshot_of_a_lead_with_only_a_fit_is_as_of_the_time_asked() -> None:
    store = MemoryStore(PARAMS)
    store.apply([fit_record(T0, 30.0, "aa")])

    unasked = store.snapshot("L1")
    a_day_later = store.snapshot("L1", T0 + DAY_MS)

    assert unasked is not None and unasked.as_of_ms == T0
    assert a_day_later is not None
    assert (a_day_later.as_of_ms, a_day_later.score) == (T0 + DAY_MS, 30.0)


def test_a_snapshot_at_a_later_time_leaves_the_stored_state_as_it_was() -> None:
    # Capped reads sit in an open window: a snapshot must decay a copy of it.
    reads = [visit(BLOG, T0 + n, f"r{n}") for n in range(3)]
    later = visit(BLOG, T0 + HOUR_MS, "later")
    looked_at, untouched = MemoryStore(PARAMS), MemoryStore(PARAMS)
    looked_at.apply(reads)
    untouched.apply(reads)

    now = looked_at.snapshot("L1")
    a_week_on = looked_at.snapshot("L1", T0 + 7 * DAY_MS)
    now_again = looked_at.snapshot("L1")

    assert now is not None and now.engagement == pytest.approx(3.0)
    assert a_week_on is not None and a_week_on.engagement == pytest.approx(1.5)
    assert now_again == now
    assert looked_at.apply([later]) == untouched.apply([later])


def test_a_late_read_counts_against_its_own_days_full_cap() -> None:
    day = (T0 // DAY_MS) * DAY_MS  # the start of BLOG's cap window of T0
    store = MemoryStore(PARAMS)
    reads = [visit(BLOG, day + HOUR_MS, f"r{n}") for n in range(5)]

    *_, late = store.apply(
        [
            *reads,
            visit(PLAIN, day + DAY_MS + 2 * HOUR_MS, "next_day"),
            visit(BLOG, day + 3 * HOUR_MS, "late"),
        ]
    )

    # 23 hours behind, within the allowed lateness of a day: its own day's
    # window is still open, and full.
    assert late is not None and (late.late, late.capped) == (LATE, True)


def test_a_cap_counts_raw_points_however_much_late_ones_decayed() -> None:
    fading = ScoringRule("fading", 1.0, HOUR_MS, 5.0, DAY_MS)
    day = (T0 // DAY_MS) * DAY_MS
    store = MemoryStore(PARAMS)
    newest = visit(PLAIN, day + 21 * HOUR_MS, "newest")
    reads = [visit(fading, day + HOUR_MS, f"r{n}") for n in range(6)]

    outcomes = store.apply([newest, *reads])

    # Twenty half-lives old, each read is worth next to nothing, but it is
    # still one of the 5 the window allows: the sixth is over the cap.
    assert [o.capped for o in outcomes[1:] if o is not None] == [False] * 5 + [True]
