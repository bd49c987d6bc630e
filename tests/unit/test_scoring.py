"""Records to output events, with the shipped default rules."""

from datetime import UTC, datetime

import pytest

from scorer.config import load_config
from scorer.events import Activity, Firmographics, Forget
from scorer.lead import MemoryStore, Params
from scorer.pipeline import _as_first_delivery
from scorer.scoring import (
    DUPLICATE_RECORD,
    FORGOTTEN,
    NO_RULE,
    SCORED,
    STALE,
    Scorer,
)

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
SCORING = load_config(environ={}).scoring
BLOG = SCORING.engagement_rules[0]
assert BLOG.name == "blog_read" and BLOG.cap is not None
BLOG_CAP = BLOG.cap


def new_scorer() -> Scorer:
    return Scorer(SCORING, MemoryStore(Params.of(SCORING)))


def page(url: str, at_ms: int, event_id: str, lead: str = "L1") -> Activity:
    return Activity(event_id, lead, "page_view", at_ms, url=url)


def score_of(scorer: Scorer, lead: str = "L1") -> float:
    snapshot = scorer.store.snapshot(lead)
    assert snapshot is not None
    return snapshot.score


def test_ten_blog_reads_score_less_than_one_pricing_visit() -> None:
    reader, buyer = new_scorer(), new_scorer()
    reads = [page(f"/blog/post-{i}", T0 + i * 600_000, f"b{i}") for i in range(10)]
    reader.score(reads)
    buyer.score([page("/pricing", T0, "p1")])

    assert score_of(reader) < score_of(buyer)


def test_ten_blog_reads_over_ten_days_still_score_less() -> None:
    reader, buyer = new_scorer(), new_scorer()
    reader.score([page(f"/blog/p{i}", T0 + i * DAY_MS, f"b{i}") for i in range(10)])
    buyer.score([page("/pricing/enterprise", T0, "p1")])

    assert score_of(reader) < score_of(buyer)


def test_thirty_reloads_of_a_blog_page_stay_within_the_cap() -> None:
    scorer = new_scorer()
    scorer.score([page("/blog/one", T0 + i * 60_000, f"r{i}") for i in range(30)])

    assert 0 < score_of(scorer) <= BLOG_CAP.points


def blog_reads_at_window_edges(weeks: int) -> list[Activity]:
    """A full cap of reads at the end of every week, then a cap at the start
    of the next: the most engagement blog reading can ever hold."""
    first = T0 // BLOG_CAP.window + 1
    ends = [(first + week) * BLOG_CAP.window - 1 for week in range(1, weeks + 1)]
    starts = [ends[-1] + 1] * int(BLOG_CAP.points)
    times = [end for end in ends for _ in range(int(BLOG_CAP.points))] + starts
    return [page(f"/blog/p{i}", at, f"b{i}") for i, at in enumerate(times)]


def test_blog_reading_at_its_most_stays_under_the_ceiling_check_config_uses() -> None:
    reader = new_scorer()
    reader.score(blog_reads_at_window_edges(weeks=40))
    blog_only = SCORING.model_copy(
        update={"engagement_rules": (SCORING.engagement_rules[0],)}
    )

    ceiling = blog_only.max_engagement()
    assert 0.999 * ceiling < score_of(reader) < ceiling
    # The ceiling once left out the window before the current one.
    steady = BLOG_CAP.points / (
        1 - 0.5 ** (BLOG_CAP.window / SCORING.half_life_of(BLOG))
    )
    assert score_of(reader) > steady + 0.99 * BLOG_CAP.points


def test_blog_reading_alone_never_makes_an_mql_nor_outscores_pricing() -> None:
    # A threshold that fit alone reaches: only min_engagement stands in the way.
    low = SCORING.model_copy(
        update={"mql": SCORING.mql.model_copy(update={"threshold": 50.0})}
    )
    reader = Scorer(low, MemoryStore(Params.of(low)))
    buyer = new_scorer()
    best_fit = Firmographics(
        "L1", T0, employees=1200, industry="software", title="VP Marketing"
    )
    results = reader.score([best_fit, *blog_reads_at_window_edges(weeks=40)])
    buyer.score([page("/pricing", T0, "p1")])

    snapshot = reader.store.snapshot("L1")
    assert snapshot is not None and snapshot.fit == 50.0
    assert snapshot.engagement < SCORING.mql.min_engagement
    assert not snapshot.is_mql
    assert all(o["type"] == "score_changed" for r in results for o in r.outputs)
    assert snapshot.engagement < score_of(buyer)


def test_every_default_criterion_fires_on_its_event() -> None:
    scorer = new_scorer()
    events = [
        page("/demo", T0, "d"),
        page("/pricing", T0, "p"),
        page("/careers/engineer", T0, "c"),
        page("/blog/x", T0, "b"),
        Activity(
            "w1", "L1", "content_download", T0, asset_id="a1", asset_type="case_study"
        ),
        Activity("w2", "L1", "webinar", T0, webinar_id="w", status="registered"),
        Activity(
            "w3",
            "L1",
            "webinar",
            T0,
            webinar_id="w",
            status="attended",
            minutes_watched=45.0,
        ),
    ]
    results = scorer.score(events)

    rules = [r.outputs[0]["reason"]["rule"] for r in results]
    assert rules == [
        "demo_request",
        "pricing_page",
        "careers_page",
        "blog_read",
        "proof_download",
        "webinar_registered",
        "webinar_attended",
    ]


def test_a_short_webinar_attendance_scores_nothing() -> None:
    scorer = new_scorer()
    event = Activity(
        "w", "L1", "webinar", T0, webinar_id="w", status="attended", minutes_watched=3
    )

    assert scorer.score([event])[0].status == NO_RULE


def test_fit_rules_score_size_industry_and_seniority() -> None:
    scorer = new_scorer()
    record = Firmographics(
        "L1",
        T0,
        company="Acme",
        employees=1200,
        industry="Information  Technology",
        title="VP Marketing",
        country="DE",
    )
    result = scorer.score([record])[0]

    assert result.status == SCORED
    event = result.outputs[0]
    assert event["fit"] == 50.0
    assert event["score"] == 50.0
    assert event["reason"]["fit_rules"] == [
        "target_company_size",
        "target_industry",
        "senior_title",
    ]


def test_crossing_the_threshold_publishes_mql_crossed() -> None:
    scorer = new_scorer()
    fit = Firmographics("L1", T0, employees=500, title="Head of Ops")
    results = scorer.score([fit, page("/demo", T0 + 1, "d1")])

    outputs = results[1].outputs
    assert [o["type"] for o in outputs] == ["score_changed", "mql_crossed"]
    crossed = outputs[1]
    assert crossed["direction"] == "up"
    assert crossed["score"] == 65.0
    assert crossed["previous_score"] == 35.0
    assert crossed["fit"] == 35.0
    assert crossed["engagement"] == 30.0
    assert crossed["is_mql"] is True


def test_outputs_explain_themselves() -> None:
    scorer = new_scorer()
    scorer.score([page("/pricing", T0, "p0")])
    later = T0 + 14 * DAY_MS  # one half-life of the default rules
    event = scorer.score([page("/pricing", later, "p1")])[0].outputs[0]

    assert event["type"] == "score_changed"
    assert event["source_event_id"] == "p1"
    assert event["rules_version"] == SCORING.rules_version
    assert event["previous_score"] == 20.0
    assert event["score"] == 30.0  # 20 decayed by half, plus 20
    assert event["reason"] == {
        "rule": "pricing_page",
        "fit_rules": [],
        "points": 20.0,
        "points_applied": 20.0,
        "capped": False,
        "decay": 10.0,
        "late": False,
    }
    assert event["occurred_at"] == datetime.fromtimestamp(later / 1000, tz=UTC)


def test_a_redelivered_event_republishes_identical_outputs() -> None:
    scorer = new_scorer()
    first = scorer.score([page("/pricing", T0, "p1")])[0]
    again = scorer.score([page("/pricing", T0, "p1")])[0]

    assert again.status == DUPLICATE_RECORD
    assert again.outputs == first.outputs
    assert score_of(scorer) == 20.0


# Two versions of one CRM record stamped the same second: fit 35 and fit 15.
SENIOR = Firmographics("L1", T0, employees=500, title="Head of Ops")
JUNIOR = Firmographics("L1", T0, employees=500, title="Analyst")


def test_records_stamped_alike_end_in_the_same_fit_in_any_order() -> None:
    fits = set()
    for order in ([SENIOR, JUNIOR], [JUNIOR, SENIOR]):
        scorer = new_scorer()
        outputs = [o for r in scorer.score(order) for o in r.outputs]
        # Each record publishes under ids of its own.
        assert len({o["event_id"] for o in outputs}) == len(outputs)
        snapshot = scorer.store.snapshot("L1")
        assert snapshot is not None
        fits.add(snapshot.fit)

    # Ties go to the larger digest, SENIOR's: 15 for the size, 20 for the title.
    assert SENIOR.digest > JUNIOR.digest
    assert fits == {35.0}


def test_a_redelivered_firmographic_record_republishes_identical_outputs() -> None:
    small, large = sorted([SENIOR, JUNIOR], key=lambda record: record.digest)
    scorer = new_scorer()

    first = scorer.score([large])[0]
    lost = scorer.score([small])[0]
    again = scorer.score([large])[0]

    assert lost.status == STALE and lost.outputs == []
    assert again.status == DUPLICATE_RECORD
    assert first.outputs and again.outputs == first.outputs


def test_output_ids_are_deterministic_and_distinct() -> None:
    one, two = new_scorer(), new_scorer()
    events = [page("/pricing", T0, "p1"), page("/demo", T0 + 1, "p2")]
    ids_one = [o["event_id"] for r in one.score(events) for o in r.outputs]
    ids_two = [o["event_id"] for r in two.score(events) for o in r.outputs]

    assert ids_one == ids_two
    assert len(set(ids_one)) == len(ids_one)


def test_an_erased_mql_publishes_zero_and_a_crossing_down() -> None:
    scorer = new_scorer()
    scorer.score([page("/pricing", T0, f"p{i}") for i in range(2)])
    scorer.score([page("/demo", T0, "d1"), page("/webinars/x", T0, "w1")])
    snapshot = scorer.store.snapshot("L1")
    assert snapshot is not None and snapshot.is_mql

    (result,) = scorer.score([Forget("L1", "tombstone:crm:2:40", T0 + DAY_MS)])

    changed, crossed = result.outputs
    assert result.status == FORGOTTEN
    assert (changed["type"], crossed["type"]) == ("score_changed", "mql_crossed")
    assert changed["previous_score"] == round(snapshot.score, 2)
    assert (changed["score"], changed["fit"], changed["engagement"]) == (0, 0, 0)
    assert changed["source_event_id"] == "L1/tombstone:crm:2:40"
    assert changed["occurred_at"] == datetime.fromtimestamp((T0 + DAY_MS) / 1000, UTC)
    assert changed["reason"]["rule"] is None and changed["reason"]["points"] == 0
    assert (crossed["direction"], crossed["is_mql"]) == ("down", False)


def test_an_erasure_redelivered_publishes_the_same_events() -> None:
    scorer = new_scorer()
    tombstone = Forget("L1", "tombstone:crm:2:40", T0 + DAY_MS)
    scorer.score([page("/pricing", T0, "p1")])
    (first,) = scorer.score([tombstone])

    (again,) = scorer.score([tombstone])

    assert again.status == DUPLICATE_RECORD
    assert again.outputs == first.outputs != []
    # A Redis retry that finds it applied counts it as what it first was.
    assert _as_first_delivery(again).status == FORGOTTEN


def test_a_tombstone_of_an_unknown_lead_publishes_nothing() -> None:
    (result,) = new_scorer().score([Forget("L9", "tombstone:crm:0:1", T0)])

    assert (result.status, result.outputs) == (FORGOTTEN, [])


def test_a_forgotten_lead_starts_from_zero() -> None:
    scorer = new_scorer()
    scorer.score([page("/pricing", T0, "p1"), Forget("L1", "tombstone:crm:0:1", T0)])
    scorer.score([page("/blog/a", T0 + 1, "b1")])

    assert score_of(scorer) == 1.0


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("/blog/pricing-models-explained", "blog_read"),
        ("/blog/demo-day-recap", "blog_read"),
        ("/demo-request", "demo_request"),
        ("https://example.com/Demo?ref=ad", "demo_request"),
        ("/pricing.html", "pricing_page"),
        ("/en/pricing/enterprise", "pricing_page"),
        ("/jobs/", "careers_page"),
        ("/pricing", "pricing_page"),  # the end of the text ends the word
        ("/CAREERS", "careers_page"),
        ("/demographics", None),
        ("/DEMOS", None),
        ("/pricingplans-archive", None),
        ("/jobsite-partners", None),
    ],
)
def test_default_page_rules_match_whole_path_words(url: str, rule: str | None) -> None:
    result = new_scorer().score([page(url, T0, "e")])[0]

    fired = result.outputs[0]["reason"]["rule"] if result.outputs else None
    assert fired == rule
