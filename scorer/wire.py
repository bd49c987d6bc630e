"""How records look on Kafka topics, and how to turn them into mappings and back.

Two wire formats are supported. Avro uses the single-object encoding of the Avro
specification: a marker, the fingerprint of the writer's schema, then the binary
body. The reader looks the fingerprint up in a `SchemaCatalog` and resolves the
writer's schema against the newest version of the same record, so producers can
move to a new schema version at their own pace. JSON is a UTF-8 object with
timestamps as RFC 3339 strings, for producers that cannot speak Avro.

Both codecs turn every decode failure into `InvalidRecord` with a stable reason
code, so the caller can route the message to the dead-letter topic and count it.
"""

import io
import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import (
    SchemaParseException,
    fingerprint,
    parse_schema,
    to_parsing_canonical_form,
)

from scorer.errors import ConfigError, InvalidRecord
from scorer.events import format_time, parse_time

logger = logging.getLogger(__name__)

# Avro specification, "Single object encoding": two marker bytes (format version
# 1), then the 8-byte CRC-64-AVRO fingerprint of the writer schema, then the body.
SINGLE_OBJECT_MARKER = b"\xc3\x01"
FINGERPRINT_BYTES = 8
HEADER_BYTES = len(SINGLE_OBJECT_MARKER) + FINGERPRINT_BYTES

DEFAULT_SCHEMAS_DIR = Path(__file__).with_name("schemas")
SCORE_SCHEMA = "leadscorer.scores.LeadScoreEvent"

# An input record names its kind in `type`; this is the Avro record it is
# written as when no schema name is given to the codec.
INPUT_SCHEMAS: Mapping[str, str] = {
    "page_view": "leadscorer.events.PageView",
    "content_download": "leadscorer.events.ContentDownload",
    "webinar": "leadscorer.events.WebinarEvent",
    "firmographics": "leadscorer.events.Firmographics",
}

KIND_OF_SCHEMA = {name: kind for kind, name in INPUT_SCHEMAS.items()}

# Top-level fields that hold a moment in time: timestamp-millis in Avro, an
# RFC 3339 string in JSON.
TIMESTAMP_FIELDS = ("occurred_at", "updated_at")

_FILE_NAME = re.compile(r"[a-z][a-z0-9_]*\.v(?P<version>[1-9][0-9]*)\.avsc")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# JSON's whitespace (RFC 8259, section 2); str.rstrip() alone takes more.
_JSON_WHITESPACE = " \t\n\r"

# What fastavro raises on a truncated or corrupt body: EOFError when a length
# runs past the end, UnicodeDecodeError (a ValueError) for bad UTF-8,
# IndexError for an out-of-range union branch, OverflowError for a timestamp
# outside what Python's datetime holds (caught first, for its own reason).
# An over-long varint (more than the 10 bytes a 64-bit long takes) raises
# nothing: fastavro 1.13 reads it and keeps the low 64 bits, so the value is
# checked like any other.
# StopIteration has not been seen from fastavro 1.13 but is caught anyway: one
# escaping into a generator would surface as a RuntimeError far from here.
_CORRUPT_BODY_ERRORS = (EOFError, StopIteration, ValueError, IndexError, OverflowError)

# What fastavro's writer raises for a record that does not fit the schema:
# TypeError or ValueError for a wrong type or a missing or extra field,
# OverflowError for a long out of range, AttributeError or KeyError for a value
# that is not a mapping where a record is expected.
_UNENCODABLE_ERRORS = (TypeError, ValueError, OverflowError, AttributeError, KeyError)


class Codec(Protocol):
    """Turns a Kafka message value into a mapping, and a mapping into one."""

    def decode(self, value: bytes) -> dict[str, Any]:
        """The record held by `value`; raises `InvalidRecord` if there is none."""
        ...

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """`record` as a message value; raises `InvalidRecord` if it cannot be."""
        ...


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One parsed `.avsc` file of the catalog."""

    full_name: str
    version: int
    path: Path
    fingerprint: bytes
    """CRC-64-AVRO of the Parsing Canonical Form, in wire (little-endian) order."""
    parsed: dict[str, Any]
    """The schema as returned by `fastavro.parse_schema`, ready for the codec."""

    @property
    def label(self) -> str:
        return f"{self.full_name} v{self.version}"


class SchemaCatalog:
    """Every schema version the scorer knows, by fingerprint and by record name.

    A fingerprint maps to its writer schema and to the reader schema it is read
    with: the newest version of the same record. Schemas are parsed and
    fingerprinted once, here; the codecs only look them up.
    """

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        ordered = sorted(versions, key=lambda item: (item.full_name, item.version))
        self._newest = _newest_by_name(ordered)

        # Versions that differ only in `doc` share a fingerprint; ascending order
        # lets the newest of them win, and it reads with itself either way.
        self._by_fingerprint = {
            item.fingerprint: (item, self._newest[item.full_name]) for item in ordered
        }

    @classmethod
    def load(cls, directory: Path = DEFAULT_SCHEMAS_DIR) -> "SchemaCatalog":
        """Parse every `name.vN.avsc` file in `directory`."""
        paths = sorted(directory.glob("*.avsc")) if directory.is_dir() else []
        if not paths:
            raise ConfigError("schemas_dir", f"no .avsc files in {directory}")

        catalog = cls(_read_schema_file(path) for path in paths)
        logger.info(
            "schemas loaded count=%d records=%d dir=%s",
            len(paths),
            len(catalog.names),
            directory,
        )
        return catalog

    @property
    def names(self) -> tuple[str, ...]:
        """The full names of the records in the catalog, sorted."""
        return tuple(self._newest)

    def newest(self, full_name: str) -> SchemaVersion | None:
        """The highest version of the record `full_name`, if the catalog has it."""
        return self._newest.get(full_name)

    def lookup(self, fp: bytes) -> tuple[SchemaVersion, SchemaVersion] | None:
        """The (writer, reader) versions for a fingerprint in wire order."""
        return self._by_fingerprint.get(fp)

    def pairs(self) -> Mapping[bytes, tuple[SchemaVersion, SchemaVersion]]:
        """Every fingerprint with its (writer, reader) versions."""
        return dict(self._by_fingerprint)


class AvroCodec:
    """Avro single-object encoding, resolved against the catalog's newest schemas.

    With `schema_name`, every record is encoded with the newest version of that
    record (the output topic uses `SCORE_SCHEMA`). Without it, a record is
    encoded with the input schema its `type` names (see `INPUT_SCHEMAS`).
    Decoding accepts any schema in the catalog, or with `reads` the records
    of those full names only (an input topic's codec: `INPUT_SCHEMAS`).
    """

    def __init__(
        self,
        catalog: SchemaCatalog,
        schema_name: str | None = None,
        reads: Collection[str] | None = None,
    ) -> None:
        # With `reads`, records of other schemas are refused by their header
        # alone: on an input topic an output record (whose fit_rules array
        # can hold a million items) would cost a whole decode before its
        # type is refused.
        readable = None if reads is None else frozenset(reads)
        # Keyed by the whole header, so one dict lookup checks the marker and
        # finds what read_body needs, worked out once rather than per record.
        self._readers: dict[bytes, _Reading] = {}
        self._not_read: dict[bytes, str] = {}
        for fp, (writer, reader) in catalog.pairs().items():
            header = SINGLE_OBJECT_MARKER + fp
            if readable is None or writer.full_name in readable:
                self._readers[header] = _reading(writer, reader)
            else:
                self._not_read[header] = writer.label
        self._fixed = None if schema_name is None else _required(catalog, schema_name)
        self._by_type = {
            kind: version
            for kind, name in INPUT_SCHEMAS.items()
            if (version := catalog.newest(name)) is not None
        }
        targets = [*self._by_type.values(), *([self._fixed] if self._fixed else [])]
        self._record_unions = {
            t.fingerprint: unions
            for t in targets
            if (unions := _record_union_fields(t.parsed))
        }

    def decode(self, value: bytes) -> dict[str, Any]:
        reading = self._readers.get(value[:HEADER_BYTES])
        if reading is None:
            _reject_header(value, self._not_read)
        writer, resolve_to, writer_label, reader_label, kind = reading
        record = read_body(
            value, HEADER_BYTES, writer, resolve_to, writer_label, reader_label
        )

        if kind is not None and record.get("type") != kind:
            check_kind(record, kind, writer_label)
        return record

    def encode(self, record: Mapping[str, Any]) -> bytes:
        target = self._target(record)
        if not _times_ready(record):
            record = _times_as_ms(record)
            for field in TIMESTAMP_FIELDS:
                _reject_naive(field, record.get(field))
        unions = self._record_unions.get(target.fingerprint)
        if unions:
            record = _name_union_records(record, unions)

        out = io.BytesIO()
        out.write(SINGLE_OBJECT_MARKER + target.fingerprint)
        try:
            # Strict, so a misspelt or stray field fails here instead of
            # silently vanishing; fields with a default may be left out.
            schemaless_writer(out, target.parsed, record, strict_allow_default=True)
        except _UNENCODABLE_ERRORS as exc:
            # The cause may quote the offending value, so it stays in the chain
            # and out of the message.
            message = f"record does not fit {target.label}: {type(exc).__name__}"
            raise InvalidRecord("unencodable", message) from exc
        return out.getvalue()

    def _target(self, record: Mapping[str, Any]) -> SchemaVersion:
        if self._fixed is not None:
            return self._fixed

        kind = record.get("type")
        target = self._by_type.get(kind) if isinstance(kind, str) else None
        if target is None:
            message = f"no Avro schema for records of type {kind!r}"
            raise InvalidRecord("unencodable", message, "type")
        return target


class JsonCodec:
    """A UTF-8 JSON object per message; timestamps are RFC 3339 strings.

    Decoding is strict where Python's `json` is lenient: NaN and Infinity
    literals (not JSON, RFC 8259 section 6), escaped lone surrogates (not
    encodable as UTF-8, so they would fail later in Redis or Avro) and any top
    level other than an object are rejected.
    """

    def decode(self, value: bytes) -> dict[str, Any]:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"not UTF-8: {exc.reason} at byte {exc.start}"
            raise InvalidRecord("bad_json", message) from exc

        try:
            data = _JSON_DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise InvalidRecord("bad_json", _json_problem(text, exc)) from exc
        except (ValueError, RecursionError) as exc:
            raise InvalidRecord("bad_json", f"not JSON: {exc}") from exc

        if not isinstance(data, dict):
            kind = type(data).__name__
            raise InvalidRecord("not_an_object", f"JSON top level is a {kind}")
        if "\\u" in text:
            _reject_lone_surrogates(data)
        return data

    def encode(self, record: Mapping[str, Any]) -> bytes:
        document = dict(record)
        for field in TIMESTAMP_FIELDS:
            value = document.get(field)
            if value is not None and not isinstance(value, str):
                document[field] = _rfc3339_text(field, value)

        try:
            return _JSON_ENCODER.encode(document).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            # As in AvroCodec.encode: the cause may quote the value.
            message = f"record is not encodable as JSON: {type(exc).__name__}"
            raise InvalidRecord("unencodable", message) from exc


def make_codec(
    fmt: Literal["avro", "json", "confluent_avro"],
    *,
    catalog: SchemaCatalog | None = None,
    schema_name: str | None = None,
    reads: Collection[str] | None = None,
) -> Codec:
    """The codec for a wire format; Avro loads the default catalog if none given.

    `schema_name` picks the Avro record to encode with; JSON ignores it.
    """
    if fmt == "json":
        return JsonCodec()
    if fmt == "avro":
        chosen = SchemaCatalog.load() if catalog is None else catalog
        return AvroCodec(chosen, schema_name, reads)
    if fmt == "confluent_avro":
        # It needs a registry client and the topic's subject as well.
        message = "confluent_avro codecs are built by scorer.confluent_wire"
        raise ConfigError("format", message)
    raise ConfigError("format", f"unknown wire format {fmt!r}; use avro or json")


def _read_schema_file(path: Path) -> SchemaVersion:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise ConfigError("schemas_dir", f"{path.name}: name must be name.vN.avsc")

    raw = _read_json(path)
    try:
        parsed = cast(dict[str, Any], parse_schema(raw))
        canonical = to_parsing_canonical_form(raw)
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise ConfigError("schemas_dir", f"{path.name}: {exc}") from exc

    return SchemaVersion(
        full_name=parsed["name"],
        version=int(match["version"]),
        path=path,
        fingerprint=wire_fingerprint(canonical),
        parsed=parsed,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("schemas_dir", f"{path.name}: {exc}") from exc

    # The codecs hand back the decoded value as a mapping, so only records fit.
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ConfigError("schemas_dir", f"{path.name}: must be an Avro record")
    return raw


def wire_fingerprint(canonical: str) -> bytes:
    # The spec asks for the 64-bit Rabin fingerprint in little-endian order (as
    # Java's SchemaNormalization.fingerprint writes it). fastavro's hex string
    # already lists the bytes in that order, least significant first (it calls
    # int.to_bytes(8, "little")), so fromhex yields the wire bytes.
    # tests/unit/test_wire.py checks this against an independent implementation.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _newest_by_name(ordered: list[SchemaVersion]) -> dict[str, SchemaVersion]:
    newest: dict[str, SchemaVersion] = {}
    for item in ordered:
        current = newest.get(item.full_name)
        if current is not None and current.version == item.version:
            message = f"{item.path.name} and {current.path.name} are both {item.label}"
            raise ConfigError("schemas_dir", message)
        newest[item.full_name] = item
    return newest


def _required(catalog: SchemaCatalog, schema_name: str) -> SchemaVersion:
    version = catalog.newest(schema_name)
    if version is None:
        known = ", ".join(catalog.names)
        message = f"no schema named {schema_name!r} in the catalog ({known})"
        raise ConfigError("schema_name", message)
    return version


# read_body's writer schema, the reader schema to resolve to (None: the
# same), the two schemas' labels, and the `type` an input schema's records
# carry (None for the others; see check_kind).
_Reading = tuple[dict[str, Any], dict[str, Any] | None, str, str, str | None]


def _reading(writer: SchemaVersion, reader: SchemaVersion) -> _Reading:
    """read_body's schemas and labels for one writer schema, and its kind."""
    resolve_to = None if reader is writer else reader.parsed
    kind = KIND_OF_SCHEMA.get(writer.full_name)
    return writer.parsed, resolve_to, writer.label, reader.label, kind


def _reject_header(value: bytes, not_read: Mapping[bytes, str]) -> NoReturn:
    label = not_read.get(value[:HEADER_BYTES])
    if label is not None:
        message = f"written with {label}, which this topic does not carry"
        raise InvalidRecord("unknown_type", message, "type")
    if value[:2] != SINGLE_OBJECT_MARKER:
        message = "not Avro single-object encoding (no C3 01 header)"
        raise InvalidRecord("bad_marker", message)
    if len(value) < HEADER_BYTES:
        # Still bad_marker: without the whole fingerprint there is no header.
        after = len(value) - len(SINGLE_OBJECT_MARKER)
        message = (
            f"too short: {after} of the {FINGERPRINT_BYTES} schema fingerprint "
            "bytes after the C3 01 marker"
        )
        raise InvalidRecord("bad_marker", message)

    # Shown in wire order, the order fastavro and the Java tools print it in,
    # and as the number Java's parsingFingerprint64 returns: in hex, and as
    # Java prints that long (signed).
    wire = bytes(value[2:HEADER_BYTES])
    number = int.from_bytes(wire, "little")
    signed = int.from_bytes(wire, "little", signed=True)
    message = (
        f"no schema with fingerprint {wire.hex()} (bytes as sent; 0x{number:016x}, "
        f"{signed} as a Java long)"
    )
    raise InvalidRecord("unknown_schema", message)


def check_kind(record: Mapping[str, Any], kind: str, writer_label: str) -> None:
    """Refuse a record whose `type` is another input type than its schema's.

    A PageView saying "webinar" would otherwise be refused for lacking a
    webinar_id, a field no PageView has. A `type` that is no input type at
    all is left to `parse_record`, which refuses it as `unknown_type` on
    every topic alike.
    """
    found = record.get("type")
    if found != kind and found in INPUT_SCHEMAS:
        message = f"type {found!r} in a record of {writer_label}, which is {kind!r}"
        raise InvalidRecord("bad_value", message, "type")


def read_body(
    value: bytes,
    start: int,
    writer: Any,
    reader: Any | None,
    writer_label: str,
    reader_label: str,
) -> dict[str, Any]:
    """The Avro body of `value` from byte `start`: written by the parsed schema
    `writer`, resolved to `reader` (None: read as written).

    Whatever stops the reading is an `InvalidRecord`, for the dead letters.
    """
    # BytesIO shares the bytes object rather than copying it; seeking past
    # the header is cheaper than slicing.
    body = io.BytesIO(value)
    body.seek(start)
    try:
        record = schemaless_reader(body, writer, reader)
    except SchemaResolutionError as exc:
        message = f"{writer_label} cannot be read as {reader_label}"
        raise InvalidRecord("incompatible_schema", message) from exc
    except OverflowError as exc:
        # fastavro makes a datetime of a timestamp-millis, which holds the
        # years 1 to 9999 only; the body itself may be sound.
        field = _timestamp_field(writer)
        where = field or "a timestamp"
        message = f"{where} of {writer_label} is outside the years 1 to 9999"
        raise InvalidRecord("timestamp_out_of_range", message, field) from exc
    except _CORRUPT_BODY_ERRORS as exc:
        message = f"corrupt body of {writer_label}: {_describe(exc)}"
        raise InvalidRecord("bad_avro", message) from exc

    extra = len(value) - body.tell()
    if extra:
        message = f"{extra} trailing bytes after the body of {writer_label}"
        raise InvalidRecord("bad_avro", message)
    return cast(dict[str, Any], record)


def _timestamp_field(parsed: Any) -> str | None:
    """The one time field of a record schema, if it has one."""
    fields = parsed.get("fields", []) if isinstance(parsed, Mapping) else []
    names = [f["name"] for f in fields if f["name"] in TIMESTAMP_FIELDS]
    return names[0] if len(names) == 1 else None


def _describe(exc: Exception) -> str:
    # EOFError from fastavro often has an empty message; the type still helps.
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _times_ready(record: Mapping[str, Any]) -> bool:
    """Whether every time is already fit for fastavro: no string, no naive time.

    True for every output event, so the checks that would change or refuse
    the record can be skipped with a single look at each field.
    """
    for field in TIMESTAMP_FIELDS:
        value = record.get(field)
        if isinstance(value, str):
            return False
        if isinstance(value, datetime) and value.tzinfo is None:
            return False
    return True


def _times_as_ms(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """RFC 3339 strings (the JSON form of a record) as epoch ms for Avro."""
    strings = [f for f in TIMESTAMP_FIELDS if isinstance(record.get(f), str)]
    if not strings:
        return record
    converted = dict(record)
    for field in strings:
        converted[field] = parse_time(converted[field], field)
    return converted


def _record_union_fields(parsed: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Top-level fields typed as a union of null and one inline record.

    Pairs of field name and the record's full name, for `_name_union_records`.
    """
    found = []
    for field in parsed.get("fields", []):
        branches = field["type"]
        if not isinstance(branches, list):
            continue
        records = [b for b in branches if isinstance(b, dict) and b["type"] == "record"]
        if len(branches) == 2 and "null" in branches and len(records) == 1:
            found.append((str(field["name"]), str(records[0]["name"])))
    return tuple(found)


def _name_union_records(
    record: Mapping[str, Any], unions: tuple[tuple[str, str], ...]
) -> Mapping[str, Any]:
    """Name the union branch of nested records, in fastavro's tuple notation.

    Given a bare mapping, fastavro validates it against each branch to pick
    one: about a quarter of the time it takes to write a score event. The
    bytes are the same, since null never matches a mapping.
    """
    named = dict(record)
    for name, record_name in unions:
        value = named.get(name)
        # dict first and None apart: the Mapping check alone, through the ABC
        # machinery, costs about a third of this function.
        if value is not None and isinstance(value, dict | Mapping):
            named[name] = (record_name, value)
    return named


def _reject_naive(field: str, value: Any) -> None:
    # fastavro would take a naive datetime as UTC; events.py refuses to guess,
    # and so does the writer.
    if isinstance(value, datetime) and value.tzinfo is None:
        raise InvalidRecord("unencodable", f"{field} has no time zone", field)


def _rfc3339_text(field: str, value: Any) -> str:
    try:
        return format_time(_epoch_ms(field, value))
    except (OverflowError, ValueError, OSError) as exc:
        # datetime holds the years 1 to 9999 only, and the platform's
        # fromtimestamp may refuse a narrower range with OSError.
        message = f"{field} is outside the years 1 to 9999"
        raise InvalidRecord("unencodable", message, field) from exc


def _epoch_ms(field: str, value: Any) -> int:
    if isinstance(value, datetime):
        _reject_naive(field, value)
        # Integer arithmetic: timestamp() * 1000 can land a hair below the
        # millisecond and truncate to the one before.
        return (value - _EPOCH) // _ONE_MS
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    message = f"{field} must be a datetime, epoch ms or RFC 3339 string"
    raise InvalidRecord("unencodable", message, field)


def _json_problem(text: str, exc: json.JSONDecodeError) -> str:
    """json's reason and where: a column, and a line only in a multi-line value.

    `scorer replay` decodes each file line with its newline, after which json
    placed an error at the line's end on "line 2 column 1": beside the file's
    own line number, that read as the wrong line. So trailing whitespace is
    left out of the count, and a one-line value gets no line of its own.
    """
    if text.startswith("\ufeff") and exc.pos == 0:
        # Files given to replay and produce may open with one; a message not.
        return "not JSON: it opens with a byte-order mark (U+FEFF)"
    content = text.rstrip(_JSON_WHITESPACE)
    at = min(exc.pos, len(content))
    column = at - content.rfind("\n", 0, at)

    if "\n" not in content:
        return f"not JSON: {exc.msg}: column {column}"
    line = content.count("\n", 0, at) + 1
    return f"not JSON: {exc.msg}: line {line} column {column}"


def _reject_constant(name: str) -> NoReturn:
    raise InvalidRecord("bad_json", f"not JSON: {name} is not a JSON value")


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key repeats.

    RFC 8259 leaves a repeated name's meaning open, and json keeps the last
    one silently: `{"lead_id": "a", "lead_id": "b"}` would be scored as b
    although a producer may have meant a. Refused, nothing is guessed. The
    key is not quoted: it is any text of the record (replay prints messages).
    """
    data = dict(pairs)
    if len(data) != len(pairs):
        raise InvalidRecord("bad_json", "a JSON object repeats one of its keys")
    return data


def _reject_lone_surrogates(data: dict[str, Any]) -> None:
    # Only reached when the text holds a \u escape, which is rare; re-encoding
    # the whole object is the simplest complete check of keys and values.
    try:
        _JSON_ENCODER.encode(data).encode("utf-8")
    except (UnicodeEncodeError, RecursionError) as exc:
        message = "not JSON: a lone UTF-16 surrogate escape, or nested too deep"
        raise InvalidRecord("bad_json", message) from exc


# Built once: json.loads and json.dumps with options build a new one per call.
_JSON_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, object_pairs_hook=_object_without_repeats
)
_JSON_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)
