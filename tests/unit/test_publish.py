"""Output events: ids equal to the stdlib's UUIDv5, bytes equal to fastavro's."""

import io
import random
import uuid

from fastavro import schemaless_writer

from scorer.lead import ActivityUpdate, Outcome
from scorer.publish import OUTPUT_ID_NAMESPACE, Reason, output_events, output_id
from scorer.rules import ScoringRule
from scorer.wire import SCORE_SCHEMA, SINGLE_OBJECT_MARKER, AvroCodec, SchemaCatalog

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
