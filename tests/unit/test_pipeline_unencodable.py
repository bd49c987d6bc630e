"""A record whose outputs cannot be encoded is dead-lettered, not fatal.

An infinite score (a config that slipped past validation) has no JSON form:
the live scorer stopped at the first such output, and again at the same
record after every restart, since the batch was never committed. The record
now goes to the dead-letter topic, acknowledged before the batch's offsets
are stored, and the records around it are published as usual.
"""

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from confluent_kafka import TopicPartition
from unencodable import with_infinite_demo_points

from scorer.config import Config, default_config_path, parse_config
from scorer.events import format_time
from scorer.lead import MemoryStore, Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.scoring import Scorer

EVENTS = "web.page_views"
T0_MS = 1_750_000_000_000


def json_topics_config() -> Config:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["topics"]["events"] = [{"name": EVENTS, "format": "json"}]
    raw["topics"]["output"]["format"] = "json"
    return with_infinite_demo_points(parse_config(raw))


class Consumed:
    """A consumed record: what the pipeline asks of a Kafka message."""

    def __init__(self, offset: int, lead: str, url: str) -> None:
        self._offset = offset
        record = {
            "event_id": f"e{offset}",
            "lead_id": lead,
            "type": "page_view",
            "occurred_at": format_time(T0_MS + offset),
            "url": url,
        }
        self._value = json.dumps(record).encode()

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return EVENTS

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"key"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)  # TIMESTAMP_NOT_AVAILABLE


class Broker:
    """The producer and consumer: records every call, in order, in `calls`.

    A produced message is acknowledged at the next flush.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.unacked: list[Any] = []

    def produce(self, topic: str, **message: Any) -> None:
        self.calls.append(("produce", (topic, message)))
        self.unacked.append(message["on_delivery"])

    def flush(self, _timeout: float = 0.0) -> int:
        for on_delivery in self.unacked:
            on_delivery(None, None)
        self.calls.append(("acked", len(self.unacked)))
        self.unacked = []
        return 0

    def poll(self, _timeout: float = 0.0) -> int:
        return 0

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        stored = [(tp.topic, tp.partition, tp.offset) for tp in offsets]
        self.calls.append(("store_offsets", stored))

    def commit(self, asynchronous: bool = True) -> None:
        self.calls.append(("commit", asynchronous))

    def produced(self, topic: str) -> list[dict[str, Any]]:
        return [m for kind, (t, m) in self.sent() if t == topic]

    def sent(self) -> list[tuple[str, Any]]:
        return [(kind, args) for kind, args in self.calls if kind == "produce"]


@pytest.fixture
def broker() -> Broker:
    return Broker()


def pipeline_on(broker: Broker, config: Config | None = None) -> ScorerPipeline:
    """A pipeline whose consumer and producer are `broker`, owning EVENTS[0]."""
    config = json_topics_config() if config is None else config
    scorer = Scorer(config.scoring, MemoryStore(Params.of(config.scoring)))
    clients: Any = broker  # stands for the consumer and the producer
    made = ScorerPipeline(config, scorer, clients, lambda: clients, Metrics())
    made.partitions.on_assign(clients, [TopicPartition(EVENTS, 0)])
    return made


@pytest.fixture
def pipeline(broker: Broker) -> Iterator[ScorerPipeline]:
    made = pipeline_on(broker)
    yield made
    made.lane.close()


def run_one_batch(pipeline: ScorerPipeline, messages: list[Any]) -> None:
    in_flight = pipeline._start(messages)
    pipeline._confirm(pipeline._send(in_flight, behind=None))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_record_is_dead_lettered_and_the_others_published(
    pipeline: ScorerPipeline, broker: Broker
) -> None:
    messages = [
        Consumed(0, "L1", "/pricing"),
        Consumed(1, "L2", "/demo"),  # infinite points: no JSON output
        Consumed(2, "L3", "/pricing"),
    ]

    run_one_batch(pipeline, messages)

    outputs = broker.produced(pipeline.config.topics.output.name)
    assert [(m["key"], json.loads(m["value"])["score"]) for m in outputs] == [
        (b"L1", 20.0),
        (b"L3", 20.0),
    ]
    (letter,) = broker.produced(pipeline.config.topics.dead_letter)
    assert (letter["key"], letter["value"]) == (b"key", messages[1].value())
    headers = {name: value for name, value in letter["headers"]}
    assert headers["scorer.error.reason"] == b"output_not_encodable"
    assert headers["scorer.error.message"] == (
        b"score_changed output: record is not encodable as JSON: ValueError"
    )
    assert headers["scorer.error.offset"] == b"1"


def test_offsets_are_stored_only_after_the_dead_letter_is_acknowledged(
    pipeline: ScorerPipeline, broker: Broker
) -> None:
    run_one_batch(pipeline, [Consumed(0, "L2", "/demo"), Consumed(1, "L1", "/pricing")])

    kinds = [kind for kind, _ in broker.calls]
    assert kinds == ["produce", "produce", "acked", "store_offsets", "commit"]
    assert broker.calls[3] == ("store_offsets", [(EVENTS, 0, 2)])


def test_the_record_is_counted_once_as_dead_lettered_and_its_outputs_not_at_all(
    pipeline: ScorerPipeline,
) -> None:
    run_one_batch(
        pipeline,
        [
            Consumed(0, "L1", "/pricing"),
            Consumed(1, "L2", "/demo"),  # score_changed and mql_crossed refused
            Consumed(2, "L3", "/blog/a"),
        ],
    )

    m = pipeline.metrics
    topic = {"topic": EVENTS}
    assert sample(m, "scorer_events_consumed_total", **topic) == 3
    assert sample(m, "scorer_records_total", **topic, outcome="scored") == 2
    assert sample(m, "scorer_records_total", **topic, outcome="dead_lettered") == 1
    reason = {"reason": "output_not_encodable"}
    assert sample(m, "scorer_dead_lettered_total", **topic, **reason) == 1
    assert sample(m, "scorer_score_changes_total") == 2
    assert sample(m, "scorer_mql_crossings_total", direction="up") == 0


def test_the_log_line_names_a_field_only_where_there_is_one(
    pipeline: ScorerPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scorer.dead_letter")

    run_one_batch(pipeline, [Consumed(0, "", "/pricing"), Consumed(1, "L2", "/demo")])

    where = f"dead-lettered topic={EVENTS} partition=0"
    assert [r.getMessage() for r in caplog.records] == [
        f"{where} offset=0 reason=empty_field field=lead_id error=InvalidRecord",
        f"{where} offset=1 reason=output_not_encodable error=InvalidRecord",
    ]
