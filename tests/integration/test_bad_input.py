"""Bad input loses nothing: every unscorable record reaches the dead-letter
topic once, with its bytes and the reason, and the good records around it
are scored as a replay of only the good ones scores them.

The malformed records are built so that their reason is known by
construction (a truncated Avro body is always `bad_avro`, a record without
`url` always `missing_field`); the test compares what the scorer says with
that, record by record, through the source offset in the dead letter's
headers.
"""

import io
import json
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from harness import make_config, running_scorer

from scorer.config import Config
from scorer.events import format_time
from scorer.metrics import Metrics
from scorer.replay import Line, Replay
from scorer.wire import (
    HEADER_BYTES,
    INPUT_SCHEMAS,
    SCORE_SCHEMA,
    SINGLE_OBJECT_MARKER,
    JsonCodec,
    SchemaCatalog,
    make_codec,
)

T0_MS = 1_750_000_000_000
WAIT_S = 120.0
SEED = 20261204
# The test producer's limit: what a Java client sends by default (1 MiB),
# above librdkafka's 1,000,000 that binds the scorer's own producer.
PRODUCER_MAX_BYTES = 1_048_576
NEAR_LIMIT_BYTES = 990_000  # still fits the scorer's dead-letter copy
OVER_SCORER_LIMIT_BYTES = 1_040_000  # the broker takes it; the copy cannot

JSON = JsonCodec()
AVRO = make_codec("avro")
OUTPUT_SCHEMA = SchemaCatalog.load().newest(SCORE_SCHEMA)
assert OUTPUT_SCHEMA is not None
SCORE_HEADER = SINGLE_OBJECT_MARKER + OUTPUT_SCHEMA.fingerprint
# Writes any `type`, so that an unknown one reaches the scorer.
PAGE_AVRO = make_codec("avro", schema_name=INPUT_SCHEMAS["page_view"])


@dataclass(slots=True)
class Sent:
    """One produced record and what the scorer should make of it."""

    key: bytes | None
    value: bytes | None
    reason: str | None  # None: a good record
    record: dict[str, Any] | None = None  # good records: the replay's input
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = -1
    offset: int = -1


# -- records ---------------------------------------------------------------


def page_view(event_id: str, lead: str, at_ms: int, url: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": format_time(at_ms),
        "url": url,
        "category": None,
        "referrer": None,
    }


def webinar(event_id: str, lead: str, at_ms: int, minutes: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "webinar",
        "occurred_at": format_time(at_ms),
        "webinar_id": "launch",
        "status": "attended",
        "minutes_watched": minutes,
    }


def download(event_id: str, lead: str, at_ms: int, kind: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "content_download",
        "occurred_at": format_time(at_ms),
        "asset_id": f"asset-{event_id}",
        "asset_type": kind,
    }


def firmographics(lead: str, at_ms: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "lead_id": lead,
        "type": "firmographics",
        "company": None,
        "employees": None,
        "industry": None,
        "title": None,
        "country": None,
        "updated_at": format_time(at_ms),
    }
    record.update(fields)
    return record


URLS = ("/pricing", "/demo", "/blog/a", "/blog/b", "/careers", "/about", "/")


def good_events(prefix: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for n in range(count):
        lead, event_id, at_ms = f"{prefix}{n % 150}", f"{prefix}e{n}", T0_MS + n * 9000
        kind = rng.random()
        if kind < 0.7:
            events.append(page_view(event_id, lead, at_ms, rng.choice(URLS)))
        elif kind < 0.85:
            events.append(webinar(event_id, lead, at_ms, rng.choice((5.0, 40.0))))
        else:
            events.append(download(event_id, lead, at_ms, "whitepaper"))
    return events


def good_firmographics(count: int) -> list[dict[str, Any]]:
    titles = ("VP Sales", "Engineer", "Head of IT", None)
    return [
        firmographics(
            f"f-{n % 100}",
            T0_MS + n * 1000,
            employees=100 * (n % 40),
            industry="software" if n % 3 else "retail",
            title=titles[n % 4],
        )
        for n in range(count)
    ]


# -- malformed records -------------------------------------------------------

# Each maker turns a serial number into one malformed value and the reason the
# scorer must give for it.
Maker = Callable[[int], tuple[bytes | None, str]]


def json_makers() -> dict[str, Maker]:
    def base(n: int) -> dict[str, Any]:
        return page_view(f"xj{n}", f"x-j{n}", T0_MS + n, "/pricing")

    def text(record: Any) -> bytes:
        return json.dumps(record).encode()

    def without(name: str) -> Maker:
        def make(n: int) -> tuple[bytes, str]:
            kept = {k: v for k, v in base(n).items() if k != name}
            return text(kept), "missing_field"

        return make

    def null(name: str) -> Maker:
        return lambda n: (text({**base(n), name: None}), "null_field")

    makers: dict[str, Maker] = {
        "truncated JSON": lambda n: (text(base(n))[: 1 + n % 60], "bad_json"),
        "corrupted JSON": lambda n: (text(base(n)).replace(b":", b";", 1), "bad_json"),
        "invalid UTF-8": lambda n: (text(base(n)).replace(b"/", b"\xff"), "bad_json"),
        "NaN literal": lambda n: (
            text(webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0)).replace(b"1.0", b"NaN"),
            "bad_json",
        ),
        "Infinity literal": lambda n: (
            text(webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0)).replace(
                b"1.0", b"-Infinity"
            ),
            "bad_json",
        ),
        "number beyond float": lambda n: (
            text(webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0)).replace(b"1.0", b"1e999"),
            "not_finite",
        ),
        "lone surrogate": lambda n: (
            text(base(n)).replace(b"/pricing", b"/\\ud800"),
            "bad_json",
        ),
        "deeply nested": lambda n: (b"[" * 50_000 + b"]" * 50_000, "bad_json"),
        "empty value": lambda n: (b"", "bad_json"),
        "JSON array": lambda n: (text([base(n)]), "not_an_object"),
        "JSON string": lambda n: (b'"page_view"', "not_an_object"),
        "null value": lambda n: (None, "null_value"),
        "unknown type": lambda n: (text({**base(n), "type": "sale"}), "unknown_type"),
        "firmographics on an event topic": lambda n: (
            text(firmographics(f"x-j{n}", T0_MS)),
            "wrong_topic",
        ),
        "empty lead id": lambda n: (text({**base(n), "lead_id": ""}), "empty_field"),
        "blank event id": lambda n: (
            text({**base(n), "event_id": "  "}),
            "empty_field",
        ),
        "control character in lead id": lambda n: (
            text({**base(n), "lead_id": "x\u0007"}),
            "bad_value",
        ),
        "lead id as a number": lambda n: (
            text({**base(n), "lead_id": n}),
            "wrong_type",
        ),
        "url as a boolean": lambda n: (text({**base(n), "url": True}), "wrong_type"),
        "category as a list": lambda n: (
            text({**base(n), "category": ["pricing"]}),
            "wrong_type",
        ),
        "time as epoch ms": lambda n: (
            text({**base(n), "occurred_at": T0_MS}),
            "wrong_type",
        ),
        "minutes as text": lambda n: (
            text(
                {**webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0), "minutes_watched": "ten"}
            ),
            "wrong_type",
        ),
        "negative minutes": lambda n: (
            text(webinar(f"xj{n}", f"x-j{n}", T0_MS, -1.0)),
            "bad_value",
        ),
        "unknown webinar status": lambda n: (
            text({**webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0), "status": "watched"}),
            "bad_value",
        ),
        "url of 5,000 chars": lambda n: (
            text({**base(n), "url": "/" * 5000}),
            "too_long",
        ),
        "event id of 201 chars": lambda n: (
            text({**base(n), "event_id": "e" * 201}),
            "too_long",
        ),
        "time at epoch 0": lambda n: (
            text({**base(n), "occurred_at": "1970-01-01T00:00:00Z"}),
            "timestamp_out_of_range",
        ),
        "time in 2999": lambda n: (
            text({**base(n), "occurred_at": "2999-01-01T00:00:00Z"}),
            "timestamp_out_of_range",
        ),
        "time without zone": lambda n: (
            text({**base(n), "occurred_at": "2025-06-01T10:00:00"}),
            "bad_timestamp",
        ),
        "date only": lambda n: (
            text({**base(n), "occurred_at": "2025-06-01"}),
            "bad_timestamp",
        ),
        "no such day": lambda n: (
            text({**base(n), "occurred_at": "2025-02-30T00:00:00Z"}),
            "bad_timestamp",
        ),
        "time without seconds": lambda n: (
            text({**base(n), "occurred_at": "2025-06-01T10:00+05:30"}),
            "bad_timestamp",
        ),
        "offset without colon": lambda n: (
            text({**base(n), "occurred_at": "2025-06-01T10:00:00+0530"}),
            "bad_timestamp",
        ),
        "week date": lambda n: (
            text({**base(n), "occurred_at": "2025-W22-7T10:00:00Z"}),
            "bad_timestamp",
        ),
        "integer beyond float": lambda n: (
            text(webinar(f"xj{n}", f"x-j{n}", T0_MS, 1.0)).replace(
                b"1.0", b"1" + b"0" * 400
            ),
            "bad_value",
        ),
    }
    for name in ("event_id", "lead_id", "type", "occurred_at", "url"):
        makers[f"missing {name}"] = without(name)
        makers[f"null {name}"] = null(name)
    return makers


def avro_makers() -> dict[str, Maker]:
    def base(n: int, **changes: Any) -> dict[str, Any]:
        return {**page_view("QQQQ", f"x-a{n}", T0_MS + n, "/pricing"), **changes}

    def encoded(record: dict[str, Any]) -> bytes:
        return PAGE_AVRO.encode(record)

    def truncated(n: int) -> tuple[bytes, str]:
        whole = encoded(base(n, category="QQ"))
        return whole[: HEADER_BYTES + n % (len(whole) - HEADER_BYTES)], "bad_avro"

    def far_webinar(n: int, minutes: float) -> bytes:
        return AVRO.encode(webinar(f"xa{n}", f"x-a{n}", T0_MS, minutes))

    return {
        "truncated Avro": truncated,
        "trailing bytes": lambda n: (encoded(base(n)) + b"\x00", "bad_avro"),
        "invalid UTF-8 in a string": lambda n: (
            encoded(base(n)).replace(b"QQQQ", b"\xff\xfe\xff\xfe"),
            "bad_avro",
        ),
        "union branch out of range": lambda n: (
            encoded(base(n, category="QQ")).replace(b"\x02\x04QQ", b"\x7e\x04QQ"),
            "bad_avro",
        ),
        "time beyond year 9999": lambda n: (
            encoded(base(n, occurred_at=2**62)),
            "timestamp_out_of_range",
        ),
        "unknown schema fingerprint": lambda n: (
            SINGLE_OBJECT_MARKER
            + n.to_bytes(8, "little")
            + encoded(base(n))[HEADER_BYTES:],
            "unknown_schema",
        ),
        "wrong marker": lambda n: (
            b"\xc3\x02" + encoded(base(n))[2:],
            "bad_marker",
        ),
        "Schema Registry framing": lambda n: (
            b"\x00" + n.to_bytes(4, "big") + encoded(base(n))[HEADER_BYTES:],
            "bad_marker",
        ),
        "shorter than the header": lambda n: (
            SINGLE_OBJECT_MARKER + b"\x00",
            "bad_marker",
        ),
        "marker alone": lambda n: (SINGLE_OBJECT_MARKER, "bad_marker"),
        "empty value": lambda n: (b"", "bad_marker"),
        "JSON on an Avro topic": lambda n: (
            json.dumps(base(n)).encode(),
            "bad_marker",
        ),
        "null value": lambda n: (None, "null_value"),
        "empty lead id": lambda n: (encoded(base(n, lead_id="")), "empty_field"),
        "control character in lead id": lambda n: (
            encoded(base(n, lead_id="x\u0000")),
            "bad_value",
        ),
        "unknown type": lambda n: (encoded(base(n, type="sale")), "unknown_type"),
        # Refused by its header: the body is not even Avro.
        "an output record's header on an event topic": lambda n: (
            SCORE_HEADER + b"\xff" * (n % 50),
            "unknown_type",
        ),
        "firmographics on an event topic": lambda n: (
            AVRO.encode(firmographics(f"x-a{n}", T0_MS)),
            "wrong_topic",
        ),
        "NaN minutes": lambda n: (far_webinar(n, float("nan")), "not_finite"),
        "infinite minutes": lambda n: (far_webinar(n, float("inf")), "not_finite"),
        "url of 5,000 chars": lambda n: (encoded(base(n, url="/" * 5000)), "too_long"),
        "empty url": lambda n: (encoded(base(n, url="")), "empty_field"),
        "time at epoch 0": lambda n: (
            encoded(base(n, occurred_at=0)),
            "timestamp_out_of_range",
        ),
        "time in 3000": lambda n: (
            encoded(base(n, occurred_at=32_503_680_000_000)),
            "timestamp_out_of_range",
        ),
    }


def firmographics_makers() -> dict[str, Maker]:
    def base(n: int, **changes: Any) -> dict[str, Any]:
        return {**firmographics(f"x-f{n}", T0_MS + n, company="QQ"), **changes}

    def encoded(record: dict[str, Any]) -> bytes:
        return AVRO.encode(record)

    return {
        "truncated Avro": lambda n: (encoded(base(n))[: HEADER_BYTES + 3], "bad_avro"),
        "event on the firmographics topic": lambda n: (
            encoded(page_view(f"xf{n}", f"x-f{n}", T0_MS, "/pricing")),
            "wrong_topic",
        ),
        "negative head count": lambda n: (encoded(base(n, employees=-5)), "bad_value"),
        "head count of 10^8": lambda n: (
            encoded(base(n, employees=10**8)),
            "bad_value",
        ),
        "updated at epoch 0": lambda n: (
            encoded(base(n, updated_at=0)),
            "timestamp_out_of_range",
        ),
        "company of 600 chars": lambda n: (
            encoded(base(n, company="c" * 600)),
            "too_long",
        ),
        "empty lead id": lambda n: (encoded(base(n, lead_id="")), "empty_field"),
        "JSON on an Avro topic": lambda n: (json.dumps(base(n)).encode(), "bad_marker"),
    }


def malformed(
    makers: dict[str, Maker], count: int, prefix: str
) -> Iterator[tuple[str, Sent]]:
    """`count` malformed records, the makers taken in turn."""
    names = sorted(makers)
    for n in range(count):
        name = names[n % len(names)]
        value, reason = makers[name](n)
        yield name, Sent(f"{prefix}{n}".encode(), value, reason)


def bad_tombstones() -> list[tuple[str, Sent]]:
    return [
        ("tombstone without key", Sent(None, None, "missing_key")),
        ("tombstone with a binary key", Sent(b"\xff\xfe", None, "bad_key")),
        ("tombstone with a blank key", Sent(b"   ", None, "bad_key")),
        (
            "tombstone with a key too long for a lead id",
            Sent(b"L" * 201, None, "bad_key"),
        ),
    ]


def near_the_limit() -> list[tuple[str, Sent]]:
    """Values up to just below the broker's 1 MiB limit (message.max.bytes)."""
    pad = "/" * NEAR_LIMIT_BYTES
    json_page = page_view("big-j", "x-big", T0_MS, pad)
    avro_page = page_view("big-a", "x-big", T0_MS, pad)
    return [
        ("json: url of 990 kB", Sent(b"x-big", JSON.encode(json_page), "too_long")),
        ("avro: url of 990 kB", Sent(b"x-big", AVRO.encode(avro_page), "too_long")),
        (
            "json: 1,040 kB of garbage",
            Sent(b"x-big", b"#" * OVER_SCORER_LIMIT_BYTES, "bad_json"),
        ),
    ]


# -- Kafka -------------------------------------------------------------------


def produce_tracked(bootstrap: str, topic: str, records: list[Sent]) -> None:
    """Produce in order (idempotent: no reordering) and note each offset."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "message.max.bytes": PRODUCER_MAX_BYTES,
        }
    )
    failures: list[str] = []

    def noted(sent: Sent) -> Callable[[Any, Message], None]:
        def on_delivery(error: Any, message: Message) -> None:
            if error is not None:
                failures.append(str(error))
                return
            sent.partition, sent.offset = message.partition(), message.offset()

        return on_delivery

    for index, sent in enumerate(records):
        producer.produce(
            topic,
            value=sent.value,
            key=sent.key,
            headers=sent.headers,
            on_delivery=noted(sent),
        )
        if index % 500 == 0:
            producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    assert failures == []


def read_everything(bootstrap: str, topic: str) -> list[Message]:
    """Every message of `topic` up to its current end, read without waiting."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p))
            for p in partitions
        }
        consumer.assign(
            [TopicPartition(topic, p, low) for p, (low, _) in marks.items()]
        )
        ends = {p: high for p, (low, high) in marks.items() if high > low}
        return _consume_to(consumer, topic, ends)
    finally:
        consumer.close()


def _consume_to(consumer: Consumer, topic: str, ends: dict[int, int]) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    while not _reached(consumer, topic, ends):
        assert time.monotonic() < deadline, f"read {len(messages)} of {topic}"
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None, message.error()
            messages.append(message)
    return messages


def _reached(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    # Positions, not counts: a transaction's markers take offsets too.
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(tp.offset >= ends[tp.partition] for tp in positions)


def counter_total(metrics: Metrics, name: str, **labels: str) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            wanted = all(sample.labels.get(k) == v for k, v in labels.items())
            if sample.name == name and wanted:
                total += sample.value
    return total


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- the test ----------------------------------------------------------------


def mixed(
    good: list[dict[str, Any]],
    codec: Any,
    bad: list[tuple[str, Sent]],
    rng: random.Random,
) -> list[Sent]:
    records = [Sent(str(r["lead_id"]).encode(), codec.encode(r), None, r) for r in good]
    for number, (_name, sent) in enumerate(bad):
        sent.headers = [("trace", f"bad-{number}".encode())]
        records.append(sent)
    rng.shuffle(records)
    return records


def test_ten_thousand_malformed_records_all_reach_the_dead_letter_topic(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    json_topic, avro_topic, firmo_topic, out, dlq = fresh_topics(
        "json", "avro", "firmo", "out", "dlq"
    )
    config = make_config(
        kafka_bootstrap,
        redis_url,
        {
            "events": [
                {"name": json_topic, "format": "json"},
                {"name": avro_topic, "format": "avro"},
            ],
            "firmographics": {"name": firmo_topic, "format": "avro"},
            "output": {"name": out, "format": "json"},
            "dead_letter": dlq,
        },
    )
    rng = random.Random(SEED)
    big = near_the_limit()
    bad_json = [*malformed(json_makers(), 6000, "x-j"), big[0], big[2]]
    bad_avro = [*malformed(avro_makers(), 4000, "x-a"), big[1]]
    bad_firmo = [*malformed(firmographics_makers(), 600, "x-f"), *bad_tombstones()]
    inputs = {
        json_topic: mixed(good_events("j-", 1500, rng), JSON, bad_json, rng),
        avro_topic: mixed(good_events("a-", 1500, rng), AVRO, bad_avro, rng),
        firmo_topic: mixed(good_firmographics(300), AVRO, bad_firmo, rng),
    }
    for topic, records in inputs.items():
        produce_tracked(kafka_bootstrap, topic, records)
    produced = sum(len(records) for records in inputs.values())

    metrics = Metrics()
    with running_scorer(config, metrics) as pipeline:
        wait_until(
            lambda: counter_total(metrics, "scorer_records_total") >= produced,
            "every record to be handled",
        )
        store = pipeline.scorer.store
        live_states = {lead: store.snapshot(lead) for lead in store.lead_ids()}
    letters = read_everything(kafka_bootstrap, dlq)
    outputs = [JSON.decode(m.value()) for m in read_everything(kafka_bootstrap, out)]

    names = {
        "json": [n for n, _ in bad_json],
        "avro": [n for n, _ in bad_avro],
        "firmographics": [n for n, _ in bad_firmo],
    }
    print_table(inputs, names, [json_topic, avro_topic, firmo_topic])
    expect_dead_letters(inputs, letters)
    expect_dead_letter_metrics(inputs, metrics)
    expect_good_records_scored(config, inputs, outputs, live_states)


def print_table(
    inputs: dict[str, list[Sent]], names: dict[str, list[str]], order: list[str]
) -> None:
    counts: dict[str, Counter[str]] = {}
    for kind, topic in zip(names, order, strict=True):
        counts[kind] = Counter(s.reason or "scored" for s in inputs[topic])
    reasons = [*sorted(set().union(*counts.values()) - {"scored"}), "scored"]
    print(f"\n{'where it went':<24}" + "".join(f"{k:>15}" for k in counts) + "  total")
    for reason in reasons:
        row = [counts[kind][reason] for kind in counts]
        print(f"{reason:<24}" + "".join(f"{n:>15,}" for n in row) + f"{sum(row):>7,}")
    malformed_total = sum(
        n for c in counts.values() for r, n in c.items() if r != "scored"
    )
    print(f"{'malformed in all':<24}{malformed_total:>45,}")
    for kind, kinds in names.items():
        print(f"{kind} kinds of malformed record: {len(set(kinds))}")


def expect_dead_letters(inputs: dict[str, list[Sent]], letters: list[Message]) -> None:
    expected = {
        (topic, s.partition, s.offset): s
        for topic, records in inputs.items()
        for s in records
        if s.reason is not None
    }
    assert len(expected) >= 10_000

    sources = Counter(source_of(m) for m in letters)
    assert [k for k, n in sources.items() if n > 1] == []  # exactly once
    assert set(sources) == set(expected)

    wrong = []
    for message in letters:
        sent = expected[source_of(message)]
        headers = dict(message.headers())
        if headers["scorer.error.reason"].decode() != sent.reason:
            wrong.append((sent.reason, headers["scorer.error.reason"]))
        assert message.key() == sent.key
        if "scorer.error.omitted_bytes" in headers:
            assert sent.value is not None and len(sent.value) > 1_000_000
            assert message.value() is None
            continue
        assert message.value() == sent.value
        assert headers["trace"] == sent.headers[0][1]
        assert headers["scorer.error.class"] == b"InvalidRecord"
    assert wrong == []


def source_of(message: Message) -> tuple[str, int, int]:
    headers = dict(message.headers())
    return (
        headers["scorer.error.topic"].decode(),
        int(headers["scorer.error.partition"]),
        int(headers["scorer.error.offset"]),
    )


def expect_dead_letter_metrics(inputs: dict[str, list[Sent]], metrics: Metrics) -> None:
    for topic, records in inputs.items():
        reasons = Counter(s.reason for s in records if s.reason is not None)
        counted = {
            reason: counter_total(
                metrics, "scorer_dead_lettered_total", topic=topic, reason=reason
            )
            for reason in reasons
        }
        assert counted == {reason: float(n) for reason, n in reasons.items()}
        dead = counter_total(
            metrics, "scorer_records_total", topic=topic, outcome="dead_lettered"
        )
        assert dead == sum(reasons.values())


def expect_good_records_scored(
    config: Any,
    inputs: dict[str, list[Sent]],
    outputs: list[dict[str, Any]],
    live_states: dict[str, Any],
) -> None:
    good = [s.record for records in inputs.values() for s in records if s.record]
    replay = Replay(config, errors=io.StringIO())
    lines = [Line("good", n, json.dumps(r).encode()) for n, r in enumerate(good, 1)]
    replayed = io.BytesIO()
    stats = replay.run(lines, replayed)
    assert sum(stats.bad.values()) == 0
    expected = [json.loads(line) for line in replayed.getvalue().splitlines()]

    assert len(expected) > 2000
    assert per_lead(outputs) == per_lead(expected)
    assert not [e for e in outputs if str(e["lead_id"]).startswith("x-")]
    replay_states = {
        lead: replay.store.snapshot(lead) for lead in replay.store.lead_ids()
    }
    assert live_states == replay_states


def per_lead(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["lead_id"]].append(event)
    return dict(grouped)


def test_a_producer_refuses_a_record_over_the_broker_limit(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    # Above message.max.bytes nothing reaches the scorer: the producer says
    # so at once, which makes it the producer's problem.
    (topic,) = fresh_topics("huge", partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    with pytest.raises(KafkaException) as caught:
        producer.produce(topic, value=b"x" * 2_000_000)

    assert caught.value.args[0].name() == "MSG_SIZE_TOO_LARGE"


# -- unexpected errors and tombstones ----------------------------------------


def test_an_unexpected_error_dead_letters_the_record_and_scoring_goes_on(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = one_json_topic(kafka_bootstrap, redis_url, fresh_topics)
    pages = config.topics.events[0].name
    secret = "jane.doe@example.com"
    decode = JsonCodec.decode

    def buggy(self: JsonCodec, value: bytes) -> dict[str, Any]:
        # A stand-in for a bug in a decoder: its message quotes the record.
        if secret.encode() in value:
            raise KeyError(f"cannot handle {secret}")
        return decode(self, value)

    monkeypatch.setattr(JsonCodec, "decode", buggy)
    records = [
        page_view("p1", "L1", T0_MS, "/pricing"),
        page_view("p2", "L2", T0_MS, f"/pricing?ref={secret}"),
        page_view("p3", "L3", T0_MS, "/demo"),
    ]
    sent, metrics, letters, outputs = three_scored(config, records)
    scored = [JSON.decode(m.value())["lead_id"] for m in outputs]

    assert scored == ["L1", "L3"]
    assert [m.value() for m in letters] == [sent[1].value]
    headers = dict(letters[0].headers())
    assert headers["scorer.error.reason"] == b"internal_error"
    assert headers["scorer.error.class"] == b"KeyError"
    assert secret.encode() not in headers["scorer.error.message"]
    assert (
        b"unexpected KeyError at test_bad_input.py:" in headers["scorer.error.message"]
    )
    assert (
        counter_total(
            metrics, "scorer_dead_lettered_total", topic=pages, reason="internal_error"
        )
        == 1.0
    )
    assert "reason=internal_error" in caplog.text
    assert secret not in caplog.text


def test_a_record_whose_outputs_cannot_be_encoded_is_dead_lettered_and_committed(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    """An infinite score (from a config past validation) has no JSON form.

    The scorer exited at it, and met it again after every restart.
    """
    config = one_json_topic(kafka_bootstrap, redis_url, fresh_topics)
    rules = list(config.scoring.engagement_rules)
    demo = [rule.name for rule in rules].index("demo_request")
    rules[demo] = rules[demo].model_copy(update={"points": math.inf, "cap": None})
    scoring = config.scoring.model_copy(update={"engagement_rules": tuple(rules)})
    config = config.model_copy(update={"scoring": scoring})
    records = [
        page_view("p1", "L1", T0_MS, "/pricing"),
        page_view("p2", "L2", T0_MS, "/demo"),
        page_view("p3", "L3", T0_MS, "/pricing"),
    ]
    sent, metrics, letters, outputs = three_scored(config, records)
    scored = [JSON.decode(m.value()) for m in outputs]

    assert [(e["lead_id"], e["score"]) for e in scored] == [("L1", 20.0), ("L3", 20.0)]
    assert [m.value() for m in letters] == [sent[1].value]
    headers = dict(letters[0].headers())
    assert headers["scorer.error.reason"] == b"output_not_encodable"
    assert headers["scorer.error.offset"] == b"1"
    assert (
        committed(kafka_bootstrap, config.kafka.group_id, config.topics.events[0].name)
        == 3
    )
    dead = counter_total(
        metrics, "scorer_dead_lettered_total", reason="output_not_encodable"
    )
    assert dead == 1.0
    assert counter_total(metrics, "scorer_records_total", outcome="scored") == 2.0


def test_a_record_whose_headers_overfill_its_dead_letter_is_sent_without_them(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    """A thousand empty headers push a 997 kB record over the producer's limit.

    Their framing was not counted, so the scorer produced the full copy,
    librdkafka refused it, and the scorer exited at it after every restart.
    """
    config = one_json_topic(kafka_bootstrap, redis_url, fresh_topics)
    pages, out, dlq = (
        config.topics.events[0].name,
        config.topics.output.name,
        config.topics.dead_letter,
    )
    crowded = Sent(b"L1", b"#" * 996_900, "bad_json", headers=[("h", b"")] * 1000)
    spoofed = Sent(
        b"L2", b"#", "bad_json", headers=[("scorer.error.reason", b"all_good")]
    )
    view = page_view("p3", "L3", T0_MS, "/pricing")
    good = Sent(b"L3", JSON.encode(view), None, view)
    produce_tracked(kafka_bootstrap, pages, [crowded, spoofed, good])

    metrics = Metrics()
    with running_scorer(config, metrics):
        wait_until(
            lambda: counter_total(metrics, "scorer_records_total") >= 3,
            "three records to be handled",
        )
    letters = read_everything(kafka_bootstrap, dlq)
    outputs = [JSON.decode(m.value()) for m in read_everything(kafka_bootstrap, out)]

    first, second = (m.headers() for m in letters)
    assert letters[0].value() is None
    assert [name for name, _ in first if not name.startswith("scorer.error.")] == []
    assert int(dict(first)["scorer.error.omitted_bytes"]) > 1_000_000 - 512
    assert [v for k, v in second if k == "scorer.error.reason"] == [b"bad_json"]
    assert [(o["lead_id"], o["score"]) for o in outputs] == [("L3", 20.0)]


def one_json_topic(kafka_bootstrap: str, redis_url: str, fresh_topics: Any) -> Config:
    """A config reading one fresh JSON event topic, writing JSON outputs."""
    pages, out, dlq = fresh_topics("pages", "out", "dlq", partitions=1)
    return make_config(
        kafka_bootstrap,
        redis_url,
        {
            "events": [{"name": pages, "format": "json"}],
            "output": {"name": out, "format": "json"},
            "dead_letter": dlq,
        },
    )


def three_scored(
    config: Config, records: list[dict[str, Any]]
) -> tuple[list[Sent], Metrics, list[Message], list[Message]]:
    """Produce three records to the one event topic and score them.

    Returns what was sent, the scorer's metrics, the dead letters and the
    outputs.
    """
    topics = config.topics
    bootstrap = config.kafka.bootstrap_servers
    sent = [Sent(str(r["lead_id"]).encode(), JSON.encode(r), None, r) for r in records]
    produce_tracked(bootstrap, topics.events[0].name, sent)

    metrics = Metrics()
    with running_scorer(config, metrics):
        wait_until(
            lambda: counter_total(metrics, "scorer_records_total") >= 3,
            "three records to be handled",
        )
    letters = read_everything(bootstrap, topics.dead_letter)
    return sent, metrics, letters, read_everything(bootstrap, topics.output.name)


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offset `group` committed on partition 0 of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (found,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return int(found.offset)


def test_a_tombstone_leaves_only_its_expiring_memory_in_redis(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    fresh_topics: Any,
) -> None:
    pages, firmo, out, dlq = fresh_topics("pages", "firmo", "out", "dlq")
    config = make_config(
        kafka_bootstrap,
        redis_url,
        {
            "events": [{"name": pages, "format": "json"}],
            "firmographics": {"name": firmo, "format": "json"},
            "output": {"name": out, "format": "json"},
            "dead_letter": dlq,
        },
    )
    gone, kept = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    events = [
        page_view(f"{lead}-view-{n}", lead, T0_MS + n * 60_000, url)
        for lead in (gone, kept)
        for n, url in enumerate(("/pricing", "/blog/a", "/blog/b", "/demo"))
    ]
    events.append(webinar(f"{gone}-webinar", gone, T0_MS + 600_000, 30.0))
    profile = firmographics(gone, T0_MS, company="Acme", title="Chief Marketer")
    sent_events = [Sent(r["lead_id"].encode(), JSON.encode(r), None, r) for r in events]
    produce_tracked(kafka_bootstrap, pages, sent_events)
    produce_tracked(
        kafka_bootstrap, firmo, [Sent(gone.encode(), JSON.encode(profile), None)]
    )

    metrics = Metrics()
    with running_scorer(config, metrics):
        wait_until(
            lambda: counter_total(metrics, "scorer_records_total") >= len(events) + 1,
            "the lead's events to be scored",
        )
        assert mentions(redis_client, gone)  # the scan below can find it
        produce_tracked(kafka_bootstrap, firmo, [Sent(gone.encode(), None, None)])
        wait_until(
            lambda: (
                counter_total(
                    metrics, "scorer_records_total", topic=firmo, outcome="forgotten"
                )
                == 1
            ),
            "the tombstone to be applied",
        )

    # The erasure's memory, for a redelivered tombstone: the key names the
    # lead, and the field holds the tombstone's id and outcome, nothing else.
    prefix = config.redis.key_prefix
    memory_key = f"{prefix}:{{{gone}}}:s"
    assert mentions(redis_client, gone) == [(memory_key, "name")]
    assert redis_client.hkeys(memory_key) == [b"x"]
    assert 0 < redis_client.ttl(memory_key) <= 86_400
    kept_keys = {key for key, _ in mentions(redis_client, kept)}
    assert kept_keys == {f"{prefix}:{{{kept}}}:{part}" for part in ("s", "seen", "out")}


def mentions(client: redis.Redis, text: str) -> list[tuple[str, str]]:
    """(key, where) for every key whose name, fields, members or values hold text."""
    needle = text.encode()
    found = []
    for key in client.scan_iter(count=1000):
        for where, blob in contents(client, key):
            if needle in blob:
                found.append((key.decode(), where))
    return found


def contents(client: redis.Redis, key: bytes) -> Iterator[tuple[str, bytes]]:
    yield "name", key
    kind = client.type(key).decode()
    if kind == "hash":
        for name, value in client.hgetall(key).items():
            yield "field", name
            yield "value", value
    elif kind == "zset":
        for member in client.zrange(key, 0, -1):
            yield "member", member
    elif kind == "set":
        for member in client.smembers(key):
            yield "member", member
    elif kind == "list":
        for item in client.lrange(key, 0, -1):
            yield "item", item
    elif kind == "string":
        yield "value", client.get(key) or b""
    else:
        raise AssertionError(f"key {key!r} has a type the scan cannot read: {kind}")
