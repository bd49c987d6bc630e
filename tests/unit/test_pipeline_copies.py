"""A redelivered record's outputs are copies: metrics do not count them again."""

from collections.abc import Iterator

import pytest
import yaml
from test_pipeline_unencodable import (
    EVENTS,
    Broker,
    Consumed,
    pipeline_on,
    run_one_batch,
    sample,
)

from scorer.config import default_config_path, parse_config
from scorer.pipeline import ScorerPipeline


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def pipeline(broker: Broker) -> Iterator[ScorerPipeline]:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["topics"]["events"] = [{"name": EVENTS, "format": "json"}]
    raw["topics"]["output"]["format"] = "json"
    made = pipeline_on(broker, parse_config(raw))
    yield made
    made.lane.close()


def test_a_redelivered_crossing_is_published_again_but_counted_once(
    pipeline: ScorerPipeline, broker: Broker
) -> None:
    # 30 + 20 + 20 points: the third visit crosses the threshold of 60.
    visits = [Consumed(0, "L1", "/demo"), Consumed(1, "L1", "/pricing")]
    crossing = Consumed(2, "L1", "/pricing")
    run_one_batch(pipeline, [*visits, crossing])

    run_one_batch(pipeline, [crossing])  # redelivered, as after a crash

    outputs = broker.produced(pipeline.config.topics.output.name)
    assert [m["value"] for m in outputs[-2:]] == [m["value"] for m in outputs[2:4]]
    m = pipeline.metrics
    assert sample(m, "scorer_mql_crossings_total", direction="up") == 1
    assert sample(m, "scorer_score_changes_total") == 3
    assert sample(m, "scorer_records_total", topic=EVENTS, outcome="duplicate") == 1
