"""`scorer produce`: routing, formats and bad lines (a stand-in producer)."""

import io
import json
from pathlib import Path
from typing import Any

import pytest

from scorer.config import load_config
from scorer.errors import ConfigError
from scorer.produce import Routing, Sender, parse_routes
from scorer.replay import Line, read_lines
from scorer.wire import make_codec


class RecordingProducer:
    """Keeps what would be sent; acknowledges everything on flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._callbacks: list[Any] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
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


def test_records_go_by_route_then_topic_then_config() -> None:
    config = load_config(environ={})
    routing = Routing.of(config, {"webinar": "w"}, None, None)

    assert routing.topic_for({"type": "webinar"}) == "w"
    assert routing.topic_for({"type": "firmographics"}) == "crm.firmographics"
    with pytest.raises(Exception, match="no topic for type 'page_view'"):
        routing.topic_for({"type": "page_view"})

    routing = Routing.of(config, {"webinar": "w"}, "all", None)
    assert routing.topic_for({"type": "page_view"}) == "all"
    assert routing.topic_for({"type": "firmographics"}) == "all"
    assert routing.topic_for({"type": "webinar"}) == "w"


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
    secret = {"lead_id": "", "type": "page_view", "email": "ann@example.com"}

    stats = Sender(producer, routing, errors).send(  # type: ignore[arg-type]
        lines("{not json", secret, "", VIEW)
    )

    assert [sent[1] for sent in producer.sent] == [b"L1"]
    assert stats.lines == 4
    assert stats.bad == {"bad_json": 1, "missing_lead_id": 1}
    report = errors.getvalue()
    assert "in.jsonl:1: bad_json" in report
    assert "in.jsonl:2: missing_lead_id field=lead_id" in report
    assert "ann@example.com" not in report
    assert stats.summary().startswith("produce: lines=4 produced=1 topic.t=1 bad=2")


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
    sender = Sender(producer, Routing.of(None, {}, "t", "json"))  # type: ignore[arg-type]

    stats = sender.send(read_lines([str(path)]))

    assert stats.bad == {}
    assert producer.sent == [("t", b"L1", json.dumps(VIEW).encode())]
