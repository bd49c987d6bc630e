"""`scorer watch` prints output events as `scorer replay` does (no broker)."""

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from command import scorer

from scorer import watch
from scorer.config import Config, load_config
from scorer.events import parse_time
from scorer.wire import SCORE_SCHEMA, make_codec

REPO = Path(__file__).resolve().parents[2]
OUTPUT_SCHEMA = REPO / "schemas" / "lead_score.v1.avsc"
T0 = "2025-06-15T15:06:40.000Z"
# A firmographic change, a rule, then a second rule that makes an MQL: both
# kinds of output event, with and without a reason and a direction.
RECORDS = [
    {"lead_id": "L1", "type": "firmographics", "title": "Director of IT"}
    | {"employees": 900, "updated_at": T0},
    {"event_id": "e1", "lead_id": "L1", "type": "page_view", "url": "/pricing"}
    | {"occurred_at": T0},
    {"event_id": "e2", "lead_id": "L1", "type": "page_view", "url": "/demo"}
    | {"occurred_at": "2025-06-15T15:06:41.000Z"},
]


class Message:
    """What the consumer hands watch: a value at a place."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value = value
        self._offset = offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "lead.scores"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class OneBatch:
    """A consumer that hands out one batch, then has watch stop."""

    def __init__(self, values: list[bytes], stop: threading.Event) -> None:
        self._messages = [Message(value, n) for n, value in enumerate(values)]
        self._stop = stop

    def assign(self, _partitions: object) -> None:
        pass

    def consume(self, _count: int, _timeout: float) -> list[Message]:
        self._stop.set()
        batch, self._messages = self._messages, []
        return batch

    def close(self) -> None:
        pass


@pytest.fixture(name="replayed", scope="module")
def replayed_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    records = tmp_path_factory.mktemp("replay") / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))

    result = scorer("replay", "--no-progress", str(records))

    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def watched(
    config: Config, values: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """What `scorer watch` prints for these values on the output topic."""
    stop = threading.Event()
    monkeypatch.setattr(watch, "_consumer", lambda _config: OneBatch(values, stop))
    monkeypatch.setattr(watch, "_partitions", lambda *_args: [])
    out = io.StringIO()

    watch.watch(config, stop, out, from_beginning=True)

    return out.getvalue().splitlines()


def published_as_avro(line: str) -> bytes:
    """An output event as the scorer writes it on an Avro output topic."""
    event: dict[str, Any] = json.loads(line)
    event["occurred_at"] = parse_time(event["occurred_at"], "occurred_at")
    return make_codec("avro", schema_name=SCORE_SCHEMA).encode(event)


def test_replay_writes_the_fields_in_the_order_of_the_schema(
    replayed: list[str],
) -> None:
    schema = json.loads(OUTPUT_SCHEMA.read_text())
    declared = [field["name"] for field in schema["fields"]]
    reason = next(f for f in schema["fields"] if f["name"] == "reason")
    reason_declared = [field["name"] for field in reason["type"][1]["fields"]]

    events = [json.loads(line) for line in replayed]

    assert {event["type"] for event in events} == {"score_changed", "mql_crossed"}
    for event in events:
        assert list(event) == declared
        if event["reason"] is not None:
            assert list(event["reason"]) == reason_declared


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_watch_prints_each_event_as_replay_does(
    replayed: list[str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    config = load_config(environ={}, overrides={"topics.output.format": fmt})
    if fmt == "avro":
        values = [published_as_avro(line) for line in replayed]
    else:
        values = [line.encode() for line in replayed]

    printed = watched(config, values, monkeypatch)

    assert printed == replayed
