"""Confluent's Schema Registry wire format for Avro, and the codec for it.

A message value is the magic byte 0, the 4-byte big-endian id under which the
registry holds the writer's schema, then the Avro binary body (Confluent's
Schema Registry documentation, "Wire format"). Unlike the single-object
encoding of `scorer.wire`, the id means nothing without the registry: the
codec asks for each id's schema once, keeps it for good (an id never changes
its schema), and resolves it against the newest version of the same record,
by full name, in the scorer's own catalog. Producers may thus add fields, or
drop fields that have a default, at their own pace.

An output topic in this format gets its schema registered (or only looked up)
at start-up, under the subject its strategy names, and every output is framed
with that id.
"""

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro.schema import (
    SchemaParseException,
    parse_schema,
    to_parsing_canonical_form,
)

from scorer.config import Topic
from scorer.errors import ConfigError, InvalidRecord
from scorer.registry import (
    RegisteredSchema,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    SchemaNotFound,
)
from scorer.wire import (
    HEADER_BYTES,
    KIND_OF_SCHEMA,
    SINGLE_OBJECT_MARKER,
    AvroCodec,
    Codec,
    SchemaCatalog,
    check_kind,
    make_codec,
    read_body,
    wire_fingerprint,
)

logger = logging.getLogger(__name__)

MAGIC_BYTE = 0
FRAME_BYTES = 5  # the magic byte and the 4-byte schema id
MAX_SCHEMA_ID = 2**31 - 1  # ids are Java ints; a larger one was never handed out
UNKNOWN_ID_RECHECK_S = 60.0  # an id the registry lacked is asked again after this
UNKNOWN_IDS_KEPT = 10_000  # so that a flood of junk ids cannot grow memory

_BAD_SCHEMA_ERRORS = (SchemaParseException, ValueError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class _Reading:
    """How to read the bodies written with one schema id."""

    writer: dict[str, Any]
    reader: dict[str, Any] | None
    """None when the writer's schema is the reader's (the fast path)."""
    label: str
    reader_label: str
    kind: str | None
    """The `type` the records carry, for an input record (see check_kind)."""


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why the bodies written with one schema id cannot be read."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """The schema outputs are written with, and its id in the registry."""

    schema_id: int
    subject: str
    codec: AvroCodec

    def frame(self) -> bytes:
        """The 5 bytes in front of every output's body."""
        return bytes([MAGIC_BYTE]) + self.schema_id.to_bytes(4, "big")


def subject_name(strategy: str, topic: str, full_name: str) -> str:
    """The subject a schema is registered under, by Confluent's strategies.

    TopicNameStrategy (`topic`) gives ``<topic>-value``; RecordNameStrategy
    (`record`) the record's full name; TopicRecordNameStrategy
    (`topic_record`) ``<topic>-<full name>``.
    """
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return full_name
    if strategy == "topic_record":
        return f"{topic}-{full_name}"
    raise ConfigError("schema_registry.subject_strategy", f"unknown {strategy!r}")


class ConfluentAvroCodec:
    """Reads any Avro writer the registry knows; writes with `output`, if given.

    A codec of an input topic has no `output` and only decodes; with
    `reads`, only records of those full names. `clock` is a monotonic clock
    in seconds (tests pass their own).
    """

    def __init__(
        self,
        registry: RegistryClient,
        catalog: SchemaCatalog,
        output: OutputSchema | None = None,
        clock: Callable[[], float] = time.monotonic,
        reads: Collection[str] | None = None,
    ) -> None:
        self._registry = registry
        self._catalog = catalog
        self._output = output
        self._reads = None if reads is None else frozenset(reads)
        self._frame = b"" if output is None else output.frame()
        self._clock = clock
        # Keyed by the 5-byte frame, so one lookup checks the magic byte too.
        self._readings: dict[bytes, _Reading] = {}
        self._refusals: dict[bytes, _Refusal] = {}
        self._unknown_since: dict[int, float] = {}

    @property
    def output(self) -> OutputSchema | None:
        return self._output

    def decode(self, value: bytes) -> dict[str, Any]:
        reading = self._readings.get(value[:FRAME_BYTES])
        if reading is None:
            reading = self._learn(value)

        record = read_body(
            value,
            FRAME_BYTES,
            reading.writer,
            reading.reader,
            reading.label,
            reading.reader_label,
        )

        if reading.kind is not None:
            check_kind(record, reading.kind, reading.label)
        return record

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._output is None:
            raise InvalidRecord("unencodable", "this codec reads an input topic only")

        # The single-object form has the same body behind a longer header.
        single_object = self._output.codec.encode(record)
        return self._frame + single_object[HEADER_BYTES:]

    def _learn(self, value: bytes) -> _Reading:
        """Fetch, check and keep the schema of a frame seen for the first time."""
        if len(value) < FRAME_BYTES or value[0] != MAGIC_BYTE:
            raise InvalidRecord("bad_marker", _marker_problem(value))

        frame = value[:FRAME_BYTES]
        refusal = self._refusals.get(frame)
        if refusal is not None:
            raise InvalidRecord(refusal.reason, refusal.message)

        outcome = self._fetch(int.from_bytes(frame[1:], "big"))
        if isinstance(outcome, _Refusal):
            self._refusals[frame] = outcome
            raise InvalidRecord(outcome.reason, outcome.message)
        self._readings[frame] = outcome
        return outcome

    def _fetch(self, schema_id: int) -> _Reading | _Refusal:
        self._check_not_unknown(schema_id)
        try:
            registered = self._registry.schema_by_id(schema_id)
        except SchemaNotFound as exc:
            self._note_unknown(schema_id)
            message = f"the registry has no schema id {schema_id}"
            raise InvalidRecord("unknown_schema", message) from exc

        outcome = self._reading_of(registered)
        if isinstance(outcome, _Refusal):
            logger.warning(
                "schema unreadable schema_id=%d reason=%s: %s",
                schema_id,
                outcome.reason,
                outcome.message,
            )
        else:
            logger.debug("schema learned schema_id=%d as=%s", schema_id, outcome.label)
        return outcome

    def _reading_of(self, registered: RegisteredSchema) -> _Reading | _Refusal:
        label = f"schema id {registered.schema_id}"
        if registered.schema_type != "AVRO":
            kind = registered.schema_type
            return _Refusal("incompatible_schema", f"{label} is {kind}, not Avro")
        if registered.references:
            message = f"{label} has schema references, which the scorer cannot follow"
            return _Refusal("incompatible_schema", message)

        try:
            raw = json.loads(registered.schema)
            writer = parse_schema(raw)
        except _BAD_SCHEMA_ERRORS:
            return _Refusal("incompatible_schema", f"{label} is not valid Avro")

        # A primitive or array schema parses to a string or list: no record.
        full_name = writer.get("name") if isinstance(writer, dict) else None
        reader = self._catalog.newest(full_name) if isinstance(full_name, str) else None
        if reader is None or not isinstance(writer, dict):
            known = ", ".join(self._catalog.names)
            message = f"{label} is not a record the scorer reads ({known})"
            return _Refusal("incompatible_schema", message)

        label = f"{label} ({full_name})"
        if self._reads is not None and full_name not in self._reads:
            # Refused before any body is read; see wire.AvroCodec.
            message = f"{label} is a record this topic does not carry"
            return _Refusal("unknown_type", message)
        record_type = KIND_OF_SCHEMA.get(reader.full_name)
        if wire_fingerprint(to_parsing_canonical_form(raw)) == reader.fingerprint:
            # The same Parsing Canonical Form is the same binary encoding, so
            # the reader's own parsed schema reads it without resolution.
            return _Reading(reader.parsed, None, label, reader.label, record_type)
        return _Reading(writer, reader.parsed, label, reader.label, record_type)

    def _check_not_unknown(self, schema_id: int) -> None:
        asked_at = self._unknown_since.get(schema_id)
        recently = (
            asked_at is not None and self._clock() - asked_at < UNKNOWN_ID_RECHECK_S
        )
        if recently or schema_id > MAX_SCHEMA_ID:
            message = f"the registry has no schema id {schema_id}"
            raise InvalidRecord("unknown_schema", message)

    def _note_unknown(self, schema_id: int) -> None:
        if len(self._unknown_since) >= UNKNOWN_IDS_KEPT:
            self._unknown_since.clear()
        self._unknown_since[schema_id] = self._clock()


def output_schema(
    registry: RegistryClient, catalog: SchemaCatalog, topic: str, schema_name: str
) -> OutputSchema:
    """Register (or, without auto-registration, look up) the output's schema."""
    codec = AvroCodec(catalog, schema_name)
    version = catalog.newest(schema_name)
    assert version is not None, "AvroCodec refuses a name the catalog lacks"
    subject = subject_name(registry.subject_strategy, topic, version.full_name)
    text = json.dumps(
        json.loads(version.path.read_text("utf-8")), separators=(",", ":")
    )

    if registry.auto_register:
        schema_id = registry.register(subject, text)
    else:
        schema_id = _registered_id(registry, subject, text, version.label)
    logger.info(
        "writer schema ready subject=%s schema_id=%d record=%s",
        subject,
        schema_id,
        version.label,
    )
    return OutputSchema(schema_id, subject, codec)


def topic_codec(
    topic: Topic,
    catalog: SchemaCatalog,
    registry: RegistryClient | None,
    schema_name: str | None = None,
    reads: Collection[str] | None = None,
) -> Codec:
    """The codec of a topic in any format; `schema_name` for an output topic.

    With `reads`, Avro records of other full names are refused unread. For
    confluent_avro this talks to the registry: it checks the URL answers
    and, for an output topic, registers or looks up the schema.
    """
    if topic.format != "confluent_avro":
        return make_codec(
            topic.format, catalog=catalog, schema_name=schema_name, reads=reads
        )
    if registry is None:
        message = f"required: topic {topic.name} has format confluent_avro"
        raise ConfigError("schema_registry", message)

    _check_reachable(registry)
    output = None
    if schema_name is not None:
        output = output_schema(registry, catalog, topic.name, schema_name)
    return ConfluentAvroCodec(registry, catalog, output, reads=reads)


def _registered_id(
    registry: RegistryClient, subject: str, text: str, label: str
) -> int:
    try:
        return registry.lookup(subject, text)
    except SchemaNotFound:
        pass

    # Apicurio (unless told to compare canonical forms) finds only the very
    # same text, so the same schema registered with other spacing is missed.
    try:
        latest = registry.latest(subject)
    except SchemaNotFound:
        latest = None
    if latest is not None and _same_json(latest.schema, text):
        return latest.schema_id

    message = (
        f"{label} is not registered under subject {subject} at {registry.url}; "
        "register it, or set schema_registry.auto_register: true"
    )
    raise ConfigError("schema_registry.auto_register", message)


def _same_json(text: str, other: str) -> bool:
    try:
        return bool(json.loads(text) == json.loads(other))
    except ValueError:
        return False


def _check_reachable(registry: RegistryClient) -> None:
    """Stop start-up, naming the field to fix, unless the registry answers."""
    try:
        registry.ensure_reachable()
    except RegistryUnavailable as exc:
        # Perhaps only down for now, so not a config error; still name the field.
        message = f"schema registry unreachable (schema_registry.url): {exc}"
        raise RegistryUnavailable(message) from exc
    except RegistryError as exc:
        if exc.status in (401, 403):
            message = f"the registry refused the credentials: {exc}"
            raise ConfigError("schema_registry.username", message) from exc
        # Most likely a wrong path: Apicurio serves the API under /apis/ccompat/v7.
        message = f"{registry.url} does not answer as a schema registry: {exc}"
        raise ConfigError("schema_registry.url", message) from exc


def _marker_problem(value: bytes) -> str:
    if value[:2] == SINGLE_OBJECT_MARKER:
        return "Avro single-object encoding, not Confluent's: is the format avro?"
    if len(value) < FRAME_BYTES and value[:1] == bytes([MAGIC_BYTE]):
        return f"truncated Confluent header: {len(value)} of {FRAME_BYTES} bytes"
    return "not Confluent wire format (no magic byte 0 and schema id)"
