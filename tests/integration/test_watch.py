"""`scorer watch`: the scorer's Avro outputs, read back as JSON lines."""

import io
import json
import threading
from typing import Any

import pytest
from harness import WAIT_S, make_config, produce, running_scorer

from scorer.errors import BrokerError
from scorer.events import format_time
from scorer.watch import watch
from scorer.wire import AvroCodec, SchemaCatalog

T0_MS = 1_750_000_000_000


def view(event_id: str, url: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": "L1",
        "type": "page_view",
        "occurred_at": format_time(T0_MS),
        "url": url,
    }


def test_watch_prints_each_output_as_a_json_line(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq")
    topics = {
        "events": [{"name": events, "format": "avro"}],
        "output": {"name": out, "format": "avro"},
        "dead_letter": dlq,
    }
    config = make_config(kafka_bootstrap, redis_url, topics)
    views = [view("w1", "/pricing"), view("w2", "/demo"), view("w3", "/pricing")]
    avro = AvroCodec(SchemaCatalog.load())
    produce(kafka_bootstrap, events, views, avro)
    # Not output events: named on stderr by place, never printed.
    produce(kafka_bootstrap, out, [view("x1", "/not-an-output")], avro)
    produce(kafka_bootstrap, out, [], None, keys=["L9"], raw_values=[b"garbage"])
    with running_scorer(config), caplog.at_level("WARNING", logger="scorer.watch"):
        everything = _watched(config, expected=4, mql_only=False)
        alerts = _watched(config, expected=1, mql_only=True)

    lines = [json.loads(line) for line in everything.splitlines()]
    assert [(e["type"], e["score"], e["source_event_id"]) for e in lines] == [
        ("score_changed", 20.0, "w1"),
        ("score_changed", 50.0, "w2"),
        ("score_changed", 70.0, "w3"),
        ("mql_crossed", 70.0, "w3"),
    ]
    assert lines[0]["reason"]["rule"] == "pricing_page"
    skipped = sorted(r.getMessage().split(": ")[1] for r in caplog.records)
    # Each watcher (all, then --mql-only) skips the two foreign messages.
    assert skipped == ["bad_marker", "bad_marker", "not_an_output", "not_an_output"]
    (alert,) = [json.loads(line) for line in alerts.splitlines()]
    assert (alert["type"], alert["direction"], alert["lead_id"]) == (
        "mql_crossed",
        "up",
        "L1",
    )


def test_watch_names_a_missing_output_topic(
    kafka_bootstrap: str, redis_url: str
) -> None:
    topics = {
        "events": [{"name": "watch.events", "format": "avro"}],
        "output": {"name": "no.such.output", "format": "avro"},
        "dead_letter": "watch.dlq",
    }
    config = make_config(kafka_bootstrap, redis_url, topics)

    with pytest.raises(BrokerError) as caught:
        watch(config, threading.Event(), io.StringIO())

    assert str(caught.value) == (
        "the output topic no.such.output does not exist on the broker"
    )


def _watched(config: Any, expected: int, mql_only: bool) -> str:
    """What watch printed from the beginning, once it printed `expected` lines."""
    out, stop = _Lines(expected), threading.Event()
    out.enough = stop
    thread = threading.Thread(
        target=watch, args=(config, stop, out, True, mql_only), daemon=True
    )
    thread.start()
    stop.wait(WAIT_S)
    stop.set()
    thread.join(WAIT_S)
    return out.getvalue()


class _Lines(io.StringIO):
    """Sets `enough` once `expected` lines were written."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.enough = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.getvalue().count("\n") >= self.expected:
            self.enough.set()
        return written
