"""Tests of the wire codecs and the schema catalog (scorer/wire.py)."""

import io
import json
import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.errors import ConfigError, InvalidRecord
from scorer.events import format_time
from scorer.wire import (
    DEFAULT_SCHEMAS_DIR,
    HEADER_BYTES,
    INPUT_SCHEMAS,
    SCORE_SCHEMA,
    SINGLE_OBJECT_MARKER,
    AvroCodec,
    JsonCodec,
    SchemaCatalog,
    SchemaVersion,
    make_codec,
)

CATALOG = SchemaCatalog.load()
INPUTS = AvroCodec(CATALOG)
SCORES = AvroCodec(CATALOG, SCORE_SCHEMA)
JSON = JsonCodec()

AT_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z
AT = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)

PAGE_VIEW = {
    "event_id": "ev-1",
    "lead_id": "lead-42",
    "type": "page_view",
    "occurred_at": AT,
    "url": "https://example.com/pricing",
    "category": "pricing",
    "referrer": "https://search.example/?q=crm",
}
CONTENT_DOWNLOAD = {
    "event_id": "ev-2",
    "lead_id": "lead-42",
    "type": "content_download",
    "occurred_at": AT,
    "asset_id": "asset-7",
    "asset_type": "whitepaper",
}
WEBINAR = {
    "event_id": "ev-3",
    "lead_id": "lead-42",
    "type": "webinar",
    "occurred_at": AT,
    "webinar_id": "web-9",
    "status": "attended",
    "minutes_watched": 37.5,
}
FIRMOGRAPHICS = {
    "lead_id": "lead-42",
    "type": "firmographics",
    "company": "Acme GmbH",
    "employees": 1200,
    "industry": "software",
    "title": None,
    "country": "DE",
    "updated_at": AT,
}
SCORE = {
    "type": "mql_crossed",
    "event_id": "score-1",
    "lead_id": "lead-42",
    "occurred_at": AT,
    "score": 72.5,
    "previous_score": 64.0,
    "fit": 30.0,
    "engagement": 42.5,
    "is_mql": True,
    "direction": "up",
    "threshold": 70.0,
    "rules_version": "2024-05-01",
    "source_event_id": "ev-3",
    "reason": {
        "rule": "webinar_attended",
        "points": 10.0,
        "fit_rules": [],
        "points_applied": 8.5,
        "capped": True,
        "decay": 1.5,
        "late": False,
    },
}
INPUT_RECORDS = [PAGE_VIEW, CONTENT_DOWNLOAD, WEBINAR, FIRMOGRAPHICS]

# Avro's published CRC-64-AVRO test vectors (share/test/data/schema-tests.txt in
# the Apache Avro repository), given there as signed 64-bit integers.
RABIN_VECTORS = {
    '"null"': 7195948357588979594,
    '"boolean"': -6970731678124411036,
    '"int"': 8247732601305521295,
    '"long"': -3434872931120570953,
    '"string"': -8142146995180207161,
}


def rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification defines it, written for the tests."""
    empty = 0xC15D213AA4D7A795
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (empty if value & 1 else 0)
        table.append(value)

    result = empty
    for byte in data:
        result = (result >> 8) ^ table[(result ^ byte) & 0xFF]
    return result


def newest(full_name: str) -> SchemaVersion:
    version = CATALOG.newest(full_name)
    assert version is not None
    return version


def version_of(full_name: str, number: int) -> SchemaVersion:
    for writer, _ in CATALOG.pairs().values():
        if writer.full_name == full_name and writer.version == number:
            return writer
    raise AssertionError(f"{full_name} v{number} is not in the catalog")


def single_object(version: SchemaVersion, record: Mapping[str, Any]) -> bytes:
    """A message built by hand, so the codec's own encoder is not under test."""
    out = io.BytesIO()
    out.write(SINGLE_OBJECT_MARKER + version.fingerprint)
    schemaless_writer(out, version.parsed, record)
    return out.getvalue()


def write_schema(directory: Path, name: str, fields: list[dict[str, Any]]) -> None:
    schema = {"type": "record", "name": "Thing", "namespace": "t", "fields": fields}
    (directory / name).write_text(json.dumps(schema), encoding="utf-8")


# Fingerprints and header


@pytest.mark.parametrize(("schema", "signed"), RABIN_VECTORS.items())
def test_independent_rabin_matches_published_vectors(schema: str, signed: int) -> None:
    assert rabin_fingerprint(schema.encode()) == signed % 2**64


@pytest.mark.parametrize("schema", RABIN_VECTORS)
def test_fastavro_hex_lists_little_endian_bytes(schema: str) -> None:
    expected = rabin_fingerprint(schema.encode()).to_bytes(8, "little")

    assert bytes.fromhex(fingerprint(schema, "CRC-64-AVRO")) == expected


def test_int_fingerprint_bytes_are_least_significant_first() -> None:
    # 8247732601305521295 is 0x7275D51A3F395C8F.
    expected = bytes([0x8F, 0x5C, 0x39, 0x3F, 0x1A, 0xD5, 0x75, 0x72])

    assert rabin_fingerprint(b'"int"').to_bytes(8, "little") == expected


def test_every_catalog_fingerprint_matches_independent_rabin() -> None:
    for writer, _ in CATALOG.pairs().values():
        raw = json.loads(writer.path.read_text(encoding="utf-8"))
        canonical = to_parsing_canonical_form(raw).encode()

        assert writer.fingerprint == rabin_fingerprint(canonical).to_bytes(8, "little")


@pytest.mark.parametrize("record", INPUT_RECORDS, ids=lambda r: str(r["type"]))
def test_encoded_header_is_marker_then_writer_fingerprint(
    record: dict[str, Any],
) -> None:
    value = INPUTS.encode(record)

    assert value[:2] == b"\xc3\x01"
    assert HEADER_BYTES == 10
    writer = CATALOG.lookup(value[2:10])
    assert writer is not None
    assert writer[0].fingerprint == value[2:10]


# Catalog


def test_catalog_knows_every_record_and_its_newest_version() -> None:
    assert CATALOG.names == (
        "leadscorer.events.ContentDownload",
        "leadscorer.events.Firmographics",
        "leadscorer.events.PageView",
        "leadscorer.events.WebinarEvent",
        "leadscorer.scores.LeadScoreEvent",
    )
    assert newest("leadscorer.events.PageView").version == 2
    assert len(CATALOG.pairs()) == 6


def test_old_page_view_reads_with_newest_schema() -> None:
    old = version_of("leadscorer.events.PageView", 1)

    pair = CATALOG.lookup(old.fingerprint)

    assert pair is not None
    assert pair[0] is old
    assert pair[1] is newest("leadscorer.events.PageView")


def test_default_directory_is_the_package_schemas_link() -> None:
    assert DEFAULT_SCHEMAS_DIR.name == "schemas"
    assert (DEFAULT_SCHEMAS_DIR / "page_view.v2.avsc").is_file()


def test_every_schema_field_has_a_doc() -> None:
    def undocumented(schema: Any, path: str) -> list[str]:
        if not isinstance(schema, dict):
            nested = schema if isinstance(schema, list) else []
            return [gap for item in nested for gap in undocumented(item, path)]
        gaps = [] if schema.get("type") != "record" or "doc" in schema else [path]
        for field in schema.get("fields", []):
            where = f"{path}.{field['name']}"
            gaps += [] if "doc" in field else [where]
            gaps += undocumented(field["type"], where)
        return gaps

    for path in sorted(DEFAULT_SCHEMAS_DIR.glob("*.avsc")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert undocumented(raw, path.name) == []


def test_catalog_rejects_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SchemaCatalog.load(tmp_path)

    assert caught.value.field == "schemas_dir"


def test_catalog_rejects_file_name_without_version(tmp_path: Path) -> None:
    write_schema(tmp_path, "thing.avsc", [{"name": "a", "type": "string"}])

    with pytest.raises(ConfigError, match=r"thing\.avsc: name must be name\.vN"):
        SchemaCatalog.load(tmp_path)


def test_catalog_rejects_two_files_with_one_version(tmp_path: Path) -> None:
    write_schema(tmp_path, "thing.v1.avsc", [{"name": "a", "type": "string"}])
    write_schema(tmp_path, "other.v1.avsc", [{"name": "b", "type": "string"}])

    with pytest.raises(ConfigError, match=r"are both t\.Thing v1"):
        SchemaCatalog.load(tmp_path)


def test_catalog_rejects_non_record(tmp_path: Path) -> None:
    (tmp_path / "thing.v1.avsc").write_text('"string"', encoding="utf-8")

    with pytest.raises(ConfigError, match="must be an Avro record"):
        SchemaCatalog.load(tmp_path)


def test_catalog_rejects_invalid_schema(tmp_path: Path) -> None:
    write_schema(tmp_path, "thing.v1.avsc", [{"name": "a", "type": "no_such"}])

    with pytest.raises(ConfigError, match=r"thing\.v1\.avsc"):
        SchemaCatalog.load(tmp_path)


def test_catalog_rejects_bad_json(tmp_path: Path) -> None:
    (tmp_path / "thing.v1.avsc").write_text("{", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"thing\.v1\.avsc"):
        SchemaCatalog.load(tmp_path)


# Avro round trips


@pytest.mark.parametrize("record", INPUT_RECORDS, ids=lambda r: str(r["type"]))
def test_avro_input_round_trip(record: dict[str, Any]) -> None:
    decoded = INPUTS.decode(INPUTS.encode(record))

    assert decoded == record


def test_avro_score_round_trip() -> None:
    decoded = SCORES.decode(SCORES.encode(SCORE))

    assert decoded == SCORE


def test_avro_score_without_reason_or_direction() -> None:
    record = {**SCORE, "type": "score_changed", "direction": None, "reason": None}

    decoded = SCORES.decode(SCORES.encode(record))

    assert decoded["reason"] is None
    assert decoded["direction"] is None
    assert decoded["score"] == 72.5


def test_avro_accepts_epoch_ms_and_decodes_aware_utc_datetime() -> None:
    decoded = INPUTS.decode(INPUTS.encode({**PAGE_VIEW, "occurred_at": AT_MS}))

    assert decoded["occurred_at"] == AT
    assert decoded["occurred_at"].utcoffset() == timedelta(0)


def test_avro_fills_defaults_left_out_on_encode() -> None:
    record = {key: value for key, value in WEBINAR.items() if key != "minutes_watched"}

    decoded = INPUTS.decode(INPUTS.encode({**record, "status": "registered"}))

    assert decoded["minutes_watched"] == 0.0


def test_avro_passes_nan_and_infinity_through() -> None:
    nan = INPUTS.decode(INPUTS.encode({**WEBINAR, "minutes_watched": math.nan}))
    inf = INPUTS.decode(INPUTS.encode({**WEBINAR, "minutes_watched": math.inf}))

    assert math.isnan(nan["minutes_watched"])
    assert inf["minutes_watched"] == math.inf


def test_avro_encodes_with_newest_page_view_schema() -> None:
    value = INPUTS.encode(PAGE_VIEW)

    assert value[2:10] == newest("leadscorer.events.PageView").fingerprint


def test_v1_page_view_decodes_with_new_fields_null() -> None:
    old = version_of("leadscorer.events.PageView", 1)
    record = {key: PAGE_VIEW[key] for key in ("event_id", "lead_id", "type", "url")}
    value = single_object(old, {**record, "occurred_at": AT_MS})

    decoded = INPUTS.decode(value)

    assert decoded == {**record, "occurred_at": AT, "category": None, "referrer": None}


def test_incompatible_versions_are_reported(tmp_path: Path) -> None:
    write_schema(tmp_path, "thing.v1.avsc", [{"name": "a", "type": "string"}])
    write_schema(tmp_path, "thing.v2.avsc", [{"name": "a", "type": "int"}])
    catalog = SchemaCatalog.load(tmp_path)
    old = next(w for w, _ in catalog.pairs().values() if w.version == 1)

    with pytest.raises(InvalidRecord) as caught:
        AvroCodec(catalog).decode(single_object(old, {"a": "x"}))

    assert caught.value.reason == "incompatible_schema"


# Avro decode failures


def test_wrong_marker_is_bad_marker() -> None:
    value = b"\xc3\x02" + INPUTS.encode(PAGE_VIEW)[2:]

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(value)

    assert caught.value.reason == "bad_marker"


@pytest.mark.parametrize("after_marker", [0, 1, 7])
def test_marker_without_whole_fingerprint_is_too_short(after_marker: int) -> None:
    value = SINGLE_OBJECT_MARKER + bytes(after_marker)

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(value)

    assert caught.value.reason == "bad_marker"
    assert caught.value.message == (
        f"too short: {after_marker} of the 8 schema fingerprint bytes "
        "after the C3 01 marker"
    )


@pytest.mark.parametrize("value", [b"", b"\xc3", b"\xc3\x02" + bytes(8)])
def test_value_without_marker_says_so(value: bytes) -> None:
    with pytest.raises(InvalidRecord, match="no C3 01 header") as caught:
        INPUTS.decode(value)

    assert caught.value.reason == "bad_marker"


def test_a_json_message_opening_with_a_byte_order_mark_says_so() -> None:
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(b"\xef\xbb\xbf" + JSON.encode(PAGE_VIEW))

    assert caught.value.reason == "bad_json"
    assert caught.value.message == (
        "not JSON: it opens with a byte-order mark (U+FEFF)"
    )


def test_json_sent_to_avro_codec_is_bad_marker() -> None:
    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(JSON.encode(PAGE_VIEW))

    assert caught.value.reason == "bad_marker"


@pytest.mark.parametrize(
    ("sent", "number", "java"),
    [
        ("0011223344556677", "0x7766554433221100", "8603657889541918976"),
        ("00112233445566f7", "0xf766554433221100", "-619714147312856832"),
    ],
)
def test_unknown_fingerprint_names_it_as_sent_and_as_java_prints_it(
    sent: str, number: str, java: str
) -> None:
    value = SINGLE_OBJECT_MARKER + bytes.fromhex(sent) + b"\x00"

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(value)

    assert caught.value.reason == "unknown_schema"
    # The bytes as sent, then the CRC as a number (Java's parsingFingerprint64).
    assert caught.value.message == (
        f"no schema with fingerprint {sent} (bytes as sent; {number}, "
        f"{java} as a Java long)"
    )


@pytest.mark.parametrize("claimed", ["webinar", "firmographics"])
def test_a_record_claiming_another_input_type_than_its_schema_is_bad_value(
    claimed: str,
) -> None:
    value = single_object(
        newest(INPUT_SCHEMAS["page_view"]), {**PAGE_VIEW, "type": claimed}
    )

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(value)

    assert (caught.value.reason, caught.value.field) == ("bad_value", "type")
    assert caught.value.message == (
        f"type {claimed!r} in a record of leadscorer.events.PageView v2, "
        "which is 'page_view'"
    )


def test_a_type_that_is_no_input_type_is_left_to_parse_record() -> None:
    # parse_record refuses it as unknown_type, as on a JSON topic.
    value = single_object(newest(INPUT_SCHEMAS["webinar"]), {**WEBINAR, "type": "x"})

    assert INPUTS.decode(value)["type"] == "x"


def test_a_codec_given_the_records_it_reads_refuses_others_unread() -> None:
    inputs_only = AvroCodec(CATALOG, reads=INPUT_SCHEMAS.values())
    # An output record's header with a body that is no Avro at all: only a
    # codec that reads the body can tell.
    header = SCORES.encode(SCORE)[:HEADER_BYTES]
    value = header + b"\xff" * 64

    with pytest.raises(InvalidRecord, match="LeadScoreEvent v1") as refused:
        inputs_only.decode(value)
    with pytest.raises(InvalidRecord) as read:
        INPUTS.decode(value)

    assert (refused.value.reason, refused.value.field) == ("unknown_type", "type")
    assert read.value.reason == "bad_avro"
    assert inputs_only.decode(INPUTS.encode(PAGE_VIEW)) == INPUTS.decode(
        INPUTS.encode(PAGE_VIEW)
    )


@pytest.mark.parametrize("record", [*INPUT_RECORDS, SCORE], ids=lambda r: r["type"])
def test_truncation_at_every_length(record: dict[str, Any]) -> None:
    value = SCORES.encode(record) if record is SCORE else INPUTS.encode(record)

    for length in range(len(value)):
        with pytest.raises(InvalidRecord) as caught:
            INPUTS.decode(value[:length])

        expected = "bad_marker" if length < HEADER_BYTES else "bad_avro"
        assert caught.value.reason == expected, length


def test_trailing_bytes_are_bad_avro() -> None:
    with pytest.raises(InvalidRecord, match="1 trailing bytes") as caught:
        INPUTS.decode(INPUTS.encode(PAGE_VIEW) + b"\x00")

    assert caught.value.reason == "bad_avro"


def test_invalid_utf8_in_avro_string_is_bad_avro() -> None:
    value = bytearray(INPUTS.encode(CONTENT_DOWNLOAD))
    value[HEADER_BYTES + 1] = 0xFF  # first byte of event_id's text

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(bytes(value))

    assert caught.value.reason == "bad_avro"
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_out_of_range_union_branch_is_bad_avro() -> None:
    version = newest("leadscorer.events.Firmographics")
    value = bytearray(single_object(version, {**FIRMOGRAPHICS, "company": None}))
    company_at = HEADER_BYTES + len(b"\x0elead-42\x1afirmographics")
    value[company_at] = 0x08  # branch 4 of a two-branch union

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(bytes(value))

    assert caught.value.reason == "bad_avro"


def test_a_huge_timestamp_is_out_of_range_not_a_corrupt_body() -> None:
    version = newest("leadscorer.events.ContentDownload")
    huge_ms = 2**62

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(
            single_object(version, {**CONTENT_DOWNLOAD, "occurred_at": huge_ms})
        )

    assert (caught.value.reason, caught.value.field) == (
        "timestamp_out_of_range",
        "occurred_at",
    )


VALID_MESSAGES = [INPUTS.encode(r) for r in INPUT_RECORDS] + [SCORES.encode(SCORE)]


@settings(max_examples=400)
@given(
    message=st.sampled_from(VALID_MESSAGES),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_byte_flips_raise_only_invalid_record(
    message: bytes, flips: list[tuple[int, int]]
) -> None:
    value = bytearray(message)
    for position, byte in flips:
        value[position % len(value)] = byte

    try:
        decoded = INPUTS.decode(bytes(value))
    except InvalidRecord as exc:
        assert exc.reason in {"bad_marker", "unknown_schema", "bad_avro"}
    else:
        assert isinstance(decoded, dict)


@settings(max_examples=400)
@given(
    message=st.sampled_from(VALID_MESSAGES),
    body=st.binary(max_size=200),
)
def test_random_body_behind_valid_header_raises_only_invalid_record(
    message: bytes, body: bytes
) -> None:
    try:
        decoded = INPUTS.decode(message[:HEADER_BYTES] + body)
    except InvalidRecord as exc:
        assert exc.reason == "bad_avro"
    else:
        assert isinstance(decoded, dict)


# Avro encode failures


def test_missing_field_is_unencodable() -> None:
    record = {key: value for key, value in PAGE_VIEW.items() if key != "url"}

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.encode(record)

    assert caught.value.reason == "unencodable"
    assert "leadscorer.events.PageView v2" in caught.value.message


def test_extra_field_is_unencodable() -> None:
    with pytest.raises(InvalidRecord) as caught:
        INPUTS.encode({**PAGE_VIEW, "email": "someone@example.com"})

    assert caught.value.reason == "unencodable"
    assert "example.com" not in caught.value.message


def test_wrong_type_is_unencodable() -> None:
    with pytest.raises(InvalidRecord) as caught:
        SCORES.encode({**SCORE, "score": "high"})

    assert caught.value.reason == "unencodable"
    assert "high" not in caught.value.message


def test_unknown_input_type_is_unencodable() -> None:
    with pytest.raises(InvalidRecord) as caught:
        INPUTS.encode({**PAGE_VIEW, "type": "email_open"})

    assert caught.value.reason == "unencodable"
    assert caught.value.field == "type"


def test_naive_datetime_is_unencodable() -> None:
    with pytest.raises(InvalidRecord) as caught:
        INPUTS.encode({**PAGE_VIEW, "occurred_at": datetime(2024, 5, 1, 12)})

    assert caught.value.reason == "unencodable"
    assert caught.value.field == "occurred_at"


# JSON


@pytest.mark.parametrize("record", INPUT_RECORDS, ids=lambda r: str(r["type"]))
def test_json_round_trip_with_rfc3339_times(record: dict[str, Any]) -> None:
    field = "updated_at" if record["type"] == "firmographics" else "occurred_at"

    decoded = JSON.decode(JSON.encode(record))

    assert decoded == {**record, field: "2024-05-01T12:00:00.123Z"}


def test_json_score_round_trip_from_epoch_ms() -> None:
    decoded = JSON.decode(JSON.encode({**SCORE, "occurred_at": AT_MS}))

    assert decoded == {**SCORE, "occurred_at": format_time(AT_MS)}


def test_json_keeps_timestamp_strings_and_non_ascii_text() -> None:
    record = {
        **FIRMOGRAPHICS,
        "updated_at": "2024-05-01T12:00:00Z",
        "company": "Zürich AG",
    }

    value = JSON.encode(record)

    assert "Zürich".encode() in value
    assert JSON.decode(value) == record


def test_json_datetime_to_ms_is_exact() -> None:
    # 1074144808.666 * 1000 is 1074144808665.9999 in floating point.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1074144808666)

    decoded = JSON.decode(JSON.encode({**PAGE_VIEW, "occurred_at": moment}))

    assert decoded["occurred_at"] == "2004-01-15T05:33:28.666Z"


@pytest.mark.parametrize(
    "value",
    [b'{"minutes_watched": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"NaN"],
)
def test_json_nan_and_infinity_literals_are_bad_json(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(value)

    assert caught.value.reason == "bad_json"


@pytest.mark.parametrize(
    "value",
    [b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}', b"\xc3", b'{"a": "\xc3\x28"}'],
)
def test_json_invalid_utf8_is_bad_json(value: bytes) -> None:
    with pytest.raises(InvalidRecord, match="not UTF-8") as caught:
        JSON.decode(value)

    assert caught.value.reason == "bad_json"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"{",
        b'{"a": 1,}',
        b'{"a": 1} {"b": 2}',
        b"\xef\xbb\xbf{}",
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
        b"[" * 100_000,
    ],
)
def test_json_malformed_is_bad_json(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(value)

    assert caught.value.reason == "bad_json"


@pytest.mark.parametrize(
    "value",
    [
        b'{"lead_id": "a", "type": "page_view", "lead_id": "b"}',
        b'{"lead_id": "a", "lead_id": "a"}',
        b'{"why": {"rule": "x", "rule": "y"}}',
        b'{"\\u0061": 1, "a": 2}',
        b'{"jane@example.com": 1, "jane@example.com": 2}',
    ],
)
def test_json_repeated_key_is_bad_json_without_quoting_the_key(value: bytes) -> None:
    # json would keep the last value silently: which lead was meant is a guess.
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(value)

    assert caught.value.reason == "bad_json"
    # A key is any text of the record: replay prints the message.
    assert caught.value.message == "a JSON object repeats one of its keys"
    assert caught.value.field is None


def test_json_same_key_in_different_objects_is_fine() -> None:
    value = b'{"a": {"x": 1}, "b": {"x": 2}, "x": 3}'

    assert JSON.decode(value) == {"a": {"x": 1}, "b": {"x": 2}, "x": 3}


# The words are json's own, and Python 3.13 names a trailing comma.
TRAILING_COMMA = (
    "not JSON: Illegal trailing comma before end of object: column 8"
    if sys.version_info >= (3, 13)
    else "not JSON: Expecting property name enclosed in double quotes: column 9"
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b'{"a": 1\n', "not JSON: Expecting ',' delimiter: column 8"),
        (b'{"a": 1\r\n', "not JSON: Expecting ',' delimiter: column 8"),
        (b'{"a": 1,}', TRAILING_COMMA),
        (b'{"a": 1} {"b": 2}\n', "not JSON: Extra data: column 10"),
        (b'{"a": 1,\n"b"}\n', "not JSON: Expecting ':' delimiter: line 2 column 4"),
    ],
)
def test_json_error_says_where_without_counting_the_newline(
    value: bytes, message: str
) -> None:
    # replay passes each file line with its newline; json put an error at
    # its end on "line 2", next to the file's own line number.
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(value)

    assert caught.value.message == message


@pytest.mark.parametrize("value", [b"[]", b'"page_view"', b"42", b"null", b"true"])
def test_json_non_object_is_not_an_object(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as caught:
        JSON.decode(value)

    assert caught.value.reason == "not_an_object"


def test_json_escaped_text_that_is_valid_decodes() -> None:
    assert JSON.decode(b'{"a": "caf\\u00e9 \\ud83d\\ude00"}') == {"a": "café 😀"}


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_json_random_bytes_raise_only_invalid_record(value: bytes) -> None:
    try:
        decoded = JSON.decode(value)
    except InvalidRecord as exc:
        assert exc.reason in {"bad_json", "not_an_object"}
    else:
        assert isinstance(decoded, dict)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"score": math.nan}, None),
        ({"score": math.inf}, None),
        ({"reason": object()}, None),
        ({"lead_id": "\ud800"}, None),
        ({"occurred_at": datetime(2024, 5, 1)}, "occurred_at"),
        ({"occurred_at": 1.5}, "occurred_at"),
        ({"occurred_at": True}, "occurred_at"),
        ({"occurred_at": 10**400}, "occurred_at"),
        ({"occurred_at": 2**62}, "occurred_at"),
        ({"occurred_at": -(2**62)}, "occurred_at"),
    ],
)
def test_json_unencodable(change: dict[str, Any], field: str | None) -> None:
    with pytest.raises(InvalidRecord) as caught:
        JSON.encode({**SCORE, **change})

    assert caught.value.reason == "unencodable"
    assert caught.value.field == field


# make_codec


def test_make_codec_builds_each_format() -> None:
    avro = make_codec("avro", catalog=CATALOG, schema_name=SCORE_SCHEMA)

    assert isinstance(avro, AvroCodec)
    assert isinstance(make_codec("json"), JsonCodec)
    assert avro.decode(avro.encode(SCORE)) == SCORE


def test_make_codec_loads_default_catalog() -> None:
    avro = make_codec("avro")

    assert avro.decode(INPUTS.encode(PAGE_VIEW)) == PAGE_VIEW


def test_make_codec_rejects_unknown_format() -> None:
    with pytest.raises(ConfigError) as caught:
        make_codec("xml", catalog=CATALOG)  # type: ignore[arg-type]

    assert caught.value.field == "format"


def test_unknown_schema_name_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"leadscorer\.scores\.Nope") as caught:
        AvroCodec(CATALOG, "leadscorer.scores.Nope")

    assert caught.value.field == "schema_name"


@pytest.mark.parametrize("at_ms", [253_402_300_800_000, -62_135_596_800_001])
def test_an_avro_time_past_what_a_date_holds_is_out_of_range(at_ms: int) -> None:
    # 10000-01-01T00:00:00Z, and a millisecond before 0001-01-01.
    version = version_of("leadscorer.events.PageView", 1)
    value = single_object(version, {**PAGE_VIEW, "occurred_at": at_ms})

    with pytest.raises(InvalidRecord) as caught:
        INPUTS.decode(value)

    assert caught.value.reason == "timestamp_out_of_range"
    assert caught.value.field == "occurred_at"
    assert caught.value.message.startswith("occurred_at of ")
    assert caught.value.message.endswith(" is outside the years 1 to 9999")
