"""Microseconds per decode and encode in Confluent's wire format, per library.

    python bench/confluent_decode.py [--count N]

Starts a local Apicurio Registry (scorer.sandbox.registry), registers page
view v1 and v2 under one subject, and times, on one core:

- `ConfluentAvroCodec` (scorer.confluent_wire): our client and fastavro;
- Confluent's `AvroDeserializer` / `AvroSerializer` from
  `confluent_kafka.schema_registry`, with the scorer's reader schema, when
  `confluent-kafka[avro,schemaregistry]` is installed (it is not a dependency
  of the scorer);
- the single-object `AvroCodec` (scorer.wire), the format without a registry.

v2 messages are read by an equal reader schema, v1 messages need resolution.
Before timing, each library decodes what the other encoded, so a number is
only printed for codecs that agree on the bytes.
"""

import argparse
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastavro import parse_schema, schemaless_writer

from scorer.confluent_wire import ConfluentAvroCodec, output_schema
from scorer.registry import RegistryClient
from scorer.sandbox.registry import SchemaRegistryServer
from scorer.wire import DEFAULT_SCHEMAS_DIR, AvroCodec, SchemaCatalog

TOPIC = "bench.page_views"
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RECORD = {
    "event_id": "ev-1",
    "lead_id": "lead-42",
    "type": "page_view",
    "occurred_at": AT,
    "url": "https://example.com/pricing",
}
V2_RECORD = {**RECORD, "category": "pricing", "referrer": "https://search.example/"}


def schema_text(version: int) -> str:
    return (DEFAULT_SCHEMAS_DIR / f"page_view.v{version}.avsc").read_text()


def framed(schema_id: int, text: str, record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(json.loads(text)), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def per_call_us(cases: dict[str, Callable[[], Any]], count: int) -> dict[str, float]:
    """Best of five rounds of `count` calls each, microseconds per call.

    The cases take turns within each round, so a busy moment of the machine
    does not favour one of them.
    """
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(5):
        for name, call in cases.items():
            started = time.perf_counter()
            for _ in range(count):
                call()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / count * 1e6 for name, seconds in best.items()}


def confluent_codecs(url: str) -> tuple[Any, Any, Any] | None:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import (
            AvroDeserializer,
            AvroSerializer,
        )
        from confluent_kafka.serialization import MessageField, SerializationContext
    except ImportError:
        return None
    client = SchemaRegistryClient({"url": url})
    reader = AvroDeserializer(client, schema_text(2))
    writer = AvroSerializer(
        client, schema_text(2), conf={"auto.register.schemas": True}
    )
    return reader, writer, SerializationContext(TOPIC, MessageField.VALUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    count = parser.parse_args().count

    catalog = SchemaCatalog.load()
    with SchemaRegistryServer() as server:
        client = RegistryClient(server.url)
        v1 = client.register(f"{TOPIC}-value", schema_text(1))
        v2 = client.register(f"{TOPIC}-value", schema_text(2))
        theirs = confluent_codecs(server.url)
        cases = decode_cases(catalog, client, theirs, v1, v2)
        cases |= encode_cases(catalog, client, theirs)
        timings = per_call_us(cases, count)

    if theirs is None:
        print("confluent-kafka[avro,schemaregistry] is not installed: no rows for it")
    for name, us in timings.items():
        print(f"{name:48} {us:7.2f} us")


def decode_cases(
    catalog: SchemaCatalog, client: RegistryClient, theirs: Any, v1: int, v2: int
) -> dict[str, Callable[[], Any]]:
    ours = ConfluentAvroCodec(client, catalog)
    single = AvroCodec(catalog)
    new = framed(v2, schema_text(2), V2_RECORD)
    old = framed(v1, schema_text(1), RECORD)
    old_read = {**RECORD, "category": None, "referrer": None}
    single_new = single.encode(V2_RECORD)
    assert ours.decode(new) == V2_RECORD and ours.decode(old) == old_read

    cases: dict[str, Callable[[], Any]] = {
        "decode v2 (reader = writer)   ours": lambda: ours.decode(new),
        "decode v1 (resolved to v2)    ours": lambda: ours.decode(old),
        "decode v2 single-object (scorer.wire)": lambda: single.decode(single_new),
    }
    if theirs is not None:
        reader, _writer, ctx = theirs
        assert reader(new, ctx) == V2_RECORD and reader(old, ctx) == old_read
        cases["decode v2 (reader = writer)   confluent"] = lambda: reader(new, ctx)
        cases["decode v1 (resolved to v2)    confluent"] = lambda: reader(old, ctx)
    return cases


def encode_cases(
    catalog: SchemaCatalog, client: RegistryClient, theirs: Any
) -> dict[str, Callable[[], Any]]:
    output = output_schema(client, catalog, TOPIC, "leadscorer.events.PageView")
    ours = ConfluentAvroCodec(client, catalog, output)
    single = AvroCodec(catalog)
    cases: dict[str, Callable[[], Any]] = {
        "encode v2                     ours": lambda: ours.encode(V2_RECORD),
        "encode v2 single-object (scorer.wire)": lambda: single.encode(V2_RECORD),
    }
    if theirs is not None:
        reader, writer, ctx = theirs
        # Each reads what the other wrote.
        assert reader(ours.encode(V2_RECORD), ctx) == V2_RECORD
        assert ours.decode(writer(V2_RECORD, ctx)) == V2_RECORD
        cases["encode v2                     confluent"] = lambda: writer(
            V2_RECORD, ctx
        )
    return cases


if __name__ == "__main__":
    main()
