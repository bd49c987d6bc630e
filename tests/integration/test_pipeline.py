"""The live scorer end to end: real Kafka in, real Redis state, Kafka out."""

import io
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from harness import (
    TopicReader,
    java_partition,
    make_config,
    output_codec,
    produce,
    running_scorer,
)

from scorer import accesslog
from scorer.events import Firmographics, format_time
from scorer.replay import Line, Replay
from scorer.wire import JsonCodec, make_codec

ROOT = Path(__file__).resolve().parents[2]
ACCESS_LOG = ROOT / "examples" / "access_log" / "apache_logs"
ACCESS_RULES = ROOT / "examples" / "access_log" / "rules.yaml"
T0_MS = 1_750_000_000_000


def page_view(event_id: str, lead: str, at_ms: int, url: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": format_time(at_ms),
        "url": url,
    }


def firmographics(lead: str, at_ms: int, **fields: Any) -> dict[str, Any]:
    record = {
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


def topics_config(events: list[str], fmt: str, out: str, dlq: str, firmo: str | None):
    config: dict[str, Any] = {
        "events": [{"name": name, "format": fmt} for name in events],
        "output": {"name": out, "format": fmt},
        "dead_letter": dlq,
    }
    if firmo is not None:
        config["firmographics"] = {"name": firmo, "format": fmt}
    return config


def test_avro_events_become_score_and_mql_events(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, webinars, firmo, out, dlq = fresh_topics(
        "pages", "webinars", "firmo", "out", "dlq"
    )
    config = make_config(
        kafka_bootstrap,
        redis_url,
        topics_config([pages, webinars], "avro", out, dlq, firmo),
    )
    avro = make_codec("avro")
    record = firmographics("L1", T0_MS, employees=800, title="VP Sales")
    produce(kafka_bootstrap, firmo, [record], avro)
    produce(
        kafka_bootstrap,
        pages,
        [page_view("e1", "L1", T0_MS, "/pricing"), page_view("e2", "L2", T0_MS, "/x")],
        avro,
    )
    webinar = {
        "event_id": "w1",
        "lead_id": "L1",
        "type": "webinar",
        "occurred_at": format_time(T0_MS + 60_000),
        "webinar_id": "launch",
        "status": "attended",
        "minutes_watched": 40.0,
    }
    produce(kafka_bootstrap, webinars, [webinar], avro)

    reader = TopicReader(kafka_bootstrap, out, output_codec(config))
    with running_scorer(config):
        reader.read_until(lambda messages: len(messages) >= 4)
        reader.read_quiet(1.0)
    events = reader.decoded()
    reader.close()

    # Topics are consumed in no fixed order relative to each other, so only
    # the end state and the crossing are certain, not the path to them.
    crossings = [e for e in events if e["type"] == "mql_crossed"]
    assert len(crossings) == 1
    assert crossings[0] == {**events[-1], "type": "mql_crossed"}
    assert crossings[0]["direction"] == "up"
    assert crossings[0]["score"] == 70.0
    assert crossings[0]["fit"] == 35.0
    assert crossings[0]["engagement"] == pytest.approx(35.0, abs=0.01)
    sources = {e["source_event_id"] for e in events}
    fit_op = Firmographics("L1", T0_MS, employees=800, title="VP Sales").op_id
    assert sources == {"e1", "w1", f"L1/{fit_op}"}
    assert all(m.key() == b"L1" for m in reader.messages)
    rules = config.scoring.rules_version.encode()
    for message, event in zip(reader.messages, events, strict=True):
        assert message.headers() == [
            ("type", event["type"].encode()),
            ("rules_version", rules),
        ]


def test_streaming_and_replay_give_the_same_outputs(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    events_topic, out, dlq = fresh_topics("events", "out", "dlq")
    scoring = yaml.safe_load(ACCESS_RULES.read_text())["scoring"]
    config = make_config(
        kafka_bootstrap,
        redis_url,
        topics_config([events_topic], "json", out, dlq, None),
        scoring=scoring,
    )
    with ACCESS_LOG.open() as handle:
        records = list(accesslog.import_log(handle))
    assert len(records) > 1500

    replay = Replay(config, errors=io.StringIO())
    lines = [Line("log", n, json.dumps(r).encode()) for n, r in enumerate(records, 1)]
    replayed = io.BytesIO()
    replay.run(lines, replayed)
    expected = [json.loads(line) for line in replayed.getvalue().splitlines()]

    produce(kafka_bootstrap, events_topic, records, JsonCodec())
    reader = TopicReader(kafka_bootstrap, out, output_codec(config))
    with running_scorer(config) as pipeline:
        reader.read_until(lambda messages: len(messages) >= len(expected))
        reader.read_quiet(1.0)
        store = pipeline.scorer.store
        live_states = {lead: store.snapshot(lead) for lead in store.lead_ids()}
    streamed = [json.loads(m.value()) for m in reader.messages]
    reader.close()

    # Partitions interleave leads differently; each lead's sequence is fixed.
    assert per_lead(streamed) == per_lead(expected)
    replay_states = {
        lead: replay.store.snapshot(lead) for lead in replay.store.lead_ids()
    }
    assert live_states == replay_states
    # Keyed as a Java producer keys them, so a Kafka Streams router can join
    # the outputs with its own topics keyed by lead id.
    placed = {(m.key(), m.partition()) for m in reader.messages}
    assert len({key for key, _ in placed}) > 100
    assert placed == {(key, java_partition(key, 3)) for key, _ in placed}


def per_lead(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["lead_id"]].append(event)
    return dict(grouped)


def test_bad_records_go_to_the_dead_letter_topic_and_good_ones_are_scored(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq", partitions=1)
    config = make_config(
        kafka_bootstrap, redis_url, topics_config([pages], "json", out, dlq, None)
    )
    good = [page_view(f"g{i}", f"L{i}", T0_MS, "/pricing") for i in range(5)]
    bad_values = [
        b"{not json",
        json.dumps({**good[0], "event_id": "b1", "occurred_at": "2025-01-01"}).encode(),
        json.dumps({**good[0], "event_id": "b2", "lead_id": ""}).encode(),
        json.dumps({**good[0], "event_id": "b3", "type": "sale"}).encode(),
        None,
    ]
    values = [JsonCodec().encode(g) for g in good[:3]] + bad_values
    values += [JsonCodec().encode(g) for g in good[3:]]
    keys = ["L0", "L1", "L2", "X", "X", "X", "X", "X", "L3", "L4"]
    produce(kafka_bootstrap, pages, [], None, keys=keys, raw_values=values)

    outputs = TopicReader(kafka_bootstrap, out, JsonCodec())
    dead = TopicReader(kafka_bootstrap, dlq, None)
    with running_scorer(config):
        outputs.read_until(lambda messages: len(messages) >= 5)
        dead.read_until(lambda messages: len(messages) >= 5)
    scored_leads = sorted(e["lead_id"] for e in outputs.decoded())
    letters = dead.messages
    outputs.close()
    dead.close()

    assert scored_leads == ["L0", "L1", "L2", "L3", "L4"]
    reasons = [dict(m.headers())["scorer.error.reason"] for m in letters]
    assert reasons == [
        b"bad_json",
        b"bad_timestamp",
        b"empty_field",
        b"unknown_type",
        b"null_value",
    ]
    first = dict(letters[0].headers())
    assert letters[0].value() == b"{not json"
    assert first["scorer.error.topic"] == pages.encode()
    assert first["scorer.error.class"] == b"InvalidRecord"
    assert int(first["scorer.error.offset"]) == 3


def test_a_firmographic_tombstone_forgets_the_lead(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, firmo, out, dlq = fresh_topics("pages", "firmo", "out", "dlq")
    config = make_config(
        kafka_bootstrap, redis_url, topics_config([pages], "json", out, dlq, firmo)
    )
    json_codec = JsonCodec()
    produce(
        kafka_bootstrap, firmo, [firmographics("gone", T0_MS, title="CEO")], json_codec
    )
    produce(
        kafka_bootstrap,
        pages,
        [
            page_view("p1", "gone", T0_MS, "/pricing"),
            page_view("p2", "kept", T0_MS, "/demo"),
        ],
        json_codec,
    )
    client = redis.Redis.from_url(redis_url)
    prefix = config.redis.key_prefix

    reader = TopicReader(kafka_bootstrap, out, json_codec)
    with running_scorer(config):
        reader.read_until(lambda messages: len(messages) >= 3)
        before = [e for e in reader.decoded() if e["lead_id"] == "gone"]
        produce(kafka_bootstrap, firmo, [None], None, keys=["gone"], raw_values=[None])
        reader.read_until(lambda messages: len(messages) >= 3 + 1 + was_mql(before))
    reader.close()

    erasure = [e for e in reader.decoded() if e["lead_id"] == "gone"][len(before) :]
    assert re.fullmatch(
        f"gone/tombstone:{firmo}:[0-9]+:1", erasure[0]["source_event_id"]
    )
    assert (erasure[0]["score"], erasure[0]["fit"], erasure[0]["engagement"]) == (
        0.0,
        0.0,
        0.0,
    )
    assert erasure[0]["previous_score"] == before[-1]["score"]
    assert [e["direction"] for e in erasure[1:]] == ["down"] * was_mql(before)
    # What remains is the erasure's own memory, and it expires.
    assert client.keys(f"{prefix}:*gone*") == [f"{prefix}:{{gone}}:s".encode()]
    assert client.hkeys(f"{prefix}:{{gone}}:s") == [b"x"]
    assert 0 < client.ttl(f"{prefix}:{{gone}}:s") <= 86_400
    assert client.keys(f"{prefix}:{{kept}}:*")


def was_mql(events: list[dict[str, Any]]) -> int:
    """1 if the last crossing in `events` went up, else 0."""
    crossings = [e["direction"] for e in events if e["type"] == "mql_crossed"]
    return int(crossings[-1:] == ["up"])


def test_a_redelivered_event_changes_nothing_and_republishes_copies(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq", partitions=1)
    config = make_config(
        kafka_bootstrap, redis_url, topics_config([pages], "json", out, dlq, None)
    )
    event = page_view("same", "L1", T0_MS, "/pricing")
    produce(kafka_bootstrap, pages, [event, event], JsonCodec())

    reader = TopicReader(kafka_bootstrap, out, None)
    with running_scorer(config) as pipeline:
        reader.read_until(lambda messages: len(messages) >= 2)
        snapshot = pipeline.scorer.store.snapshot("L1")
    copies = [m.value() for m in reader.messages]
    reader.close()

    assert snapshot is not None and snapshot.score == 20.0
    assert len(copies) == 2 and copies[0] == copies[1]


def test_a_restarted_scorer_resumes_after_the_committed_offsets(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any
) -> None:
    pages, out, dlq = fresh_topics("pages", "out", "dlq")
    config = make_config(
        kafka_bootstrap, redis_url, topics_config([pages], "json", out, dlq, None)
    )
    codec = JsonCodec()
    produce(kafka_bootstrap, pages, [page_view("a", "L1", T0_MS, "/pricing")], codec)
    reader = TopicReader(kafka_bootstrap, out, codec)
    with running_scorer(config):
        reader.read_until(lambda messages: len(messages) >= 1)

    produce(kafka_bootstrap, pages, [page_view("b", "L1", T0_MS + 1, "/demo")], codec)
    with running_scorer(config):
        reader.read_until(lambda messages: len(messages) >= 2)
        reader.read_quiet(1.5)
    sources = [e["source_event_id"] for e in reader.decoded()]
    reader.close()

    assert sources == ["a", "b"]


def wait_until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_missing_output_topic_is_named_at_start(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outputs to it would wait for acks without a word about the topic."""
    (pages,) = fresh_topics("pages")
    missing_out, missing_dlq = f"{pages}-no-out", f"{pages}-no-dlq"
    config = make_config(
        kafka_bootstrap,
        redis_url,
        topics_config([pages], "json", missing_out, missing_dlq, None),
    )

    with caplog.at_level("WARNING", logger="scorer.pipeline"), running_scorer(config):
        wait_until(lambda: "does not exist" in caplog.text)

    messages = [record.getMessage() for record in caplog.records]
    warnings = [message for message in messages if "does not exist" in message]
    assert sorted(warnings) == sorted(
        f"{role} topic {name} does not exist on the broker; records for it "
        "wait until it does"
        for role, name in (("output", missing_out), ("dead_letter", missing_dlq))
    )
