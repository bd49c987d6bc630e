"""Tests of record validation (scorer/events.py)."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorer.errors import InvalidRecord
from scorer.events import (
    MAX_EMPLOYEES,
    MAX_ID_CHARS,
    MAX_MINUTES_WATCHED,
    Activity,
    Firmographics,
    TimeBounds,
    format_time,
    parse_record,
    parse_time,
)
from scorer.wire import JsonCodec

BOUNDS = TimeBounds()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AT_MS = 1_793_872_800_000  # 2026-11-05T10:00:00Z
# The last millisecond of 2016, where the leap second 23:59:60Z is counted.
LEAP_MS = 1_483_228_799_999

WEBINAR = {
    "event_id": "ev-1",
    "lead_id": "lead-1",
    "type": "webinar",
    "occurred_at": "2026-11-05T10:00:00Z",
    "webinar_id": "web-1",
    "status": "attended",
    "minutes_watched": 30,
}
FIRMOGRAPHICS = {
    "lead_id": "lead-1",
    "type": "firmographics",
    "updated_at": "2026-11-05T10:00:00Z",
    "employees": 500,
}


def rejection(value: Any, field: str = "occurred_at") -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse_time(value, field)
    return caught.value


def webinar(**changes: Any) -> Activity:
    record = parse_record({**WEBINAR, **changes}, BOUNDS)
    assert isinstance(record, Activity)
    return record


def firmographics(**changes: Any) -> Firmographics:
    record = parse_record({**FIRMOGRAPHICS, **changes}, BOUNDS)
    assert isinstance(record, Firmographics)
    return record


def refused(base: dict[str, Any], **changes: Any) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse_record({**base, **changes}, BOUNDS)
    return caught.value


# RFC 3339 times


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-11-05T10:00:00Z", AT_MS),
        # Section 5.6: "T" and "Z" may be lowercase.
        ("2026-11-05t10:00:00z", AT_MS),
        ("2026-11-05T10:00:00z", AT_MS),
        ("2026-11-05t10:00:00Z", AT_MS),
        # Section 5.6 lets an application use a space; the scorer does.
        ("2026-11-05 10:00:00Z", AT_MS),
        ("2026-11-05T15:30:00+05:30", AT_MS),
        ("2026-11-05T05:00:00-05:00", AT_MS),
        ("2026-11-05T10:00:00-00:00", AT_MS),
        ("2026-11-05T10:00:00.5Z", AT_MS + 500),
        ("2026-11-05T10:00:00.123Z", AT_MS + 123),
        # A fraction of any length; below the millisecond it is cut, not rounded.
        ("2026-11-05T10:00:00.123456789012Z", AT_MS + 123),
        ("2026-11-05T10:00:00.9999z", AT_MS + 999),
    ],
)
def test_rfc3339_times_are_accepted(text: str, expected_ms: int) -> None:
    assert parse_time(text, "occurred_at") == expected_ms


# A float division lost the last millisecond after about 2250 (the state's
# as_of at 9999-12-31T23:59:59.999Z showed .998).
@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z",
        "2026-11-05T10:00:00.123Z",
        "3000-01-01T00:00:00.001Z",
        "9999-12-31T23:59:59.999Z",
    ],
)
def test_times_are_written_back_to_the_millisecond(text: str) -> None:
    assert format_time(parse_time(text, "as_of")) == text


def test_a_time_past_9999_cannot_be_written() -> None:
    with pytest.raises(OverflowError):
        format_time(parse_time("9999-12-31T23:59:59.999Z", "as_of") + 1)


@pytest.mark.parametrize(
    "text",
    [
        "2016-12-31T23:59:60Z",
        "2016-12-31t23:59:60z",
        "2016-12-31T23:59:60.5Z",
        "2016-12-31T23:59:60.999999Z",
        "2017-01-01T05:29:60+05:30",
        "2016-12-31T18:59:60-05:00",
    ],
)
def test_leap_second_is_the_last_millisecond_of_its_minute(text: str) -> None:
    assert parse_time(text, "occurred_at") == LEAP_MS


def test_leap_second_sorts_between_its_neighbours() -> None:
    before = parse_time("2015-06-30T23:59:59.998Z", "occurred_at")
    leap = parse_time("2015-06-30T23:59:60Z", "occurred_at")
    after = parse_time("2015-07-01T00:00:00Z", "occurred_at")

    assert before < leap < after


@pytest.mark.parametrize(
    "text",
    [
        "2016-12-30T23:59:60Z",  # not the last day of a month
        "2016-12-31T12:00:60Z",  # not the last minute of the day
        "2017-01-01T05:29:60Z",  # 23:59:60 only in an offset of +05:30
        "2016-12-31T23:59:61Z",
        "9999-12-31T23:59:60-01:00",  # its UTC time is past what datetime holds
    ],
)
def test_second_60_outside_a_leap_second_is_refused(text: str) -> None:
    error = rejection(text)

    assert error.reason == "bad_timestamp"
    assert error.field == "occurred_at"
    assert "occurred_at" in error.message


@pytest.mark.parametrize(
    "text",
    [
        "2026-W45-4T10:00:00Z",  # ISO 8601 week date
        "2026-309T10:00:00Z",  # ISO 8601 ordinal date
        "20261105T100000Z",  # ISO 8601 basic format
        "2026-11-05",
        "2026-11-05T10:00Z",  # no seconds
        "2026-11-05T10:00+05:30",
        "2026-11-05T10:00:00+05",  # offsets must be hh:mm
        "2026-11-05T10:00:00+0530",
        "2026-11-05T10:00:00+05:30:00",
        "2026-11-05T10:00:00.5+05:30:00",
        "2026-11-05T10:00:00,5Z",  # comma fraction
        "2026-11-05T10:00:00.Z",  # a point without digits
        "2026-11-05T10:00:00.5",
        "2026-11-05T10:00:00 Z",
        "2026-11-05T10:00:00Z ",
        " 2026-11-05T10:00:00Z",
        "2026-11-05T10:00:00Z\n",
        "2026-11-05  10:00:00Z",
        "2026-11-05_10:00:00Z",
        "2026-1-05T10:00:00Z",
        "12026-11-05T10:00:00Z",
        "+2026-11-05T10:00:00Z",
        "\uff12\uff10\uff12\uff16-11-05T10:00:00Z",  # full-width digits
        "2026-11-05T10:00:00\u0660Z",  # an Arabic-Indic digit
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-05T24:00:00Z",
        "2026-11-05T10:60:00Z",
        "2026-11-05T10:00:00+24:00",
        "2026-11-05T10:00:00+05:60",
        "Z",
    ],
)
def test_non_rfc3339_times_are_refused(text: str) -> None:
    error = rejection(text)

    assert error.reason == "bad_timestamp"
    assert error.field == "occurred_at"
    assert error.message.startswith("occurred_at ")


@pytest.mark.parametrize("text", ["2026-11-05T10:00:00", "2026-11-05T10:00:00.123"])
def test_time_without_offset_says_it_has_no_zone(text: str) -> None:
    error = rejection(text, "updated_at")

    assert (error.reason, error.field) == ("bad_timestamp", "updated_at")
    assert error.message == "updated_at has no time zone"


def test_refused_time_is_not_quoted() -> None:
    # Producers have been seen to put an e-mail address in any field.
    error = rejection("jane.doe@example.com")

    assert "jane" not in error.message
    assert error.message == (
        "occurred_at is not RFC 3339 (expected yyyy-mm-ddThh:mm:ss, an optional "
        ".fraction, then Z, +hh:mm or -hh:mm)"
    )


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_an_empty_time_is_an_empty_field(text: str) -> None:
    error = rejection(text, "updated_at")

    assert (error.reason, error.field) == ("empty_field", "updated_at")
    assert error.message == "updated_at is empty"


def test_time_of_another_type_is_wrong_type() -> None:
    assert rejection(AT_MS).reason == "wrong_type"


@given(
    moment=st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31)
    ),
    offset_min=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_isoformat_of_any_aware_datetime_reads_back(
    moment: datetime, offset_min: int
) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    expected_ms = (aware - EPOCH) // timedelta(milliseconds=1)

    assert parse_time(aware.isoformat(), "occurred_at") == expected_ms
    assert parse_time(aware.isoformat(sep=" "), "occurred_at") == expected_ms


def test_json_event_with_lowercase_rfc3339_time_is_accepted() -> None:
    value = b'{"type":"webinar","event_id":"e","lead_id":"l",'
    value += b'"occurred_at":"2026-11-05t10:00:00z","webinar_id":"w",'
    value += b'"status":"registered"}'

    record = parse_record(JsonCodec().decode(value), BOUNDS)

    assert isinstance(record, Activity)
    assert record.occurred_at_ms == AT_MS


# Lead ids


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\u0007", "U+0007"),  # a control character
        ("\u00a0", "U+00A0"),  # a no-break space: a separator
        ("\u200b", "U+200B"),  # a zero-width space: a format character
        ("\u2028", "U+2028"),  # the line separator
        ("\ue000", "U+E000"),  # private use
        ("\u0378", "U+0378"),  # unassigned
    ],
)
def test_lead_id_with_a_character_that_is_not_printable_is_bad_value(
    char: str, code: str
) -> None:
    error = refused(WEBINAR, lead_id=f"lead{char}1")

    assert (error.reason, error.field) == ("bad_value", "lead_id")
    assert error.message == (
        f"lead_id holds {code}, which is not printable (allowed: letters, marks, "
        "numbers, punctuation, symbols and the ASCII space)"
    )


@pytest.mark.parametrize("lead_id", ["lead 1", "léad-7", "리드", "a\u0301", "€$"])
def test_lead_id_of_printable_characters_is_accepted(lead_id: str) -> None:
    assert webinar(lead_id=lead_id).lead_id == lead_id


# Numbers


def test_integral_float_employees_is_an_integer() -> None:
    employees = firmographics(employees=500.0).employees

    assert employees == 500
    assert type(employees) is int


@pytest.mark.parametrize("value", [500.5, 0.1, -0.5])
def test_fractional_employees_is_refused(value: float) -> None:
    error = refused(FIRMOGRAPHICS, employees=value)

    assert (error.reason, error.field) == ("bad_value", "employees")
    assert error.message == "employees must be a whole number"


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_employees_is_refused(value: float) -> None:
    error = refused(FIRMOGRAPHICS, employees=value)

    assert (error.reason, error.field) == ("not_finite", "employees")


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -1.0,
        MAX_EMPLOYEES + 1,
        1e300,
        pytest.param(10**400, id="10**400"),
        pytest.param(-(10**400), id="-10**400"),
    ],
)
def test_employees_out_of_range_is_bad_value(value: float) -> None:
    error = refused(FIRMOGRAPHICS, employees=value)

    assert (error.reason, error.field) == ("bad_value", "employees")
    assert "employees" in error.message


@pytest.mark.parametrize("value", ["500", True, [500]])
def test_employees_of_another_type_is_wrong_type(value: Any) -> None:
    assert refused(FIRMOGRAPHICS, employees=value).reason == "wrong_type"


@pytest.mark.parametrize("value", [0, 0.0, 30, 12.5, MAX_MINUTES_WATCHED, 100_000])
def test_minutes_in_range_are_a_float(value: float) -> None:
    minutes = webinar(minutes_watched=value).minutes_watched

    assert minutes == value
    assert type(minutes) is float


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        100_001,
        100_000.5,
        pytest.param(10**400, id="10**400"),
        pytest.param(-(10**400), id="-10**400"),
        pytest.param(2**1024, id="2**1024"),  # the first int no float can hold
    ],
)
def test_minutes_out_of_range_are_bad_value(value: float) -> None:
    error = refused(WEBINAR, minutes_watched=value)

    assert (error.reason, error.field) == ("bad_value", "minutes_watched")
    assert "minutes_watched" in error.message


def test_huge_json_integer_minutes_are_bad_value_not_an_internal_error() -> None:
    digits = b"1" + b"0" * 400
    value = b'{"type":"webinar","event_id":"e","lead_id":"l",'
    value += b'"occurred_at":"2026-11-05T10:00:00Z","webinar_id":"w",'
    value += b'"status":"attended","minutes_watched":' + digits + b"}"

    with pytest.raises(InvalidRecord) as caught:
        parse_record(JsonCodec().decode(value), BOUNDS)

    assert (caught.value.reason, caught.value.field) == ("bad_value", "minutes_watched")


def test_huge_json_float_minutes_are_not_finite() -> None:
    # json reads 1e400 as infinity.
    error = refused(WEBINAR, minutes_watched=float("inf"))

    assert (error.reason, error.field) == ("not_finite", "minutes_watched")


def test_events_from_the_first_millisecond_of_2000_on_are_taken() -> None:
    first = parse_time("2000-01-01T00:00:00Z", "occurred_at")

    assert BOUNDS.check("occurred_at", first) == first
    with pytest.raises(InvalidRecord) as refused:
        BOUNDS.check("occurred_at", first - 1)
    assert refused.value.reason == "timestamp_out_of_range"


def test_a_company_of_no_employees_is_taken_and_one_below_is_refused() -> None:
    assert firmographics(employees=0).employees == 0
    assert refused(FIRMOGRAPHICS, employees=-1).field == "employees"


def test_two_records_apart_only_by_country_have_other_digests() -> None:
    # Stamped alike, the larger digest wins: a digest blind to the country
    # would leave the winner to the order of arrival.
    assert firmographics(country="DE").digest != firmographics(country="FR").digest


def test_a_required_text_of_the_longest_length_is_taken_and_one_more_refused() -> None:
    webinar_id = "w" * MAX_ID_CHARS

    assert webinar(webinar_id=webinar_id).webinar_id == webinar_id
    assert refused(WEBINAR, webinar_id=webinar_id + "w").field == "webinar_id"
