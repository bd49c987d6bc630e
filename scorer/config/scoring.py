"""The scoring model: its rules, decay, the weights of the total score and
the MQL threshold, checked together so that the threshold can be reached.
"""

import hashlib
import json
import math
from functools import cached_property
from typing import Self

from pydantic import Field, model_validator

from scorer.config.fields import UNIT_MS, DurationMs, Frozen, Number, duration_text
from scorer.config.rules import EngagementRule, FitRule
from scorer.errors import ConfigError

# A weight rescales fit against engagement; a thousandfold is plenty. With
# MAX_POINTS, an event adds at most 1e9 to the total, so reaching a double's
# 1.8e308 would take about 1e299 events.
MAX_WEIGHT = 1_000
# Cap windows a lead can hold open at once, over all its rules; each update
# of the lead reads and writes them all (the default rules: 14).
MAX_OPEN_WINDOWS = 1_000


class Total(Frozen):
    """score = fit_weight * fit + engagement_weight * engagement."""

    fit_weight: Number = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    engagement_weight: Number = Field(default=1.0, ge=0, le=MAX_WEIGHT)


class Mql(Frozen):
    """A lead becomes an MQL at `threshold` and stops below threshold-hysteresis."""

    threshold: Number = Field(gt=0)
    hysteresis: Number = Field(default=10.0, ge=0)
    min_engagement: Number | None = Field(
        default=None,
        ge=0,
        description="engagement a lead needs besides the threshold to become an "
        "MQL, so that fit alone never alerts sales; an MQL stays one while it "
        "holds half of it (unset: the threshold alone)",
    )

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.hysteresis >= self.threshold:
            raise ValueError("hysteresis must be smaller than threshold")
        return self


class Scoring(Frozen):
    """The scoring model: rules, decay and the MQL threshold."""

    version: str = Field(min_length=1, max_length=64)
    half_life: DurationMs = Field(default=14 * UNIT_MS["d"], gt=0)
    allowed_lateness: DurationMs = Field(default=UNIT_MS["d"], ge=0)
    dedupe_horizon: DurationMs = Field(default=30 * UNIT_MS["d"], gt=0)
    total: Total = Total()
    mql: Mql
    engagement_rules: tuple[EngagementRule, ...] = Field(min_length=1)
    fit_rules: tuple[FitRule, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [r.name for r in self.engagement_rules] + [
            r.name for r in self.fit_rules
        ]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"duplicate rule names: {', '.join(repeated)}")
        if self.dedupe_horizon < self.allowed_lateness:
            raise ValueError("dedupe_horizon must be at least allowed_lateness")
        self._check_open_windows()
        self._check_reachable()
        self._check_shadowed()
        return self

    def _check_shadowed(self) -> None:
        # The first matching rule fires: a rule after one that matches all
        # it matches never fires, and its points silently go to the other
        # (a 10-minute webinar rule above the 30-minute one, a copy, a rule
        # with no condition but the event type).
        rules = self.engagement_rules
        for later, rule in enumerate(rules):
            for earlier in range(later):
                if rules[earlier].match.covers(rule.match):
                    raise ConfigError(
                        f"scoring.engagement_rules.{later}",
                        f"{rule.name} never fires: {rules[earlier].name} "
                        f"(engagement_rules.{earlier}) comes first and matches "
                        "every event it matches; the first matching rule fires, "
                        "so put the narrower rule first",
                    )

    def open_windows(self, rule: EngagementRule) -> int:
        """The most cap windows of `rule` a lead can hold open at once.

        A window stays open until `allowed_lateness` past its end: the lead's
        newest event's window, and those ending less than that before it.
        """
        if rule.cap is None:
            return 0
        return -(-self.allowed_lateness // rule.cap.window) + 1

    def _check_open_windows(self) -> None:
        # Every update of a lead reads, sums and writes all its open windows
        # in one script call that blocks Redis: a 1-minute cap with a week
        # of lateness kept 10,081 open, and a call took seconds.
        total = sum(self.open_windows(rule) for rule in self.engagement_rules)
        if total <= MAX_OPEN_WINDOWS:
            return
        worst = max(self.engagement_rules, key=self.open_windows)
        assert worst.cap is not None  # an uncapped rule opens no window
        raise ValueError(
            f"the capped rules can keep {total:,} cap windows open per lead, "
            f"more than {MAX_OPEN_WINDOWS:,}: a window stays open "
            f"allowed_lateness past its end, and {worst.name}'s "
            f"{duration_text(worst.cap.window)} windows "
            f"alone make {self.open_windows(worst):,}; lengthen cap.window "
            "or shorten allowed_lateness"
        )

    def _check_reachable(self) -> None:
        best = self.total.fit_weight * self.max_fit()
        if self.total.engagement_weight > 0:
            best += self.total.engagement_weight * self.max_engagement()
        if best < self.mql.threshold:
            raise ValueError(
                f"mql.threshold {self.mql.threshold:g} cannot be reached: "
                f"the highest possible score is {best:g}"
            )
        least = self.mql.min_engagement
        if least is not None and self.max_engagement() < least:
            raise ValueError(
                f"mql.min_engagement {least:g} cannot be reached: "
                f"the highest possible engagement is {self.max_engagement():g}"
            )

    @cached_property
    def rules_version(self) -> str:
        """The configured version plus a digest of the rules' content."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:8]
        return f"{self.version}+{digest}"

    def half_life_of(self, rule: EngagementRule) -> int:
        return rule.half_life if rule.half_life is not None else self.half_life

    def max_fit(self) -> float:
        return sum(max(rule.points, 0.0) for rule in self.fit_rules)

    def max_engagement(self) -> float:
        """The ceiling of engagement: a full cap in every window, as late as can be.

        Windows are clock-aligned, so a full cap can be earned at the very end
        of one window and another at the start of the next: at that moment
        the current window and the one before count undecayed, and each
        earlier one a window's decay less than the one after it.
        """
        ceiling = 0.0
        for rule in self.engagement_rules:
            if rule.points <= 0:
                continue
            if rule.cap is None:
                return math.inf
            per_window = 2.0 ** (-rule.cap.window / self.half_life_of(rule))
            ceiling += rule.cap.points * (1.0 + 1.0 / (1.0 - per_window))
        return ceiling
