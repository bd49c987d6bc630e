"""Fit: how well a lead's company and role match the ideal customer profile.

Every fit rule that matches adds its points; the fit score is their sum. Text
is compared with case and runs of spaces ignored, because CRM exports spell
the same industry several ways ("Food, Beverages &  Tobacco").
"""

import re
from dataclasses import dataclass

from scorer.config import FitRule, Scoring
from scorer.events import Firmographics
from scorer.pattern import compile_pattern

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class FitScore:
    points: float
    rules: tuple[str, ...]


def normalise(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


class FitModel:
    """The fit rules of one scoring config, compiled."""

    def __init__(self, scoring: Scoring) -> None:
        self._rules = [_CompiledFitRule(rule) for rule in scoring.fit_rules]

    def score(self, record: Firmographics) -> FitScore:
        matched = [rule for rule in self._rules if rule.matches(record)]
        # Start at 0.0: sum() of no rules is the int 0, which a lead's state
        # kept and the replay's state file wrote as "fit": 0.
        return FitScore(
            points=sum((rule.points for rule in matched), 0.0),
            rules=tuple(rule.name for rule in matched),
        )


class _CompiledFitRule:
    def __init__(self, rule: FitRule) -> None:
        self.name = rule.name
        self.points = rule.points
        self.field = rule.field
        self.range = rule.range
        self.any_of = frozenset(normalise(v) for v in rule.any_of)
        self.pattern = compile_pattern(rule.pattern) if rule.pattern else None

    def matches(self, record: Firmographics) -> bool:
        value = getattr(record, self.field)
        if value is None:
            return False
        if self.range is not None:
            return self._in_range(float(value))
        if self.pattern is not None:
            return bool(self.pattern.search(str(value)))
        return normalise(str(value)) in self.any_of

    def _in_range(self, value: float) -> bool:
        assert self.range is not None
        above_min = self.range.min is None or value >= self.range.min
        below_max = self.range.max is None or value <= self.range.max
        return above_min and below_max
