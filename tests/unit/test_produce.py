"""`scorer produce`: routing, formats and bad lines (a stand-in producer)."""

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaError, Producer

from scorer.config import Config, default_config_path, load_config, parse_config
from scorer.errors import ConfigError, InvalidRecord
from scorer.events import TimeBounds, parse_record
from scorer.produce import Format, ProduceStats, Routing, Sender, parse_routes
from scorer.registry import RegistryError
from scorer.replay import Line, Replay, read_lines
from scorer.wire import make_codec
from tests.unit.command import scorer


class RecordingProducer:
    """Keeps what would be sent; acknowledges everything on flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._callbacks: list[Any] = []

    def produce(
        self, topic: str, key: bytes, value: bytes, headers: Any, on_delivery: Any
    ) -> None:
        assert headers is None  # scorer produce sends no headers
        self.sent.append((topic, key, value))
        self._callbacks.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for callback in self._callbacks:
            callback(None, None)
        self._callbacks.clear()
        return 0


def lines(*records: dict[str, Any] | str) -> list[Line]:
    texts = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return [Line("in.jsonl", n, (t + "\n").encode()) for n, t in enumerate(texts, 1)]


VIEW = {"event_id": "e1", "lead_id": "L1", "type": "page_view", "url": "/pricing"}
VIEW["occurred_at"] = "2026-12-01T10:00:00.000Z"
FIRMO = {
    "lead_id": "L2",
    "type": "firmographics",
    "company": None,
    "employees": 300,
    "industry": None,
    "title": None,
    "country": None,
    "updated_at": "2026-12-01T10:00:00.000Z",
}


def untyped_config() -> Config:
    """The packaged config with event topics that do not say what they carry."""
    raw = yaml.safe_load(default_config_path().read_text())
    for topic in raw["topics"]["events"]:
        del topic["types"]
    return parse_config(raw)


def test_records_go_by_route_then_firmographics_then_topic_then_config() -> None:
    config = untyped_config()
    routing = Routing.of(config, {"webinar": "w"}, None, None)

    assert routing.topic_for({"type": "webinar"}) == "w"
    assert routing.topic_for({"type": "firmographics"}) == "crm.firmographics"
    with pytest.raises(Exception, match="no topic for type 'page_view'"):
        routing.topic_for({"type": "page_view"})

    routing = Routing.of(config, {"webinar": "w"}, "all", None)
    assert routing.topic_for({"type": "page_view"}) == "all"
    # On an event topic the scorer would dead-letter them as wrong_topic.
    assert routing.topic_for({"type": "firmographics"}) == "crm.firmographics"
    assert routing.topic_for({"type": "webinar"}) == "w"

    routing = Routing.of(config, {"firmographics": "crm2"}, "all", None)
    assert routing.topic_for({"type": "firmographics"}) == "crm2"


def test_the_packaged_config_routes_each_type_to_its_topic() -> None:
    routing = Routing.of(load_config(environ={}), {"webinar": "w"}, None, None)

    assert routing.topic_for({"type": "page_view"}) == "web.page_views"
    assert routing.topic_for({"type": "content_download"}) == (
        "marketing.content_downloads"
    )
    assert routing.topic_for({"type": "webinar"}) == "w"
    assert routing.topic_for({"type": "firmographics"}) == "crm.firmographics"


def test_a_record_without_a_route_says_how_to_give_one() -> None:
    routing = Routing.of(untyped_config(), {}, None, None)

    with pytest.raises(InvalidRecord) as caught:
        routing.topic_for({"type": "page_view"})
    assert "give --route TYPE=TOPIC or --topic" in caught.value.message


def test_json_goes_as_written_and_avro_is_encoded() -> None:
    config = load_config(environ={})
    routing = Routing.of(config, {"page_view": "views.json"}, None, None)
    producer = RecordingProducer()

    stats = Sender(producer, routing).send(lines(VIEW, FIRMO))  # type: ignore[arg-type]

    (topic1, key1, value1), (topic2, key2, value2) = producer.sent
    assert (topic1, key1, value1) == ("views.json", b"L1", json.dumps(VIEW).encode())
    assert (topic2, key2) == ("crm.firmographics", b"L2")
    assert make_codec("avro").decode(value2)["employees"] == 300
    assert stats.produced == {"views.json": 1, "crm.firmographics": 1}
    assert stats.failed == 0


def test_bad_lines_are_reported_by_place_not_content() -> None:
    routing = Routing.of(None, {}, "t", "json")
    producer = RecordingProducer()
    errors = io.StringIO()
    secret = {**VIEW, "lead_id": "", "email": "ann@example.com"}

    stats = Sender(producer, routing, errors).send(  # type: ignore[arg-type]
        lines("{not json", secret, "", VIEW)
    )

    assert [sent[1] for sent in producer.sent] == [b"L1"]
    assert stats.lines == 4
    # Every line is accounted for, the empty one too, as replay reports it.
    assert stats.bad == {"bad_json": 1, "empty_field": 1, "empty_line": 1}
    report = errors.getvalue()
    assert "in.jsonl:1: bad_json" in report
    assert "in.jsonl:2: empty_field field=lead_id" in report
    assert "in.jsonl:3: empty_line" in report
    assert "ann@example.com" not in report
    assert stats.summary().startswith("produce: lines=4 produced=1 topic.t=1 bad=3")


class SilentProducer(RecordingProducer):
    """A broker that never answers: flush gives up with everything queued."""

    def flush(self, _timeout: float) -> int:
        return len(self._callbacks)


def test_lines_the_broker_never_acknowledged_are_named() -> None:
    routing = Routing.of(None, {}, "t", "json")
    errors = io.StringIO()

    stats = Sender(SilentProducer(), routing, errors).send(  # type: ignore[arg-type]
        lines(VIEW, FIRMO)
    )

    assert stats.failed == 2
    report = errors.getvalue().splitlines()
    assert [line.split(": ")[0] for line in report] == ["in.jsonl:1", "in.jsonl:2"]
    assert all("delivery_failed: not acknowledged within 60 s" in r for r in report)


WEBINAR = {
    "event_id": "w1",
    "lead_id": "L3",
    "type": "webinar",
    "occurred_at": "2026-12-01T10:00:00.000Z",
    "webinar_id": "web-1",
    "status": "attended",
}
DOWNLOAD = {
    "event_id": "d1",
    "lead_id": "L4",
    "type": "content_download",
    "occurred_at": "2026-12-01T10:00:00.000Z",
    "asset_id": "a1",
    "asset_type": "pdf",
}


def test_avro_gets_the_values_the_scorer_reads() -> None:
    # README: in JSON a whole number such as 500.0 counts as 500; a field the
    # scorer does not read is no reason to refuse the record either.
    firmo: dict[str, Any] = {**FIRMO, "employees": 500.0, "crm_owner": "x"}
    webinar: dict[str, Any] = {**WEBINAR, "minutes_watched": 12}
    producer = RecordingProducer()
    errors = io.StringIO()
    routing = Routing.of(None, {}, "t", "avro")
    sender = Sender(producer, routing, errors)  # type: ignore[arg-type]

    stats = sender.send(lines(firmo, webinar))

    assert errors.getvalue() == ""
    assert stats.produced == {"t": 2}
    decoded = [make_codec("avro").decode(value) for _, _, value in producer.sent]
    assert decoded[0]["employees"] == 500
    bounds = TimeBounds()
    for sent, original in zip(decoded, (firmo, webinar), strict=True):
        assert parse_record(sent, bounds) == parse_record(original, bounds)


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_what_the_scorer_would_dead_letter_is_reported_as_replay_does(
    fmt: Format,
) -> None:
    bad = lines(
        {**WEBINAR, "minutes_watched": True},
        {k: v for k, v in DOWNLOAD.items() if k != "asset_id"},
        {**FIRMO, "employees": 500.5},
        {**VIEW, "type": "jane.doe@example.com"},
    )
    producer = RecordingProducer()
    errors = io.StringIO()
    routing = Routing.of(None, {}, "t", fmt)
    sender = Sender(producer, routing, errors)  # type: ignore[arg-type]
    replayed = io.StringIO()
    Replay(load_config(environ={}), errors=replayed).run(bad, io.BytesIO())

    stats = sender.send(bad)

    assert producer.sent == []
    assert errors.getvalue() == replayed.getvalue()
    assert errors.getvalue().splitlines() == [
        "in.jsonl:1: wrong_type field=minutes_watched: "
        "minutes_watched must be a number",
        "in.jsonl:2: missing_field field=asset_id: asset_id is missing",
        "in.jsonl:3: bad_value field=employees: employees must be a whole number",
        "in.jsonl:4: unknown_type field=type: unknown event type "
        "(not page_view, content_download, webinar or firmographics)",
    ]
    assert stats.bad == {
        "wrong_type": 1,
        "missing_field": 1,
        "bad_value": 1,
        "unknown_type": 1,
    }


def test_json_topics_get_a_valid_line_as_written() -> None:
    firmo = {**FIRMO, "employees": 500.0, "crm_owner": "x"}
    producer = RecordingProducer()
    routing = Routing.of(None, {}, "t", "json")
    sender = Sender(producer, routing)  # type: ignore[arg-type]

    sender.send(lines(firmo))

    assert producer.sent == [("t", b"L2", json.dumps(firmo).encode())]


def test_a_type_with_no_route_is_named_only_if_it_is_a_type() -> None:
    routing = Routing.of(untyped_config(), {}, None, None)

    with pytest.raises(InvalidRecord) as caught:
        routing.topic_for({"type": "jane.doe@example.com"})
    assert "jane" not in caught.value.message
    assert "no topic for type (not a type name)" in caught.value.message
    with pytest.raises(InvalidRecord, match="no topic for type 'webinar'"):
        routing.topic_for({"type": "webinar"})


def test_a_record_of_an_unknown_type_is_reported_without_its_type() -> None:
    errors = io.StringIO()
    routing = Routing.of(untyped_config(), {}, None, None)
    sender = Sender(RecordingProducer(), routing, errors)  # type: ignore[arg-type]

    sender.send(lines({**VIEW, "type": "jane.doe@example.com"}))
    sender.send(lines({**VIEW, "type": "jane_roe"}))  # looks like a type name

    assert "jane" not in errors.getvalue()
    assert errors.getvalue().count("unknown event type (not page_view, ") == 2


def test_a_route_must_name_a_record_type() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes(["page_view=a", "spam=topic"])
    assert caught.value.field == "--route"
    assert "TYPE routed to 'topic' is not one of page_view" in caught.value.message
    assert parse_routes(["firmographics=crm"]) == {"firmographics": "crm"}


def test_the_command_refuses_an_unknown_route_type_as_a_usage_error() -> None:
    # Refused before a producer is made: no broker is needed.
    result = scorer("produce", "--route", "spam=topic", "-", stdin="")

    assert result.returncode == 2
    assert result.stderr.startswith("config error: --route: the TYPE routed to")


@pytest.mark.parametrize(
    ("flag", "value", "topic"),
    [
        ("--route", "page_view=bad topic!", "bad topic!"),
        ("--topic", ".", "."),
        ("--topic", "a/b", "a/b"),
    ],
)
def test_a_topic_kafka_refuses_is_a_usage_error(
    flag: str, value: str, topic: str
) -> None:
    # Refused before a producer is made: it would fail each record instead.
    result = scorer("produce", flag, value, "-", stdin="")

    assert result.returncode == 2
    assert result.stderr == (
        f"config error: {flag}: {topic!r} is not a Kafka topic name: use 1 to "
        "249 letters, digits, '.', '_' or '-', not '.' or '..'\n"
    )


def test_routes_must_be_type_equals_topic() -> None:
    assert parse_routes(["page_view=a", "webinar=b"]) == {
        "page_view": "a",
        "webinar": "b",
    }
    with pytest.raises(ConfigError, match="is not TYPE=TOPIC"):
        parse_routes(["page_view"])


def test_a_byte_order_mark_opening_a_file_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(VIEW).encode() + b"\n")
    producer = RecordingProducer()
    routing = Routing.of(None, {}, "t", "json")
    sender = Sender(producer, routing)  # type: ignore[arg-type]

    stats = sender.send(read_lines([str(path)]))

    assert stats.bad == {}
    assert producer.sent == [("t", b"L1", json.dumps(VIEW).encode())]


class FailingProducer(RecordingProducer):
    """Acknowledges every message but those whose key is in `refused`."""

    def __init__(self, *refused: bytes) -> None:
        super().__init__()
        self.refused = refused

    def flush(self, _timeout: float) -> int:
        refusal = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
        for (_topic, key, _value), callback in zip(
            self.sent, self._callbacks, strict=True
        ):
            callback(refusal if key in self.refused else None, None)
        self._callbacks.clear()
        return 0


def test_produced_counts_only_what_the_broker_acknowledged() -> None:
    other = {**VIEW, "event_id": "e2", "lead_id": "L9"}
    errors = io.StringIO()
    producer = FailingProducer(b"L9")
    routing = Routing.of(None, {}, "t", "json")
    sender = Sender(producer, routing, errors)  # type: ignore[arg-type]

    stats = sender.send(lines(VIEW, other))

    assert stats.produced == {"t": 1}
    assert stats.failed == 1
    assert stats.summary() == (
        "produce: lines=2 produced=1 topic.t=1 bad=0 delivery_failed=1"
    )
    assert errors.getvalue() == (
        "in.jsonl:2: delivery_failed: MSG_SIZE_TOO_LARGE: "
        "Broker: Message size too large\n"
    )


def test_a_record_over_the_size_limit_is_reported_and_the_rest_go_on() -> None:
    # A real librdkafka producer that knows no broker: it checks the size
    # itself, and what it queued times out at once, unacknowledged.
    producer = Producer({"message.max.bytes": 1000, "message.timeout.ms": 1})
    big = {**VIEW, "event_id": "e2", "url": "/" + "p" * 2000}
    after = {**VIEW, "event_id": "e3"}
    errors = io.StringIO()

    stats = Sender(producer, Routing.of(None, {}, "t", "json"), errors).send(
        lines(VIEW, big, after)
    )

    assert stats.bad == {"too_large": 1}
    assert stats.produced == {}
    assert stats.failed == 2
    report = errors.getvalue().splitlines()
    assert report[0].startswith("in.jsonl:2: too_large: 2,")
    assert report[0].endswith("bytes (key and value) is over message.max.bytes")
    assert sorted(report[1:]) == [
        "in.jsonl:1: delivery_failed: _MSG_TIMED_OUT: Local: Message timed out",
        "in.jsonl:3: delivery_failed: _MSG_TIMED_OUT: Local: Message timed out",
    ]
    assert stats.summary() == (
        "produce: lines=3 produced=0 bad=1 bad.too_large=1 delivery_failed=2"
    )


def test_a_run_succeeds_only_if_it_sent_something_and_lost_nothing() -> None:
    assert ProduceStats().succeeded  # an empty input
    some_bad = ProduceStats(lines=3, bad=Counter(missing_field=2))
    some_bad.produced["t"] = 1
    assert some_bad.succeeded
    assert not ProduceStats(lines=3, bad=Counter(missing_field=3)).succeeded


@pytest.mark.parametrize("reason", ["no_route", "wrong_topic", "schema_registry"])
def test_a_record_without_a_route_or_schema_fails_the_run(reason: str) -> None:
    # Events routed nowhere while the firmographics went in: a seed that
    # looked done with 93% of its records left out.
    partly = ProduceStats(lines=3, bad=Counter({reason: 2}))
    partly.produced["profiles"] = 1

    assert not partly.succeeded


def test_lines_lost_in_delivery_fail_the_run() -> None:
    lost = ProduceStats(lines=2, failed=1)
    lost.produced["t"] = 1
    assert not lost.succeeded


def test_format_flag_against_the_configs_format_is_warned_of_once_per_topic() -> None:
    config = load_config(environ={})
    routing = Routing.of(config, {}, None, "json")
    producer = RecordingProducer()
    errors = io.StringIO()

    stats = Sender(producer, routing, errors).send(  # type: ignore[arg-type]
        lines(VIEW, {**VIEW, "event_id": "e2"})
    )

    assert [sent[0] for sent in producer.sent] == ["web.page_views"] * 2
    assert stats.produced == {"web.page_views": 2}
    assert errors.getvalue().splitlines() == [
        "produce: warning: topic web.page_views is avro in the config; writing "
        "json as --format says, which readers of that config cannot read"
    ]


def test_a_schema_the_registry_refuses_fails_its_lines_not_the_run() -> None:
    routing = Routing(
        by_type={"page_view": "views.cf", "firmographics": "crm.json"},
        topic=None,
        formats={"views.cf": "confluent_avro", "crm.json": "json"},
    )
    asked: list[tuple[str, str, str]] = []

    def refusing(topic: str, fmt: str, kind: str) -> Any:
        asked.append((topic, fmt, kind))
        raise RegistryError("POST /subjects/views.cf-value/versions: HTTP 409")

    producer, errors = RecordingProducer(), io.StringIO()
    sender = Sender(
        producer,  # type: ignore[arg-type]
        routing,
        errors,
        codec_of=refusing,
    )
    stats = sender.send(lines(VIEW, FIRMO, {**VIEW, "event_id": "e2"}))

    assert [sent[0] for sent in producer.sent] == ["crm.json"]
    assert stats.produced == {"crm.json": 1}
    assert stats.bad == {"schema_registry": 2}
    assert asked == [("views.cf", "confluent_avro", "page_view")]  # asked once
    refusal = "schema_registry: POST /subjects/views.cf-value/versions: HTTP 409"
    assert errors.getvalue().splitlines() == [
        f"in.jsonl:1: {refusal}",
        f"in.jsonl:3: {refusal}",
    ]


def send_with(
    routing: Routing, *records: dict[str, Any]
) -> tuple[RecordingProducer, ProduceStats, str]:
    producer = RecordingProducer()
    errors = io.StringIO()
    sender = Sender(producer, routing, errors)  # type: ignore[arg-type]
    stats = sender.send(lines(*records))
    return producer, stats, errors.getvalue()


@pytest.mark.parametrize(
    ("routes", "topic", "record", "carries"),
    [
        ({"firmographics": "web.page_views"}, None, FIRMO, "events"),
        ({"page_view": "crm.firmographics"}, None, VIEW, "firmographic records"),
        ({}, "crm.firmographics", VIEW, "firmographic records"),
    ],
)
def test_a_record_routed_to_a_topic_of_the_other_role_is_reported_not_sent(
    routes: dict[str, str], topic: str | None, record: dict[str, Any], carries: str
) -> None:
    """The scorer would dead-letter it as wrong_topic."""
    routing = Routing.of(load_config(environ={}), routes, topic, None)

    producer, stats, errors = send_with(routing, record)

    assert producer.sent == []
    assert stats.bad == {"wrong_topic": 1}
    assert errors.startswith("in.jsonl:1: wrong_topic field=type: topic ")
    assert errors.endswith(f" carries {carries} only\n")


def test_firmographics_go_to_no_event_topic_when_none_is_configured() -> None:
    raw = yaml.safe_load(default_config_path().read_text())
    del raw["topics"]["firmographics"]
    config = parse_config(raw)

    _, on_event_topic, _ = send_with(
        Routing.of(config, {}, "web.page_views", "json"), FIRMO
    )
    _, elsewhere, _ = send_with(Routing.of(config, {}, "crm.other", "json"), FIRMO)

    assert on_event_topic.bad == {"wrong_topic": 1}
    assert elsewhere.produced == {"crm.other": 1}
