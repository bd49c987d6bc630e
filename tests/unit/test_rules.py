"""Rule matching: engagement conditions, first match wins, fit criteria."""

from typing import Any

import pytest
from pydantic import ValidationError

from scorer.config import Scoring
from scorer.errors import ConfigError
from scorer.events import Activity, Firmographics
from scorer.fit import FitModel
from scorer.rules import RuleBook

T0 = 1_750_000_000_000


def scoring(engagement: list[dict[str, Any]], fit: list[dict[str, Any]]) -> Scoring:
    return Scoring.model_validate(
        {
            "version": "t",
            "mql": {"threshold": 10, "hysteresis": 1},
            "engagement_rules": engagement,
            "fit_rules": fit,
        }
    )


PAGE_RULES = [
    {"name": "docs", "match": {"type": "page_view", "category": ["Docs"]}, "points": 2},
    {
        "name": "pricing",
        "match": {"type": "page_view", "url_contains": ["/PRICING"]},
        "points": 20,
    },
    {
        "name": "plans",
        "match": {"type": "page_view", "url_pattern": r"^/plans/\d+$"},
        "points": 10,
    },
    {"name": "any_page", "match": {"type": "page_view"}, "points": 1},
    {
        "name": "long_watch",
        "match": {"type": "webinar", "status": "attended", "min_minutes_watched": 30},
        "points": 15,
    },
    {
        "name": "proof",
        "match": {"type": "content_download", "asset_type": ["case_study"]},
        "points": 8,
    },
]


def page(url: str, category: str | None = None) -> Activity:
    return Activity("e", "L", "page_view", T0, url=url, category=category)


@pytest.mark.parametrize(
    ("url", "category", "rule"),
    [
        ("/en/pricing?plan=team", None, "pricing"),  # substring, any case
        ("/docs/pricing", "docs", "docs"),  # the first match wins
        ("/plans/42", None, "plans"),
        ("/plans/42/extra", None, "any_page"),  # the pattern is anchored
        ("/", None, "any_page"),
    ],
)
def test_page_views_match_the_first_fitting_rule(
    url: str, category: str | None, rule: str
) -> None:
    book = RuleBook(scoring(PAGE_RULES, []))

    matched = book.match(page(url, category))

    assert matched is not None and matched.name == rule


def test_webinar_minutes_and_asset_types_are_conditions() -> None:
    book = RuleBook(scoring(PAGE_RULES, []))
    short = Activity("e", "L", "webinar", T0, status="attended", minutes_watched=29)
    full = Activity("e", "L", "webinar", T0, status="attended", minutes_watched=30)
    study = Activity("e", "L", "content_download", T0, asset_type="Case_Study")
    ebook = Activity("e", "L", "content_download", T0, asset_type="ebook")

    assert book.match(short) is None
    assert (rule := book.match(full)) is not None and rule.name == "long_watch"
    assert (rule := book.match(study)) is not None and rule.name == "proof"
    assert book.match(ebook) is None


def test_a_download_rule_without_asset_types_takes_any_download() -> None:
    rules = [
        {"name": "any_download", "match": {"type": "content_download"}, "points": 3}
    ]
    book = RuleBook(scoring(rules, []))
    whitepaper = Activity("e", "L", "content_download", T0, asset_type="whitepaper")
    untyped = Activity("e", "L", "content_download", T0)

    assert (rule := book.match(whitepaper)) is not None and rule.name == "any_download"
    assert (rule := book.match(untyped)) is not None and rule.name == "any_download"


def test_a_rule_carries_its_half_life_and_cap() -> None:
    rules = [
        {
            "name": "pricing",
            "match": {"type": "page_view"},
            "points": 20,
            "cap": {"points": 40, "window": "1d"},
            "half_life": "3d",
        }
    ]
    matched = RuleBook(scoring(rules, [])).match(page("/x"))

    assert matched is not None
    assert (matched.half_life_ms, matched.cap_points, matched.cap_window_ms) == (
        3 * 86_400_000,
        40.0,
        86_400_000,
    )


FIT_RULES = [
    {
        "name": "size",
        "field": "employees",
        "range": {"min": 200, "max": 5000},
        "points": 15,
    },
    {
        "name": "industry",
        "field": "industry",
        "any_of": ["Food, Beverages & Tobacco"],
        "points": 10,
    },
    {"name": "senior", "field": "title", "pattern": r"(?i)\bvp\b", "points": 20},
]


@pytest.mark.parametrize(
    ("employees", "industry", "title", "points"),
    [
        (200, None, None, 15),  # bounds are inclusive
        (5000, None, None, 15),
        (5001, None, None, 0),
        (None, "food,  beverages &  TOBACCO ", None, 10),  # spaces and case
        (None, None, "VP of Sales", 20),
        (None, None, "Senior VP, Sales", 20),  # anywhere in the title
        (None, None, "MVP Designer", 0),  # word boundaries
        (1000, "Food, Beverages & Tobacco", "vp", 45),  # every match adds
    ],
)
def test_fit_rules_add_up(
    employees: int | None, industry: str | None, title: str | None, points: float
) -> None:
    model = FitModel(scoring([PAGE_RULES[3]], FIT_RULES))
    record = Firmographics("L", T0, employees=employees, industry=industry, title=title)

    assert model.score(record).points == points


@pytest.mark.parametrize(
    ("where", "pattern"),
    [
        ("url_pattern", "(?i)/demo(?![a-z])"),  # lookahead
        ("url_pattern", "(?<=/en)/pricing"),  # lookbehind
        ("url_pattern", r"/(blog)/\1"),  # backreference
        ("url_pattern", "/blog/("),  # not a pattern at all
        ("pattern", "(?i)(vp)(?= of sales)"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_naming_the_field(
    where: str, pattern: str
) -> None:
    rule: dict[str, Any] = {"name": "r", "points": 5}
    if where == "url_pattern":
        rule["match"] = {"type": "page_view", where: pattern}
    else:
        rule |= {"field": "title", where: pattern}
    size = {"name": "size", "field": "employees", "range": {"min": 1}, "points": 5}
    rules, fit = (
        (PAGE_RULES, [rule]) if where == "pattern" else ([*PAGE_RULES, rule], [size])
    )

    with pytest.raises(ValidationError) as caught:
        scoring(rules, fit)

    (error,) = caught.value.errors()
    assert error["loc"][-1] == where
    assert "not a regular expression RE2 accepts" in error["msg"]
    assert pattern not in error["msg"]  # no config error quotes a value


def test_a_refused_pattern_is_described_by_re2_s_reason_only() -> None:
    rule = {"name": "r", "match": {"type": "page_view", "url_pattern": "/a(b"}}

    with pytest.raises(ValidationError) as caught:
        scoring([rule], [])

    assert caught.value.errors()[0]["msg"] == (
        "Value error, not a regular expression RE2 accepts: missing ) "
        "(no lookaround or backreferences)"
    )


def test_a_backtracking_pattern_runs_in_re2_on_a_long_url() -> None:
    # (a+)+$ against a long run of a's that fails at its end: Python's re
    # takes time doubling with each 'a' (seconds at 27 of them); RE2 none.
    rules = [
        {"name": "r", "match": {"type": "page_view", "url_pattern": "(a+)+$"}},
        {"name": "other", "match": {"type": "page_view"}},
    ]
    book = RuleBook(scoring([{**r, "points": 5} for r in rules], []))

    matched = book.match(page("/" + "a" * 4000 + "!"))

    assert matched is not None and matched.name == "other"


def rule(name: str, **match: Any) -> dict[str, Any]:
    return {"name": name, "match": match, "points": 5}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # The helper's cases: a condition-free rule, an order of minutes, a copy.
        ({"type": "page_view"}, {"type": "page_view", "url_contains": ["/careers"]}),
        (
            {"type": "webinar", "status": "attended", "min_minutes_watched": 10},
            {"type": "webinar", "status": "attended", "min_minutes_watched": 30},
        ),
        (
            {"type": "page_view", "url_contains": ["/pricing"]},
            {"type": "page_view", "url_contains": ["/pricing"]},
        ),
        # Substrings, case ignored: every URL with /Blog/x holds /blog/.
        (
            {"type": "page_view", "url_contains": ["/blog/", "/news/"]},
            {"type": "page_view", "url_contains": ["/Blog/x"]},
        ),
        (
            {"type": "content_download", "asset_type": ["case_study", "ebook"]},
            {"type": "content_download", "asset_type": ["Case_Study"]},
        ),
        ({"type": "webinar"}, {"type": "webinar", "status": "registered"}),
    ],
)
def test_a_rule_an_earlier_one_covers_is_refused(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        scoring([rule("wide", **first), rule("narrow", **second)], [])

    assert caught.value.field == "scoring.engagement_rules.1"
    assert caught.value.message.startswith(
        "narrow never fires: wide (engagement_rules.0) comes first and matches "
        "every event it matches"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Narrower first: the order the README asks for.
        ({"type": "page_view", "url_contains": ["/careers"]}, {"type": "page_view"}),
        (
            {"type": "webinar", "status": "attended", "min_minutes_watched": 30},
            {"type": "webinar", "status": "attended", "min_minutes_watched": 10},
        ),
        # Each matches events the other does not.
        (
            {"type": "page_view", "url_contains": ["/blog/pricing"]},
            {"type": "page_view", "url_contains": ["/blog/", "/pricing"]},
        ),
        ({"type": "webinar", "status": "registered"}, {"type": "webinar"}),
        ({"type": "page_view"}, {"type": "content_download"}),
        # A pattern is not run: only the same pattern covers.
        (
            {"type": "page_view", "url_pattern": "/pricing"},
            {"type": "page_view", "url_pattern": "/pricing/?$"},
        ),
        (
            {"type": "page_view", "category": ["docs"]},
            {"type": "page_view", "url_contains": ["/docs"]},
        ),
    ],
)
def test_rules_that_can_each_fire_are_accepted(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    rules = scoring([rule("one", **first), rule("two", **second)], [])

    assert [r.name for r in rules.engagement_rules] == ["one", "two"]
