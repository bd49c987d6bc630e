"""The Confluent wire format against a real schema registry (Apicurio Registry).

The test producer registers its schemas and frames its messages on its own,
with plain HTTP and fastavro, as any Confluent client would; the outputs are
read back the standard way, by fetching the id in each frame from the
registry. With SCHEMA_REGISTRY_URL set, that (disposable) registry is used
instead of a local Apicurio.
"""

import io
import json
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from harness import TopicReader, make_config, produce, running_scorer

from scorer.clients import producer_settings
from scorer.config import Config
from scorer.errors import ConfigError
from scorer.events import format_time
from scorer.produce import Routing, Sender, codecs_for
from scorer.registry import RegistryUnavailable
from scorer.replay import Line
from scorer.sandbox.registry import SchemaRegistryServer
from scorer.service import build_pipeline
from scorer.wire import DEFAULT_SCHEMAS_DIR, SCORE_SCHEMA, AvroCodec, SchemaCatalog

REGISTRY_ENV = "SCHEMA_REGISTRY_URL"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
T0_MS = 1_750_000_000_000
PAGE_VIEW_V1 = json.loads((DEFAULT_SCHEMAS_DIR / "page_view.v1.avsc").read_text())
PAGE_VIEW_V2 = json.loads((DEFAULT_SCHEMAS_DIR / "page_view.v2.avsc").read_text())
# A writer newer than the scorer: one more field, which the scorer drops.
PAGE_VIEW_V3 = {
    **PAGE_VIEW_V2,
    "fields": [
        *PAGE_VIEW_V2["fields"],
        {"name": "utm_campaign", "type": ["null", "string"], "default": None},
    ],
}
# A writer the scorer cannot read: the URL became a number.
PAGE_VIEW_NUMERIC_URL = {
    **PAGE_VIEW_V1,
    "fields": [
        {**f, "type": "long"} if f["name"] == "url" else f
        for f in PAGE_VIEW_V1["fields"]
    ],
}


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    external = os.environ.get(REGISTRY_ENV)
    if external:
        yield external.rstrip("/")
        return

    with SchemaRegistryServer() as server:
        yield server.url


def register(url: str, subject: str, schema: dict[str, Any]) -> int:
    body = json.dumps({"schema": json.dumps(schema)}).encode()
    request = urllib.request.Request(
        f"{url}/subjects/{subject}/versions",
        data=body,
        headers={"Content-Type": CONTENT_TYPE},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["id"])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def framed(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def read_framed(url: str, value: bytes) -> tuple[int, dict[str, Any]]:
    """The schema id and record of a message, decoded the standard way."""
    assert value[0] == 0
    schema_id = int.from_bytes(value[1:5], "big")
    writer = json.loads(get_json(f"{url}/schemas/ids/{schema_id}")["schema"])
    record = schemaless_reader(io.BytesIO(value[5:]), parse_schema(writer), None)
    return schema_id, record


def view(event_id: str, lead: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": T0_MS,
        "url": url,
        **extra,
    }


def confluent_config(
    kafka: str,
    redis_url: str,
    registry: str,
    pages: str,
    out: str,
    dlq: str,
    **reg: Any,
) -> Config:
    topics = {
        "events": [{"name": pages, "format": "confluent_avro"}],
        "output": {"name": out, "format": "confluent_avro"},
        "dead_letter": dlq,
    }
    settings = {"url": registry, **reg}
    return make_config(kafka, redis_url, topics, schema_registry=settings)


def test_evolving_writers_are_scored_and_outputs_read_back(
    kafka_bootstrap: str, redis_url: str, registry_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq")
    subject = f"{pages}-value"
    v1 = register(registry_url, subject, PAGE_VIEW_V1)
    v2 = register(registry_url, subject, PAGE_VIEW_V2)
    v3 = register(registry_url, subject, PAGE_VIEW_V3)
    numeric = register(registry_url, f"{pages}-numeric", PAGE_VIEW_NUMERIC_URL)
    single_object = AvroCodec(SchemaCatalog.load()).encode(view("s1", "L3", "/demo"))
    values = [
        framed(v1, PAGE_VIEW_V1, view("e1", "L1", "/pricing")),
        framed(v2, PAGE_VIEW_V2, view("e2", "L1", "/demo", category="demo")),
        framed(v3, PAGE_VIEW_V3, view("e3", "L1", "/pricing", utm_campaign="q3")),
        framed(999_999, PAGE_VIEW_V2, view("e4", "L2", "/pricing")),
        framed(numeric, PAGE_VIEW_NUMERIC_URL, view("e5", "L2", 7)),
        single_object,
    ]
    keys = ["L1", "L1", "L1", "L2", "L2", "L3"]
    produce(kafka_bootstrap, pages, [], None, keys=keys, raw_values=values)
    config = confluent_config(kafka_bootstrap, redis_url, registry_url, pages, out, dlq)

    outputs = TopicReader(kafka_bootstrap, out, None)
    dead = TopicReader(kafka_bootstrap, dlq, None)
    with running_scorer(config):
        outputs.read_until(lambda messages: len(messages) >= 4)
        dead.read_until(lambda messages: len(messages) >= 3)
        outputs.read_quiet(1.0)
    outputs.close()
    dead.close()

    # One output id, the one registered under <output topic>-value.
    framed_outputs = [read_framed(registry_url, m.value()) for m in outputs.messages]
    latest = get_json(f"{registry_url}/subjects/{out}-value/versions/latest")
    assert {schema_id for schema_id, _ in framed_outputs} == {latest["id"]}
    assert json.loads(latest["schema"])["name"] == "LeadScoreEvent"

    # 20 + 30 + 20 points at one moment: no decay, and within the caps.
    events = [record for _, record in framed_outputs]
    assert [(e["type"], e["score"], e["source_event_id"]) for e in events] == [
        ("score_changed", 20.0, "e1"),
        ("score_changed", 50.0, "e2"),
        ("score_changed", 70.0, "e3"),
        ("mql_crossed", 70.0, "e3"),
    ]
    assert events[-1]["direction"] == "up"
    assert {e["lead_id"] for e in events} == {"L1"}

    dead_reasons = sorted(
        dict(m.headers())["scorer.error.reason"] for m in dead.messages
    )
    assert dead_reasons == [b"bad_marker", b"incompatible_schema", b"unknown_schema"]
    # A dead letter is the message as it came, frame included.
    assert sorted(m.value() for m in dead.messages) == sorted(values[3:])


def test_without_auto_registration_an_unregistered_output_stops_start_up(
    kafka_bootstrap: str, redis_url: str, registry_url: str
) -> None:
    out = f"out-{uuid.uuid4().hex[:12]}"
    config = confluent_config(
        kafka_bootstrap,
        redis_url,
        registry_url,
        "pages",
        out,
        "dlq",
        auto_register=False,
    )

    with pytest.raises(ConfigError) as caught:
        build_pipeline(config)

    assert caught.value.field == "schema_registry.auto_register"
    assert f"subject {out}-value" in caught.value.message

    # Once registered (by someone else), the same config starts.
    score_schema = SchemaCatalog.load().newest(SCORE_SCHEMA)
    assert score_schema is not None
    schema_id = register(
        registry_url, f"{out}-value", json.loads(score_schema.path.read_text())
    )
    pipeline = build_pipeline(config)
    assert pipeline.output_codec.encode(
        {
            "type": "score_changed",
            "event_id": str(uuid.uuid4()),
            "lead_id": "L1",
            "occurred_at": format_time(T0_MS),
            "score": 1.0,
            "previous_score": 0.0,
            "fit": 0.0,
            "engagement": 1.0,
            "is_mql": False,
            "direction": None,
            "threshold": 60.0,
            "rules_version": "v",
            "source_event_id": "e",
            "reason": None,
        }
    )[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    pipeline.consumer.close()


def test_a_registry_gone_for_good_stops_the_scorer_without_losing_the_record(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq")
    # Its own registry, since this test kills it.
    with SchemaRegistryServer() as server:
        schema_id = register(server.url, f"{pages}-value", PAGE_VIEW_V2)
        config = confluent_config(
            kafka_bootstrap, redis_url, server.url, pages, out, dlq, retries=1
        )
        pipeline = build_pipeline(config)
        server.kill()

    value = framed(schema_id, PAGE_VIEW_V2, view("e1", "L1", "/pricing"))
    produce(kafka_bootstrap, pages, [], None, keys=["L1"], raw_values=[value])
    stop = threading.Event()
    # Should the scorer not stop by itself, the test fails instead of hanging.
    guard = threading.Timer(60.0, stop.set)
    guard.start()
    try:
        with pytest.raises(RegistryUnavailable) as caught:
            pipeline.run(stop)
    finally:
        guard.cancel()

    assert "schema_registry.url" not in str(caught.value)  # a run-time failure
    assert "/schemas/ids/" in str(caught.value)
    assert committed_offsets(kafka_bootstrap, config.kafka.group_id, pages) == []
    dead = TopicReader(kafka_bootstrap, dlq, None)
    assert dead.read_quiet(1.0) == []
    dead.close()


def test_scorer_produce_writes_confluent_frames_the_scorer_reads(
    kafka_bootstrap: str, redis_url: str, registry_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq")
    config = confluent_config(kafka_bootstrap, redis_url, registry_url, pages, out, dlq)
    records = [
        {**view("p1", "L1", "/pricing"), "occurred_at": format_time(T0_MS)},
        {**view("p2", "L1", "/demo"), "occurred_at": format_time(T0_MS)},
        {**view("p3", "L1", "/pricing"), "occurred_at": format_time(T0_MS)},
    ]
    texts = [(json.dumps(r) + "\n").encode() for r in records]
    producer = Producer(producer_settings(config))
    sender = Sender(
        producer, Routing.of(config, {}, None, None), codec_of=codecs_for(config)
    )

    stats = sender.send([Line("in.jsonl", n, t) for n, t in enumerate(texts, 1)])

    assert stats.produced == {pages: 3} and not stats.bad and stats.failed == 0
    # Framed with the page-view schema, registered under the topic's subject.
    written = TopicReader(kafka_bootstrap, pages, None)
    values = [m.value() for m in written.read_until(lambda ms: len(ms) >= 3)]
    written.close()
    latest = get_json(f"{registry_url}/subjects/{pages}-value/versions/latest")
    assert json.loads(latest["schema"])["name"] == "PageView"
    frames = [read_framed(registry_url, value) for value in values]
    assert [schema_id for schema_id, _ in frames] == [latest["id"]] * 3
    # One key per lead, so one partition, in the order of the lines.
    assert [record["url"] for _, record in frames] == ["/pricing", "/demo", "/pricing"]

    outputs = TopicReader(kafka_bootstrap, out, None)
    with running_scorer(config):
        outputs.read_until(lambda messages: len(messages) >= 4)
    outputs.close()
    events = [read_framed(registry_url, m.value())[1] for m in outputs.messages]
    assert [(e["type"], e["score"], e["source_event_id"]) for e in events] == [
        ("score_changed", 20.0, "p1"),
        ("score_changed", 50.0, "p2"),
        ("score_changed", 70.0, "p3"),
        ("mql_crossed", 70.0, "p3"),
    ]


def committed_offsets(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        found = consumer.committed(partitions, timeout=10)
    finally:
        consumer.close()
    return [tp.offset for tp in found if tp.offset >= 0]
