"""The records the scorer consumes, and their validation.

Both wire formats (Avro and JSON) decode to a plain mapping first; this module
turns that mapping into a typed record or raises `InvalidRecord` naming the
field. Validation is strict on purpose: a record the scorer cannot trust goes
to the dead-letter topic rather than into a lead's score.
"""

import calendar
import hashlib
import json
import math
import re
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from scorer.errors import InvalidRecord

ACTIVITY_TYPES = ("page_view", "content_download", "webinar")
FIRMOGRAPHICS_TYPE = "firmographics"
WEBINAR_STATUSES = ("registered", "attended")

# Ids and free text are bounded so that one hostile record cannot bloat Redis.
MAX_ID_CHARS = 200
MAX_URL_CHARS = 4096
MAX_TEXT_CHARS = 500
MAX_MINUTES_WATCHED = 100_000.0
MAX_EMPLOYEES = 10_000_000
# 64 bits: two versions of a record stamped alike collide with odds of 2**-64.
DIGEST_BYTES = 8

# Anything before this is a zeroed or garbled clock, not a real visit.
EARLIEST_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
DEFAULT_MAX_FUTURE_MS = 86_400_000  # a day of clock skew between producers

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# A value that looks like a type name may be quoted in an error; anything
# else (an e-mail address, a name) is not: errors end up in logs.
_UNKNOWN_TYPE = (
    "unknown event type (not page_view, content_download, webinar or firmographics)"
)
# What a refused time should have looked like, for the message.
_RFC3339_FORM = (
    "expected yyyy-mm-ddThh:mm:ss, an optional .fraction, then Z, +hh:mm or -hh:mm"
)
# RFC 3339 section 5.6, date-time: full-date, "T", hh:mm:ss with an optional
# fraction of any length, then "Z" or +hh:mm / -hh:mm. The section's notes
# allow a lowercase "t" and "z", and let an application put a space for the
# "T": this one does (Python's str() of a datetime writes one). [0-9], not \d,
# which also matches other scripts' digits. fromisoformat checks the ranges
# of the date and time, but would take an offset of +05:60 as six hours.
_LOCAL_DATE_TIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
)
_OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_RFC3339 = re.compile(_LOCAL_DATE_TIME + _OFFSET)
_LOCAL_TIME = re.compile(_LOCAL_DATE_TIME)
_SECOND = slice(17, 19)  # fixed by the pattern: yyyy-mm-ddThh:mm:ss
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Activity:
    """A page view, content download or webinar event of one lead."""

    event_id: str
    lead_id: str
    type: str
    occurred_at_ms: int
    url: str | None = None
    category: str | None = None
    referrer: str | None = None
    asset_id: str | None = None
    asset_type: str | None = None
    webinar_id: str | None = None
    status: str | None = None
    minutes_watched: float | None = None


@dataclass(frozen=True, slots=True)
class Firmographics:
    """What the CRM knows about a lead's company and role."""

    lead_id: str
    updated_at_ms: int
    company: str | None = None
    employees: int | None = None
    industry: str | None = None
    title: str | None = None
    country: str | None = None

    @property
    def digest(self) -> str:
        """A digest of the content the fit is made from, as hex.

        A CRM may stamp two versions of a record with the same `updated_at`;
        the state keeps the one with the larger digest, so that the final fit
        does not depend on their arrival order.
        """
        content = [self.company, self.employees, self.industry, self.title]
        text = json.dumps([*content, self.country])
        return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).hexdigest()

    @property
    def op_id(self) -> str:
        """A stable id for this version of the record (it has no event id)."""
        return firmographics_op_id(self.updated_at_ms, self.digest)


def firmographics_op_id(updated_at_ms: int, digest: str) -> str:
    """The id of a firmographic record's version, from its time and digest."""
    return f"firmographics:{updated_at_ms}:{digest}"


@dataclass(frozen=True, slots=True)
class Forget:
    """A tombstone: delete everything the scorer holds about the lead.

    `op_id` names the tombstone (its place in the log, so a redelivered one
    is the same), `at_ms` is when it was written: the erasure's output
    events carry both.
    """

    lead_id: str
    op_id: str
    at_ms: int


def tombstone_op_id(topic: str, partition: int, offset: int) -> str:
    """The id of a tombstone: its place in the log never changes."""
    return f"tombstone:{topic}:{partition}:{offset}"


Record = Activity | Firmographics


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """The event times the scorer accepts, in epoch milliseconds."""

    earliest_ms: int = EARLIEST_EVENT_MS
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS

    def check(self, field: str, value_ms: int) -> int:
        latest_ms = int(time.time() * 1000) + self.max_future_ms
        if value_ms < self.earliest_ms:
            raise InvalidRecord(
                "timestamp_out_of_range", f"{field} is before 2000-01-01", field
            )
        if value_ms > latest_ms:
            raise InvalidRecord(
                "timestamp_out_of_range", f"{field} is in the future", field
            )
        return value_ms


def parse_record(data: Mapping[str, Any], bounds: TimeBounds) -> Record:
    """Validate a decoded event or firmographic record."""
    kind = _text(data, "type", MAX_ID_CHARS)
    if kind == FIRMOGRAPHICS_TYPE:
        return _firmographics(data, bounds)
    if kind in ACTIVITY_TYPES:
        return _activity(kind, data, bounds)
    # Never quoted: a producer has been seen to put a person's name in any
    # field, and a name can look like a type name.
    raise InvalidRecord("unknown_type", _UNKNOWN_TYPE, "type")


def wrong_topic(topic: str, carries_firmographics: bool) -> InvalidRecord:
    """The refusal of a record on a topic of the other kind."""
    expected = "firmographic records" if carries_firmographics else "events"
    return InvalidRecord(
        "wrong_topic", f"topic {topic} carries {expected} only", "type"
    )


def record_fields(record: Record) -> dict[str, Any]:
    """A validated record as the mapping a codec writes: its normalised values.

    Times are epoch ms (`occurred_at`, `updated_at`); fields the record's
    type does not carry, and absent optional ones, are left out.
    """
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    if isinstance(record, Activity):
        values["occurred_at"] = values.pop("occurred_at_ms")
    else:
        values["type"] = FIRMOGRAPHICS_TYPE
        values["updated_at"] = values.pop("updated_at_ms")
    return {name: value for name, value in values.items() if value is not None}


def unexpected_error(exc: Exception) -> InvalidRecord:
    """A bug met while decoding or validating one record, as a rejection.

    The record then goes to the dead-letter topic like any invalid one
    instead of stopping the scorer. Only the exception's class and where it
    was raised are kept: its message may quote the record's content.
    """
    message = f"unexpected {type(exc).__name__}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        file_name = frames[-1].filename.rsplit("/", 1)[-1]
        message += f" at {file_name}:{frames[-1].lineno}"
    return InvalidRecord(INTERNAL_ERROR, message)


def parse_time(value: Any, field: str) -> int:
    """An RFC 3339 string (JSON) or an aware datetime (Avro) as epoch ms."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = _rfc3339(value, field)
    else:
        raise InvalidRecord("wrong_type", f"{field} must be an RFC 3339 string", field)

    if moment.tzinfo is None:
        raise InvalidRecord("bad_timestamp", f"{field} has no time zone", field)
    # Integer arithmetic: a float timestamp * 1000 can land 1 ms early.
    return (moment - _EPOCH) // _ONE_MS


def format_time(value_ms: int) -> str:
    """Epoch ms as RFC 3339 in UTC with millisecond precision.

    Raises OverflowError for a time outside the years 1 to 9999.
    """
    # Integer arithmetic: value_ms / 1000 as a float lost the last
    # millisecond of times after about the year 2250.
    moment = _EPOCH + _ONE_MS * value_ms
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rfc3339(value: str, field: str) -> datetime:
    # fromisoformat alone is lenient: it takes week dates, no seconds, +05 or
    # +0530 offsets, comma fractions and no offset at all.
    if _RFC3339.fullmatch(value) is None:
        _refuse_time(value, field)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    # Rare, so kept off the path of every other time: a lowercase "z" (which
    # fromisoformat refuses), second 60, or a date or time out of range.
    if value[-1] == "z":
        value = value[:-1] + "Z"
    leap = value[_SECOND] == "60"
    if leap:
        value = f"{value[:17]}59{value[19:]}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRecord("bad_timestamp", _not_rfc3339(field), field) from exc
    return _leap_second(moment, field) if leap else moment


def _refuse_time(value: str, field: str) -> NoReturn:
    if not value or value.isspace():
        raise InvalidRecord("empty_field", f"{field} is empty", field)
    if _LOCAL_TIME.fullmatch(value) is not None:
        raise InvalidRecord("bad_timestamp", f"{field} has no time zone", field)
    raise InvalidRecord("bad_timestamp", _not_rfc3339(field), field)


def _not_rfc3339(field: str) -> str:
    return f"{field} is not RFC 3339 ({_RFC3339_FORM})"


def _leap_second(moment: datetime, field: str) -> datetime:
    """A time written with second 60, read as second 59 into `moment`.

    RFC 3339 section 5.7: second 60 exists only at 23:59 UTC on the last day
    of a month (whether that month had a leap second is not checked). Python's
    datetime cannot hold it, so it counts as the last millisecond of its
    minute: after every earlier time of the minute, before the next minute,
    on the date it was written with.
    """
    try:
        utc = moment.astimezone(UTC)
    except OverflowError as exc:  # past year 9999 or before year 1 in UTC
        raise InvalidRecord("bad_timestamp", _not_rfc3339(field), field) from exc

    last_day = calendar.monthrange(utc.year, utc.month)[1]
    at_month_end = utc.day == last_day and (utc.hour, utc.minute) == (23, 59)
    if not at_month_end:
        message = f"{field} has second 60 away from a leap second (23:59:60Z)"
        raise InvalidRecord("bad_timestamp", message, field)
    return moment.replace(microsecond=999_000)


def _activity(kind: str, data: Mapping[str, Any], bounds: TimeBounds) -> Activity:
    event_id = _text(data, "event_id", MAX_ID_CHARS)
    lead_id = _lead_id(data)
    occurred = parse_time(_required(data, "occurred_at"), "occurred_at")
    occurred_at_ms = bounds.check("occurred_at", occurred)

    if kind == "page_view":
        # Positional: most records are page views, and keywords cost a third
        # of building the record. The order is that of Activity's fields.
        return Activity(
            event_id,
            lead_id,
            kind,
            occurred_at_ms,
            _text(data, "url", MAX_URL_CHARS),
            _optional_text(data, "category", MAX_TEXT_CHARS),
            _optional_text(data, "referrer", MAX_URL_CHARS),
        )
    if kind == "content_download":
        return Activity(
            event_id,
            lead_id,
            kind,
            occurred_at_ms,
            asset_id=_text(data, "asset_id", MAX_URL_CHARS),
            asset_type=_text(data, "asset_type", MAX_TEXT_CHARS),
        )
    return Activity(
        event_id,
        lead_id,
        kind,
        occurred_at_ms,
        webinar_id=_text(data, "webinar_id", MAX_ID_CHARS),
        status=_choice(data, "status", WEBINAR_STATUSES),
        minutes_watched=_minutes(data),
    )


def _firmographics(data: Mapping[str, Any], bounds: TimeBounds) -> Firmographics:
    updated = parse_time(_required(data, "updated_at"), "updated_at")
    return Firmographics(
        lead_id=_lead_id(data),
        updated_at_ms=bounds.check("updated_at", updated),
        company=_optional_text(data, "company", MAX_TEXT_CHARS),
        employees=_employees(data),
        industry=_optional_text(data, "industry", MAX_TEXT_CHARS),
        title=_optional_text(data, "title", MAX_TEXT_CHARS),
        country=_optional_text(data, "country", MAX_TEXT_CHARS),
    )


def _required(data: Mapping[str, Any], field: str) -> Any:
    if field not in data:
        raise InvalidRecord("missing_field", f"{field} is missing", field)
    value = data[field]
    if value is None:
        raise InvalidRecord("null_field", f"{field} is null", field)
    return value


def _text(data: Mapping[str, Any], field: str, max_chars: int) -> str:
    value = data.get(field)
    # One test passes a good value (isspace stops at the first other
    # character); anything else takes every check in turn for its reason.
    if isinstance(value, str) and 0 < len(value) <= max_chars and not value.isspace():
        return value
    return _checked_text(field, _required(data, field), max_chars)


def _optional_text(data: Mapping[str, Any], field: str, max_chars: int) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= max_chars and not value.isspace():
        return value
    return _checked_text(field, value, max_chars)


def _checked_text(field: str, value: Any, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{field} must be a string", field)
    # Empty or only white space: what `not value.strip()` tests, without a copy.
    if not value or value.isspace():
        raise InvalidRecord("empty_field", f"{field} is empty", field)
    if len(value) > max_chars:
        raise InvalidRecord(
            "too_long", f"{field} is longer than {max_chars} characters", field
        )
    return value


def _lead_id(data: Mapping[str, Any]) -> str:
    lead_id = _text(data, "lead_id", MAX_ID_CHARS)
    if not lead_id.isprintable():
        raise InvalidRecord("bad_value", _unprintable(lead_id), "lead_id")
    return lead_id


def _unprintable(lead_id: str) -> str:
    """Name the first character `str.isprintable` refuses, by code point.

    It refuses Unicode's "Other" and "Separator" categories but the ASCII
    space: control and format characters, U+00A0, U+2028, private-use and
    unassigned code points (unassigned in Python's Unicode database).
    """
    char = next(c for c in lead_id if not c.isprintable())
    return (
        f"lead_id holds U+{ord(char):04X}, which is not printable (allowed: "
        "letters, marks, numbers, punctuation, symbols and the ASCII space)"
    )


def _choice(data: Mapping[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    value = _text(data, field, MAX_ID_CHARS)
    if value not in allowed:
        raise InvalidRecord(
            "bad_value", f"{field} must be one of {', '.join(allowed)}", field
        )
    return value


def _minutes(data: Mapping[str, Any]) -> float:
    value = data.get("minutes_watched", 0.0)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(
            "wrong_type", "minutes_watched must be a number", "minutes_watched"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecord(
            "not_finite", "minutes_watched is not finite", "minutes_watched"
        )
    # Compared before float(): a JSON integer can be too large for a float
    # (OverflowError), and Python compares an int with a float exactly.
    if not 0 <= value <= MAX_MINUTES_WATCHED:
        raise InvalidRecord(
            "bad_value", "minutes_watched is out of range", "minutes_watched"
        )
    return float(value)


def _employees(data: Mapping[str, Any]) -> int | None:
    value = data.get("employees")
    if value is None:
        return None
    if isinstance(value, float):
        value = _whole_number(value, "employees")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord("wrong_type", "employees must be an integer", "employees")
    if not 0 <= value <= MAX_EMPLOYEES:
        raise InvalidRecord("bad_value", "employees is out of range", "employees")
    return value


def _whole_number(value: float, field: str) -> int:
    # JSON has a single number type: a producer may well write 500 as 500.0.
    if not math.isfinite(value):
        raise InvalidRecord("not_finite", f"{field} is not finite", field)
    if not value.is_integer():
        raise InvalidRecord("bad_value", f"{field} must be a whole number", field)
    return int(value)
