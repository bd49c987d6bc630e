"""Output events: ids equal to the stdlib's UUIDv5, bytes equal to fastavro's."""

import io
import math
import random
import uuid

from fastavro import schemaless_writer

from scorer.lead import LATE, ON_TIME, TOO_LATE, ActivityUpdate, Outcome
from scorer.publish import OUTPUT_ID_NAMESPACE, Reason, output_events, output_id
from scorer.rules import ScoringRule
from scorer.wire import (
    SCORE_SCHEMA,
    SINGLE_OBJECT_MARKER,
    AvroCodec,
    JsonCodec,
    SchemaCatalog,
)

DAY_MS = 86_400_000
T0_MS = 1_750_000_000_000


def test_output_ids_equal_the_stdlib_uuid5() -> None:
    rng = random.Random(5)
    alphabet = "ab:/\n -é漢𝄞"
    names = ["", "lead-1\ne-1\nscore_changed", "lead-1\nlead-1/firmographics:1\nx"]
    names += ["".join(rng.choices(alphabet, k=rng.randrange(80))) for _ in range(500)]

    for name in names:
        assert output_id(name) == str(uuid.uuid5(OUTPUT_ID_NAMESPACE, name))


def test_a_known_output_id_never_changes() -> None:
    # Consumers recognise re-published outputs by this id; it must stay put.
    name = "lead-000123\nd9b6b4ee-892b-49a8-bb40-22106168eef8\nscore_changed"

    assert output_id(name) == "2d828236-915d-5f16-9cc5-3b238894bd87"
    assert uuid.UUID(output_id(name)).version == 5


def test_an_output_id_names_the_change_it_publishes() -> None:
    """Same event, time and scores, other parts (an erasure, then the events
    back in another order): not a copy for a reader deduping by event_id."""
    rule = ScoringRule("demo_request", 30.0, 14 * DAY_MS, None, None)
    update = ActivityUpdate("lead-7", "e-1", T0_MS, rule)
    before = Outcome(
        "applied", 30.0, 60.0, 30.0, 30.0, 30.0, 0.0, False, 0, False, True, T0_MS
    )
    after = Outcome(
        "applied", 30.0, 60.0, 0.0, 60.0, 30.0, 0.0, False, 0, False, True, T0_MS
    )
    again = Outcome(
        "applied", 30.0, 60.0, 30.0, 30.0, 30.0, 0.0, False, 0, False, True, T0_MS
    )

    def ids(outcome: Outcome) -> list[str]:
        events = output_events(update, outcome, Reason(rule.name, 30.0), "v1", 60.0)
        return [event["event_id"] for event in events]

    assert len(ids(before)) == 2  # score_changed and mql_crossed
    assert set(ids(before)).isdisjoint(ids(after))
    assert ids(before) == ids(again)


def test_score_events_encode_to_the_same_bytes_as_plain_fastavro() -> None:
    # AvroCodec names the `reason` union branch for speed; the bytes must be
    # exactly what fastavro writes when it picks the branch itself.
    catalog = SchemaCatalog.load()
    codec = AvroCodec(catalog, SCORE_SCHEMA)
    target = catalog.newest(SCORE_SCHEMA)
    assert target is not None
    rule = ScoringRule("pricing_page", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-1", T0_MS, rule)
    outcome = Outcome(
        "applied", 55.0, 75.5, 15.0, 60.5, 20.0, 0.25, True, 1, False, True, T0_MS
    )
    events = output_events(update, outcome, Reason(rule.name, 20.0), "v1", 60.0)
    assert [e["type"] for e in events] == ["score_changed", "mql_crossed"]

    for event in events:
        plain = io.BytesIO()
        schemaless_writer(plain, target.parsed, event)
        expected = SINGLE_OBJECT_MARKER + target.fingerprint + plain.getvalue()
        assert codec.encode(event) == expected
        assert codec.decode(expected)["reason"] == event["reason"]


def test_a_crossing_the_rounded_score_hides_still_comes_with_its_score_change() -> None:
    # 50.004 shows as 50.0 and so does 49.996, but the lead fell below
    # threshold - hysteresis (50): the mql_crossed's reason is null and
    # points to the score_changed of the same source, which must exist.
    rule = ScoringRule("careers_page", -15.0, 14 * DAY_MS, 15.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-2", T0_MS, rule)
    outcome = Outcome(
        "applied", 50.004, 49.996, 30.0, 19.996, 0.0, 0.008, False, 0, True,
        False, T0_MS,
    )  # fmt: skip

    events = output_events(update, outcome, Reason(rule.name, -15.0), "v1", 60.0)

    assert [e["type"] for e in events] == ["score_changed", "mql_crossed"]
    assert events[0]["score"] == events[0]["previous_score"] == 50.0
    assert events[1]["direction"] == "down"


def test_an_unmoved_score_without_a_crossing_publishes_nothing() -> None:
    rule = ScoringRule("blog_read", 1.0, 7 * DAY_MS, 5.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-3", T0_MS, rule)
    outcome = Outcome(
        "applied", 40.001, 40.002, 30.0, 10.002, 0.001, 0.0, True, 0, False,
        False, T0_MS,
    )  # fmt: skip

    assert output_events(update, outcome, Reason(rule.name, 1.0), "v1", 60.0) == []


def test_the_same_source_under_other_rules_publishes_other_ids() -> None:
    # Scoring history again under new rules (a new key prefix or group)
    # makes new outputs, not copies a reader deduping by event_id would drop.
    rule = ScoringRule("pricing_page", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-1", T0_MS, rule)
    outcome = Outcome(
        "applied", 55.0, 75.5, 15.0, 60.5, 20.0, 0.25, True, 1, False, True, T0_MS
    )
    reason = Reason(rule.name, 20.0)

    first = output_events(update, outcome, reason, "v1+0a1b2c3d", 60.0)
    again = output_events(update, outcome, reason, "v1+0a1b2c3d", 60.0)
    other = output_events(update, outcome, reason, "v2+4e5f6a7b", 60.0)

    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    first_ids = {e["event_id"] for e in first}
    assert first_ids.isdisjoint(e["event_id"] for e in other)
    assert len(first_ids) == 2


def test_a_late_event_and_a_too_late_one_both_say_late() -> None:
    rule = ScoringRule("pricing_page", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-4", T0_MS, rule)

    def said_late(late: int) -> bool:
        outcome = Outcome(
            "applied", 10.0, 30.0, 10.0, 20.0, 20.0, 0.0, False, late, False,
            False, T0_MS,
        )  # fmt: skip
        (changed,) = output_events(update, outcome, Reason(rule.name, 20.0), "v1", 60.0)
        return bool(changed["reason"]["late"])

    assert [said_late(late) for late in (ON_TIME, LATE, TOO_LATE)] == [
        False,
        True,
        True,
    ]


def test_a_crossing_up_and_one_down_from_one_source_have_other_ids() -> None:
    # Scored again (say, once the dedupe horizon forgot it), one event may
    # cross the other way: a reader deduping by event_id must not drop it.
    rule = ScoringRule("pricing_page", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-5", T0_MS, rule)

    def crossing_id(was: bool, now: bool) -> str:
        outcome = Outcome(
            "applied", 55.0, 65.0, 40.0, 25.0, 20.0, 0.0, False, 0, was, now,
            T0_MS,
        )  # fmt: skip
        events = output_events(update, outcome, Reason(rule.name, 20.0), "v1", 60.0)
        return str(events[1]["event_id"])

    assert crossing_id(False, True) != crossing_id(True, False)


def test_a_score_rounding_from_just_below_zero_is_published_as_plain_zero() -> None:
    # round(-0.001, 2) is -0.0, which JSON would spell "-0.0".
    rule = ScoringRule("careers_page", -15.0, 14 * DAY_MS, 15.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-6", T0_MS, rule)
    outcome = Outcome(
        "applied", 5.0, -0.001, 0.0, -0.001, -5.001, 0.0, False, 0, False,
        False, T0_MS,
    )  # fmt: skip

    (changed,) = output_events(update, outcome, Reason(rule.name, -15.0), "v1", 60.0)
    text = JsonCodec().encode(changed).decode()

    assert changed["score"] == 0.0
    assert math.copysign(1.0, changed["score"]) == 1.0
    assert '"score":0.0,' in text
    assert '"score":-0.0' not in text


def test_fit_and_engagement_are_published_to_4_decimals() -> None:
    # The README's output format promises 4 decimals for them.
    rule = ScoringRule("pricing_page", 20.0, 7 * DAY_MS, 40.0, DAY_MS)
    update = ActivityUpdate("lead-7", "e-7", T0_MS, rule)

    def published(engagement: float) -> object:
        outcome = Outcome(
            "applied", 0.0, 30.0 + engagement, 30.0, engagement, engagement, 0.0,
            False, 0, False, False, T0_MS,
        )  # fmt: skip
        (changed,) = output_events(update, outcome, Reason(rule.name, 20.0), "v1", 60.0)
        return changed["engagement"]

    assert published(1.23456) == 1.2346
    assert published(19.99996) == 20.0
