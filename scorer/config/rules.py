"""What a rule is: an engagement rule's match and cap, a fit rule's
criterion, each with its points. `Scoring` holds the lists of them.
"""

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from scorer.config.fields import (
    MAX_POINTS,
    DurationMs,
    EventType,
    Frozen,
    Number,
    Points,
)
from scorer.pattern import compile_pattern

_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EMPTY_VALUE = "an empty value; give text, or leave the field out"


class Cap(Frozen):
    """At most `points` from one rule per clock-aligned window of `window`."""

    points: Number = Field(gt=0, description="most points the rule adds per window")
    window: DurationMs = Field(
        gt=0,
        description="window length; windows start at its multiples since the "
        "Unix epoch (UTC): a day at midnight, 7 days on a Thursday",
    )


class Match(Frozen):
    """Which activity events a rule scores. Omitted conditions match anything."""

    type: EventType
    url_contains: tuple[str, ...] = Field(
        default=(), description="page view: any of these substrings of the URL"
    )
    url_pattern: str | None = Field(
        default=None,
        description="page view: a regular expression (RE2 syntax) searched in the URL",
    )
    category: tuple[str, ...] = Field(
        default=(),
        description="page view: the page category is one of these (whole value, "
        "case ignored)",
    )
    asset_type: tuple[str, ...] = Field(
        default=(),
        description="content download: the asset type is one of these (whole "
        "value, case ignored)",
    )
    status: Literal["registered", "attended"] | None = Field(
        default=None, description="webinar: registered or attended"
    )
    min_minutes_watched: Number | None = Field(
        default=None, ge=0, description="webinar: watched at least this many minutes"
    )

    @field_validator("url_contains", "category", "asset_type")
    @classmethod
    def _given_choices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_choices(value)

    @field_validator("url_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            # It would be found in every text, like an empty substring.
            raise ValueError(_EMPTY_VALUE)
        compile_pattern(value)
        return value

    @model_validator(mode="after")
    def _conditions_fit_type(self) -> Self:
        by_type = {
            "page_view": ("url_contains", "url_pattern", "category"),
            "content_download": ("asset_type",),
            "webinar": ("status", "min_minutes_watched"),
        }
        for kind, fields in by_type.items():
            for name in fields:
                if kind != self.type and getattr(self, name) not in (None, ()):
                    raise ValueError(f"{name} applies only to {kind} events")
        return self

    def covers(self, other: "Match") -> bool:
        """Whether every event `other` matches is matched here too.

        Judged on the conditions alone, without running patterns: a pattern
        covers only the same pattern, so a False may still be a cover.
        """
        if self.type != other.type:
            return False
        if self.url_pattern is not None and self.url_pattern != other.url_pattern:
            return False
        return (
            _substrings_cover(self.url_contains, other.url_contains)
            and _choices_cover(self.category, other.category)
            and _choices_cover(self.asset_type, other.asset_type)
            and self.status in (None, other.status)
            and (self.min_minutes_watched or 0) <= (other.min_minutes_watched or 0)
        )


def _substrings_cover(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    # A URL holding one of theirs holds one of mine if each of theirs holds
    # one of mine; matching ignores case.
    if not mine:
        return True
    lowered = [part.lower() for part in mine]
    return bool(theirs) and all(
        any(part in their.lower() for part in lowered) for their in theirs
    )


def _choices_cover(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    if not mine:
        return True
    return bool(theirs) and {c.lower() for c in theirs} <= {c.lower() for c in mine}


class EngagementRule(Frozen):
    """Points for an activity; the first matching rule in the list fires."""

    name: str
    description: str = ""
    match: Match
    points: Points = Field(
        description="points per event; negative lowers the score; "
        f"at most {MAX_POINTS:,} either way"
    )
    cap: Cap | None = None
    half_life: DurationMs | None = Field(
        default=None, gt=0, description="overrides scoring.half_life for this rule"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _rule_name(value)

    @field_validator("points")
    @classmethod
    def _points(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must be a number other than 0")
        return value


class Range(Frozen):
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class FitRule(Frozen):
    """Points for one firmographic criterion; every matching rule adds."""

    name: str
    description: str = ""
    field: Literal["employees", "industry", "title", "country", "company"]
    range: Range | None = Field(default=None, description="employees: min..max")
    any_of: tuple[str, ...] = Field(
        default=(),
        description="text equals one of these (case ignored, ends trimmed, "
        "inner runs of spaces read as one)",
    )
    pattern: str | None = Field(
        default=None,
        description="a regular expression (RE2 syntax) searched in the text",
    )
    points: Points = Field(
        description=f"points when the criterion matches; at most {MAX_POINTS:,} "
        "either way"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _rule_name(value)

    @field_validator("any_of")
    @classmethod
    def _given_choices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_choices(value)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return Match._compiles(value)

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        given = [self.range is not None, bool(self.any_of), self.pattern is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of range, any_of, pattern")
        if (self.range is not None) != (self.field == "employees"):
            raise ValueError("range applies to employees, and employees needs range")
        return self


def _non_empty_choices(value: tuple[str, ...]) -> tuple[str, ...]:
    # Given but empty, a condition would quietly match every event (an empty
    # list reads as "no condition"; "" is a substring of every URL), so that
    # the rule shadows every rule after it.
    if not value:
        raise ValueError("an empty list; give at least one value, or leave it out")
    if any(not item.strip() for item in value):
        raise ValueError(_EMPTY_VALUE)
    return value


def _rule_name(value: str) -> str:
    if not _RULE_NAME.fullmatch(value):
        raise ValueError("use lower-case letters, digits and _ (at most 64)")
    return value
