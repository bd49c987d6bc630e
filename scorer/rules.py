"""Engagement rules: which activity a rule scores, compiled once.

Rules are tried in the order the config lists them and the first match fires,
so one visit is explained by exactly one rule (`score_changed.reason.rule`).
"""

import re
from dataclasses import dataclass

from scorer.config import EngagementRule, Match, Scoring
from scorer.events import Activity


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
        self.url_pattern = re.compile(match.url_pattern) if match.url_pattern else None
        self.categories = frozenset(c.lower() for c in match.category)
        self.asset_types = frozenset(a.lower() for a in match.asset_type)
        self.status = match.status
        self.min_minutes = match.min_minutes_watched

    def matches(self, event: Activity) -> bool:
        if event.type != self.type:
            return False
        if event.type == "page_view":
            return self._page(event)
        if event.type == "content_download":
            asset_type = (event.asset_type or "").lower()
            return not self.asset_types or asset_type in self.asset_types
        return self._webinar(event)

    def _page(self, event: Activity) -> bool:
        url = (event.url or "").lower()
        category = (event.category or "").lower()
        url_ok = not self.url_contains or any(p in url for p in self.url_contains)
        pattern_ok = self.url_pattern is None or bool(
            self.url_pattern.search(event.url or "")
        )
        category_ok = not self.categories or category in self.categories
        return url_ok and pattern_ok and category_ok

    def _webinar(self, event: Activity) -> bool:
        status_ok = self.status is None or event.status == self.status
        watched = event.minutes_watched or 0.0
        minutes_ok = self.min_minutes is None or watched >= self.min_minutes
        return status_ok and minutes_ok


class RuleBook:
    """The engagement rules of one scoring config, ready to match events."""

    def __init__(self, scoring: Scoring) -> None:
        self.version = scoring.rules_version
        self._rules = [
            (_Matcher(rule.match), _scoring_rule(scoring, rule))
            for rule in scoring.engagement_rules
        ]

    def match(self, event: Activity) -> ScoringRule | None:
        for matcher, rule in self._rules:
            if matcher.matches(event):
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
