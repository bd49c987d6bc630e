"""Tests of the Confluent wire format codec (scorer/confluent_wire.py).

The registry is `fake_registry`: real HTTP on a loopback port, so the codec
runs with the real client and the tests can count the requests it makes.
"""

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fake_registry import FakeRegistry, running_registry
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from scorer.config import Topic
from scorer.confluent_wire import (
    UNKNOWN_ID_RECHECK_S,
    ConfluentAvroCodec,
    output_schema,
    subject_name,
    topic_codec,
)
from scorer.errors import ConfigError, InvalidRecord
from scorer.registry import RegistryClient
from scorer.wire import (
    DEFAULT_SCHEMAS_DIR,
    INPUT_SCHEMAS,
    SCORE_SCHEMA,
    AvroCodec,
    SchemaCatalog,
)

CATALOG = SchemaCatalog.load()
AT = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)
PAGE_VIEW_V1 = json.loads((DEFAULT_SCHEMAS_DIR / "page_view.v1.avsc").read_text())
PAGE_VIEW_V2 = json.loads((DEFAULT_SCHEMAS_DIR / "page_view.v2.avsc").read_text())
SCORE_V1 = json.loads((DEFAULT_SCHEMAS_DIR / "lead_score.v1.avsc").read_text())

V1_VIEW = {
    "event_id": "ev-1",
    "lead_id": "lead-42",
    "type": "page_view",
    "occurred_at": AT,
    "url": "/pricing",
}
V2_VIEW = {**V1_VIEW, "category": "pricing", "referrer": "https://search.example/"}

SCORE_EVENT = {
    "type": "score_changed",
    "event_id": "4b0f0d9e-2a53-4d7b-8d3c-5c1f1f1b0c01",
    "lead_id": "lead-42",
    "occurred_at": AT,
    "score": 35.0,
    "previous_score": 15.0,
    "fit": 15.0,
    "engagement": 20.0,
    "is_mql": False,
    "direction": None,
    "threshold": 60.0,
    "rules_version": "default-2026.12+abcdef12",
    "source_event_id": "ev-1",
    "reason": None,
}


def with_field(schema: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "fields": [*schema["fields"], extra]}


def retyped(schema: dict[str, Any], name: str, new_type: Any) -> dict[str, Any]:
    fields = [
        {**f, "type": new_type} if f["name"] == name else f for f in schema["fields"]
    ]
    return {**schema, "fields": fields}


def framed(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A message as Confluent's serializer writes it, built independently."""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with running_registry() as fake:
        yield fake


def client(fake: FakeRegistry, **options: Any) -> RegistryClient:
    return RegistryClient(fake.url, sleep=lambda _s: None, **options)


def reading_codec(fake: FakeRegistry, clock: Clock | None = None) -> ConfluentAvroCodec:
    return ConfluentAvroCodec(client(fake), CATALOG, clock=clock or Clock())


# -- decoding and schema evolution ---------------------------------------------


def test_writer_equal_to_reader_decodes(registry: FakeRegistry) -> None:
    schema_id = registry.add(PAGE_VIEW_V2)

    decoded = reading_codec(registry).decode(framed(schema_id, PAGE_VIEW_V2, V2_VIEW))

    assert decoded == V2_VIEW


def test_older_writer_without_the_optional_fields_decodes(
    registry: FakeRegistry,
) -> None:
    schema_id = registry.add(PAGE_VIEW_V1)

    decoded = reading_codec(registry).decode(framed(schema_id, PAGE_VIEW_V1, V1_VIEW))

    assert decoded == {**V1_VIEW, "category": None, "referrer": None}


def test_newer_writer_with_an_extra_field_decodes_without_it(
    registry: FakeRegistry,
) -> None:
    utm = {"name": "utm_campaign", "type": "string", "default": ""}
    v3 = with_field(PAGE_VIEW_V2, utm)
    schema_id = registry.add(v3)

    message = framed(schema_id, v3, {**V2_VIEW, "utm_campaign": "spring"})
    decoded = reading_codec(registry).decode(message)

    assert decoded == V2_VIEW


@pytest.mark.parametrize("schema", [PAGE_VIEW_V1, PAGE_VIEW_V2])
def test_a_record_claiming_another_input_type_is_bad_value(
    registry: FakeRegistry, schema: dict[str, Any]
) -> None:
    schema_id = registry.add(schema)
    value = framed(schema_id, schema, {**V2_VIEW, "type": "webinar"})

    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(value)

    assert (caught.value.reason, caught.value.field) == ("bad_value", "type")
    assert caught.value.message == (
        f"type 'webinar' in a record of schema id {schema_id} "
        "(leadscorer.events.PageView), which is 'page_view'"
    )


def test_a_codec_given_the_records_it_reads_refuses_others_unread(
    registry: FakeRegistry,
) -> None:
    score_schema = json.loads((DEFAULT_SCHEMAS_DIR / "lead_score.v1.avsc").read_text())
    schema_id = registry.add(score_schema)
    inputs_only = ConfluentAvroCodec(
        client(registry), CATALOG, clock=Clock(), reads=INPUT_SCHEMAS.values()
    )
    # The frame of an output record, and a body that is no Avro at all.
    value = framed(schema_id, score_schema, SCORE_EVENT)[:5] + b"\xff" * 64

    with pytest.raises(InvalidRecord, match="LeadScoreEvent") as refused:
        inputs_only.decode(value)
    with pytest.raises(InvalidRecord) as read:
        reading_codec(registry).decode(value)

    assert refused.value.reason == "unknown_type"
    assert read.value.reason == "bad_avro"


def test_writer_with_an_unpromotable_type_is_incompatible(
    registry: FakeRegistry,
) -> None:
    numeric_url = retyped(PAGE_VIEW_V2, "url", "int")
    schema_id = registry.add(numeric_url)

    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(
            framed(schema_id, numeric_url, {**V2_VIEW, "url": 7})
        )

    assert caught.value.reason == "incompatible_schema"
    assert f"schema id {schema_id} (leadscorer.events.PageView)" in caught.value.message
    assert "leadscorer.events.PageView v2" in caught.value.message


def test_writer_without_a_required_field_is_incompatible(
    registry: FakeRegistry,
) -> None:
    no_url = {**PAGE_VIEW_V1, "fields": PAGE_VIEW_V1["fields"][:4]}
    schema_id = registry.add(no_url)
    record = {k: v for k, v in V1_VIEW.items() if k != "url"}

    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(framed(schema_id, no_url, record))

    assert caught.value.reason == "incompatible_schema"


@pytest.mark.parametrize(
    ("schema", "extra", "words"),
    [
        ({**PAGE_VIEW_V2, "name": "Visit"}, {}, "not a record the scorer reads"),
        ('"string"', {}, "not a record the scorer reads"),
        ('{"type": "record"', {}, "not valid Avro"),
        ("syntax = 'proto3';", {"schemaType": "PROTOBUF"}, "is PROTOBUF, not Avro"),
        (
            PAGE_VIEW_V2,
            {"references": [{"name": "x", "subject": "s", "version": 1}]},
            "schema references",
        ),
    ],
)
def test_schemas_the_scorer_cannot_read_are_incompatible(
    registry: FakeRegistry, schema: Any, extra: dict[str, Any], words: str
) -> None:
    schema_id = registry.add(schema, **extra)
    codec = reading_codec(registry)
    message = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"

    for _ in range(3):
        with pytest.raises(InvalidRecord) as caught:
            codec.decode(message)
        assert caught.value.reason == "incompatible_schema"
        assert words in caught.value.message

    # The verdict is kept: the schema was fetched once for three messages.
    assert registry.paths().count(f"/schemas/ids/{schema_id}") == 1


# -- the schema cache --------------------------------------------------------


def test_each_schema_id_is_fetched_once(registry: FakeRegistry) -> None:
    old_id, new_id = registry.add(PAGE_VIEW_V1), registry.add(PAGE_VIEW_V2)
    codec = reading_codec(registry)

    for index in range(50):
        codec.decode(framed(old_id, PAGE_VIEW_V1, {**V1_VIEW, "event_id": str(index)}))
        codec.decode(framed(new_id, PAGE_VIEW_V2, V2_VIEW))

    assert registry.paths() == [f"/schemas/ids/{old_id}", f"/schemas/ids/{new_id}"]


def test_unknown_id_is_asked_again_only_after_the_recheck_time(
    registry: FakeRegistry,
) -> None:
    clock = Clock()
    codec = reading_codec(registry, clock)
    message = framed(7, PAGE_VIEW_V2, V2_VIEW)

    for _ in range(5):
        with pytest.raises(InvalidRecord) as caught:
            codec.decode(message)
        assert caught.value.reason == "unknown_schema"
        assert caught.value.message == "the registry has no schema id 7"
    assert registry.paths() == ["/schemas/ids/7"]

    # Registered meanwhile (ids are given out in order: this is id 1 ... 7).
    for _ in range(7):
        registry.add(PAGE_VIEW_V2)
    clock.now_s += UNKNOWN_ID_RECHECK_S

    assert codec.decode(message) == V2_VIEW
    assert registry.paths() == ["/schemas/ids/7", "/schemas/ids/7"]


def test_an_id_beyond_a_java_int_is_unknown_without_asking(
    registry: FakeRegistry,
) -> None:
    message = b"\x00\xff\xff\xff\xff" + b"\x02"

    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(message)

    assert caught.value.reason == "unknown_schema"
    assert registry.requests == []


# -- framing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"", "not Confluent wire format"),
        (b"\x01\x00\x00\x00\x01\x02", "not Confluent wire format"),
        (b'{"type": "page_view"}', "not Confluent wire format"),
        (b"\x00", "truncated Confluent header: 1 of 5 bytes"),
        (b"\x00\x00\x00\x01", "truncated Confluent header: 4 of 5 bytes"),
        (b"\xc3\x01" + bytes(12), "single-object encoding"),
    ],
)
def test_a_missing_or_truncated_header_is_bad_marker(
    registry: FakeRegistry, value: bytes, words: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(value)

    assert caught.value.reason == "bad_marker"
    assert words in caught.value.message
    assert registry.requests == []


def test_a_truncated_body_is_bad_avro(registry: FakeRegistry) -> None:
    schema_id = registry.add(PAGE_VIEW_V2)
    message = framed(schema_id, PAGE_VIEW_V2, V2_VIEW)
    codec = reading_codec(registry)

    for cut in range(5, len(message)):
        with pytest.raises(InvalidRecord) as caught:
            codec.decode(message[:cut])
        assert caught.value.reason == "bad_avro", cut


def test_trailing_bytes_are_bad_avro(registry: FakeRegistry) -> None:
    schema_id = registry.add(PAGE_VIEW_V2)
    message = framed(schema_id, PAGE_VIEW_V2, V2_VIEW) + b"\x00\x00"

    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).decode(message)

    assert caught.value.reason == "bad_avro"
    assert caught.value.message.startswith("2 trailing bytes")


# -- encoding ------------------------------------------------------------------


def test_outputs_are_framed_with_the_registered_id(registry: FakeRegistry) -> None:
    registry.add(PAGE_VIEW_V1)  # so that the output's id is not 1
    output = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)
    codec = ConfluentAvroCodec(client(registry), CATALOG, output)

    value = codec.encode(SCORE_EVENT)

    assert output.schema_id == 2
    assert output.subject == "lead.scores-value"
    assert value[:5] == b"\x00\x00\x00\x00\x02"
    # The registered text is the schema file, docs and logical types kept.
    registered = json.loads(registry.schemas[2]["schema"])
    assert registered == SCORE_V1
    body = schemaless_reader(io.BytesIO(value[5:]), parse_schema(registered), None)
    assert body == SCORE_EVENT
    assert codec.decode(value) == SCORE_EVENT


def test_the_body_is_the_single_object_body(registry: FakeRegistry) -> None:
    output = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)
    codec = ConfluentAvroCodec(client(registry), CATALOG, output)

    single_object = AvroCodec(CATALOG, SCORE_SCHEMA).encode(SCORE_EVENT)

    assert codec.encode(SCORE_EVENT)[5:] == single_object[10:]


def test_registering_twice_gives_the_same_id(registry: FakeRegistry) -> None:
    first = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)
    again = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)

    assert first.schema_id == again.schema_id
    assert registry.paths("POST") == ["/subjects/lead.scores-value/versions"] * 2


def test_an_unfit_record_is_unencodable(registry: FakeRegistry) -> None:
    output = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)
    codec = ConfluentAvroCodec(client(registry), CATALOG, output)

    with pytest.raises(InvalidRecord) as caught:
        codec.encode({**SCORE_EVENT, "score": "high"})

    assert caught.value.reason == "unencodable"


def test_an_input_codec_does_not_encode(registry: FakeRegistry) -> None:
    with pytest.raises(InvalidRecord) as caught:
        reading_codec(registry).encode(V2_VIEW)

    assert caught.value.reason == "unencodable"


def test_without_auto_registration_a_registered_schema_is_looked_up(
    registry: FakeRegistry,
) -> None:
    registered = output_schema(client(registry), CATALOG, "lead.scores", SCORE_SCHEMA)
    looked_up = output_schema(
        client(registry, auto_register=False), CATALOG, "lead.scores", SCORE_SCHEMA
    )

    assert looked_up.schema_id == registered.schema_id
    assert registry.paths("POST")[-1] == "/subjects/lead.scores-value"


def test_without_auto_registration_other_spacing_is_found_as_the_latest(
    registry: FakeRegistry,
) -> None:
    pretty = json.dumps(SCORE_V1, indent=2)
    schema_id = registry.add(pretty)
    registry.subjects["lead.scores-value"] = {pretty: schema_id}
    lookup_only = client(registry, auto_register=False)

    output = output_schema(lookup_only, CATALOG, "lead.scores", SCORE_SCHEMA)

    assert output.schema_id == schema_id
    assert registry.paths()[-1] == "/subjects/lead.scores-value/versions/latest"


def test_without_auto_registration_an_unregistered_schema_stops_start_up(
    registry: FakeRegistry,
) -> None:
    lookup_only = client(registry, auto_register=False)

    with pytest.raises(ConfigError) as caught:
        output_schema(lookup_only, CATALOG, "lead.scores", SCORE_SCHEMA)

    assert caught.value.field == "schema_registry.auto_register"
    assert "leadscorer.scores.LeadScoreEvent v1 is not registered" in str(caught.value)
    assert "subject lead.scores-value" in str(caught.value)
    assert registry.schemas == {}


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic", "lead.scores-value"),
        ("record", "leadscorer.scores.LeadScoreEvent"),
        ("topic_record", "lead.scores-leadscorer.scores.LeadScoreEvent"),
    ],
)
def test_subject_strategies(
    registry: FakeRegistry, strategy: str, subject: str
) -> None:
    assert subject_name(strategy, "lead.scores", SCORE_SCHEMA) == subject

    chosen = client(registry, subject_strategy=strategy)
    output = output_schema(chosen, CATALOG, "lead.scores", SCORE_SCHEMA)

    assert output.subject == subject
    assert registry.subjects[subject]


# -- building codecs per topic -------------------------------------------------


def test_topic_codec_builds_every_format(registry: FakeRegistry) -> None:
    confluent = Topic(name="lead.scores", format="confluent_avro")

    codec = topic_codec(confluent, CATALOG, client(registry), SCORE_SCHEMA)

    assert isinstance(codec, ConfluentAvroCodec)
    assert codec.output is not None
    assert registry.paths() == ["/schemas/types"]
    avro = topic_codec(Topic(name="t", format="avro"), CATALOG, None, SCORE_SCHEMA)
    assert isinstance(avro, AvroCodec)


def test_topic_codec_without_a_registry_names_the_field() -> None:
    confluent = Topic(name="web.page_views", format="confluent_avro")

    with pytest.raises(ConfigError) as caught:
        topic_codec(confluent, CATALOG, None)

    assert caught.value.field == "schema_registry"


def test_a_url_that_is_not_a_registry_names_the_field(registry: FakeRegistry) -> None:
    wrong_path = RegistryClient(registry.url + "/apis/registry/v2")
    confluent = Topic(name="web.page_views", format="confluent_avro")

    with pytest.raises(ConfigError) as caught:
        topic_codec(confluent, CATALOG, wrong_path)

    assert caught.value.field == "schema_registry.url"
    assert "does not answer as a schema registry" in caught.value.message


def test_refused_credentials_name_the_field(registry: FakeRegistry) -> None:
    registry.refuse_with = 401
    confluent = Topic(name="web.page_views", format="confluent_avro")

    with pytest.raises(ConfigError) as caught:
        topic_codec(confluent, CATALOG, client(registry, username="u", password="p"))

    assert caught.value.field == "schema_registry.username"
    assert len(registry.requests) == 1
