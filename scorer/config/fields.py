"""Field types and limits that the config's sections share: durations with a
unit, numbers that refuse booleans, rule points, and the frozen base model.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

# A number, then a unit; without one, seconds. A sign is read so that "-3d" is
# refused as negative, not as unreadable. The number may be text: quoted, or
# an exponent such as 1e6, which YAML 1.1 reads as a string even unquoted.
_DURATION = re.compile(
    r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|m|h|d|w)?\s*$"
)
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
UNIT_MS["w"] = 7 * UNIT_MS["d"]
_DURATION_EXPECTED = (
    "a duration: a number of seconds, quoted or not (90, '90', '1.5', '1e6'), "
    "or a number with a unit ms, s, m, h, d or w, as in '500ms', '30s', '15m', "
    "'12h', '7d' or '2w'"
)
# Far longer than any decay, cap window or horizon a scoring model needs; it
# keeps every duration exact as a double (Lua, JSON) and a 1 ms cap window a
# visible share of any half-life (Scoring.max_engagement divides by it).
MAX_DURATION_MS = 1000 * 365 * 86_400_000
# Points of a rule, either sign: far beyond any scoring model (the default's
# rules give 1 to 30), and small enough that no score can overflow a double.
MAX_POINTS = 1_000_000
# Far beyond any healthy round trip to Redis or the registry. A call that
# hangs blocks the consume loop, unpolled, for this long: it must stay well
# within metrics.stall_after (1 min) and max.poll.interval.ms (5 min). (Python's
# socket timeouts overflow past about 292 years: 1e300 passed check-config,
# then `scorer run` died in an OverflowError.)
MAX_TIMEOUT_S = 30


def duration_text(ms: int) -> str:
    """A duration as the config writes it: the largest of d, h, m and s
    that divides it (7d, not 1w; 90s, not 1.5m)."""
    for unit in ("d", "h", "m", "s"):
        size = UNIT_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _duration_ms(value: Any) -> Any:
    """'500ms', '90s', '15m', '12h', '7d', '2w' or seconds, as milliseconds.

    Seconds are a number, or text that is one ('86400'): the same number
    read either way gives the same duration and meets the same range check.
    """
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_EXPECTED}, not a boolean")
    if isinstance(value, int | float):
        return _whole_ms(value * 1000)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(_DURATION_EXPECTED)
        amount, unit = found.groups()
        return _whole_ms(float(amount) * UNIT_MS[unit or "s"])
    if value is None:
        return value  # pydantic says "required" or takes it for an optional one
    # A list or a mapping: pydantic would say "a valid integer", which
    # misleads where a duration such as '10d' is wanted.
    raise ValueError(_DURATION_EXPECTED)


def _whole_ms(ms: float) -> int:
    # Checked before int(), whose OverflowError for inf (a duration of 400
    # digits reads as one) pydantic would not turn into a validation error.
    in_range = -MAX_DURATION_MS <= ms <= MAX_DURATION_MS  # False for NaN too
    if not in_range:
        days = MAX_DURATION_MS // UNIT_MS["d"]
        raise ValueError(f"must be a finite duration of at most {days}d")
    return int(ms)


def _not_boolean(value: Any) -> Any:
    # YAML reads `true` as a boolean, and pydantic would take it as 1.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _within_points_limit(value: float) -> float:
    if abs(value) > MAX_POINTS:
        raise ValueError(f"must be between -{MAX_POINTS:,} and {MAX_POINTS:,}")
    return value


DurationMs = Annotated[int, BeforeValidator(_duration_ms)]
# Every number of the config is one of these: no boolean passes as 0 or 1.
# NaN and infinities are refused by `Frozen` (allow_inf_nan) for every float.
Number = Annotated[float, BeforeValidator(_not_boolean)]
Integer = Annotated[int, BeforeValidator(_not_boolean)]
Points = Annotated[Number, AfterValidator(_within_points_limit)]


EventType = Literal["page_view", "content_download", "webinar"]


class Frozen(BaseModel):
    # No NaN or infinity: an infinite threshold passed the reachability check
    # and then made scores that no JSON output can hold.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
