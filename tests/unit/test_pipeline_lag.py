"""The lag gauge while a batch waits for Redis, read from the brokers.

A fake consumer stands for librdkafka: what matters here is which
watermark the gauge takes when a broker answers and when it does not.
"""

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import scorer.pipeline
from scorer.config import load_config
from scorer.lead import MemoryStore, Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.scoring import Scorer

CONFIG = load_config(environ={})


class Consumer:
    """Position 4 on each partition; the cache says 10, the brokers `asked`.

    A partition in `unfetched` has no position (assigned during a hold,
    never fetched); `committed` holds the group's offsets, the low
    watermark is 2.
    """

    def __init__(self) -> None:
        self.asked: int | None = 50
        self.unfetched: set[int] = set()
        self.committed_at: dict[int, int] = {}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, -1001 if tp.partition in self.unfetched else 4
            )
            for tp in partitions
        ]

    def committed(
        self, partitions: list[TopicPartition], timeout: float = 0
    ) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.committed_at.get(tp.partition, -1001)
            )
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float = 0, cached: bool = False
    ) -> tuple[int, int]:
        if cached:
            return 2, 10
        if self.asked is None:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return 2, self.asked

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_kwargs: 0


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> ScorerPipeline:
    monkeypatch.setattr(scorer.pipeline, "LAG_INTERVAL_S", 0.0)
    store = MemoryStore(Params.of(CONFIG.scoring))
    consumer: Any = Consumer()
    made = ScorerPipeline(
        CONFIG, Scorer(CONFIG.scoring, store), consumer, lambda: consumer, Metrics()
    )
    made.partitions.on_assign(consumer, [TopicPartition("events", 0)])
    made.partitions.on_assign(consumer, [TopicPartition("events", 1)])
    return made


def lag(pipeline: ScorerPipeline) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for family in pipeline.metrics.registry.collect()
        for s in family.samples
        if s.name == "scorer_consumer_lag_records"
    }


def test_a_held_consumer_reads_the_lag_from_the_brokers(
    pipeline: ScorerPipeline,
) -> None:
    pipeline._report_lag()
    from_cache = lag(pipeline)
    pipeline._report_lag(ask_brokers=True)

    assert from_cache == {"0": 6.0, "1": 6.0}
    assert lag(pipeline) == {"0": 46.0, "1": 46.0}
    assert pipeline.lag_records == 92


def test_a_broker_that_does_not_answer_leaves_the_last_reading(
    pipeline: ScorerPipeline,
) -> None:
    """Not the cache, as old as the hold: the backlog would seem to shrink."""
    consumer: Any = pipeline.consumer
    pipeline._report_lag(ask_brokers=True)
    consumer.asked = None

    pipeline._report_lag(ask_brokers=True)

    assert lag(pipeline) == {"0": 46.0, "1": 46.0}
    assert pipeline.lag_records == 92


def test_a_partition_held_since_its_assignment_counts_from_its_start(
    pipeline: ScorerPipeline,
) -> None:
    """A restart during an outage, or partitions handed back: never fetched.

    They start at the group's committed offset, or with none at the low
    watermark (auto.offset.reset: earliest).
    """
    consumer: Any = pipeline.consumer
    consumer.unfetched = {0, 1}
    consumer.committed_at = {0: 30}

    pipeline._report_lag()
    from_cache = lag(pipeline)
    pipeline._report_lag(ask_brokers=True)

    assert from_cache == {}  # no position, no reading from the cache
    assert lag(pipeline) == {"0": 20.0, "1": 48.0}
    assert pipeline.lag_records == 68
