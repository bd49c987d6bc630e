"""Engagement rules: which activity a rule scores, compiled once.

Rules are tried in the order the config lists them and the first match fires,
so one visit is explained by exactly one rule (`score_changed.reason.rule`).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from scorer.config import EngagementRule, Match, Scoring
from scorer.events import Activity
from scorer.pattern import compile_pattern


@dataclass(frozen=True, slots=True)
class ScoringRule:
    """What the state store needs to apply one rule's points."""

    name: str
    points: float
    half_life_ms: int
    cap_points: float | None
    cap_window_ms: int | None


class _Matcher:
    def __init__(self, match: Match) -> None:
        self.type = match.type
        self.url_contains = tuple(part.lower() for part in match.url_contains)
        self.url_pattern = (
            compile_pattern(match.url_pattern) if match.url_pattern else None
        )
        self.categories = frozenset(c.lower() for c in match.category)
        self.asset_types = frozenset(a.lower() for a in match.asset_type)
        self.status = match.status
        self.min_minutes = match.min_minutes_watched

    def matches(self, event: Activity) -> bool:
        """A download or webinar event; page views go through `page`."""
        if event.type != self.type:
            return False
        if event.type == "content_download":
            asset_type = (event.asset_type or "").lower()
            return not self.asset_types or asset_type in self.asset_types
        return self._webinar(event)

    def page(self, url: str, url_lower: str, category_lower: str) -> bool:
        if self.url_contains and not _contains_any(url_lower, self.url_contains):
            return False
        if self.url_pattern is not None and not self.url_pattern.search(url):
            return False
        return not self.categories or category_lower in self.categories

    def _webinar(self, event: Activity) -> bool:
        status_ok = self.status is None or event.status == self.status
        watched = event.minutes_watched or 0.0
        minutes_ok = self.min_minutes is None or watched >= self.min_minutes
        return status_ok and minutes_ok


def _contains_any(text: str, parts: tuple[str, ...]) -> bool:
    # A loop, not any(): the generator costs 2.5x the test (bench/pipeline.py).
    for part in parts:  # noqa: SIM110
        if part in text:
            return True
    return False


class RuleBook:
    """The engagement rules of one scoring config, ready to match events."""

    def __init__(self, scoring: Scoring) -> None:
        self._rules = [
            (_Matcher(rule.match), _scoring_rule(scoring, rule))
            for rule in scoring.engagement_rules
        ]
        # A rule matches one event type only, so trying just that type's
        # rules, in config order, finds the same first match.
        self._by_type: dict[str, list[tuple[_Matcher, ScoringRule]]] = {}
        for matcher, rule in self._rules:
            self._by_type.setdefault(matcher.type, []).append((matcher, rule))

    def match(self, event: Activity) -> ScoringRule | None:
        candidates = self._by_type.get(event.type, ())
        if event.type == "page_view":
            return self._match_page(event, candidates)
        for matcher, rule in candidates:
            if matcher.matches(event):
                return rule
        return None

    def _match_page(
        self, event: Activity, candidates: Sequence[tuple[_Matcher, ScoringRule]]
    ) -> ScoringRule | None:
        # Lower-cased once per event rather than once per rule.
        url = event.url or ""
        url_lower = url.lower()
        category_lower = (event.category or "").lower()
        for matcher, rule in candidates:
            if matcher.page(url, url_lower, category_lower):
                return rule
        return None


def _scoring_rule(scoring: Scoring, rule: EngagementRule) -> ScoringRule:
    cap = rule.cap
    return ScoringRule(
        name=rule.name,
        points=rule.points,
        half_life_ms=scoring.half_life_of(rule),
        cap_points=cap.points if cap else None,
        cap_window_ms=cap.window if cap else None,
    )
