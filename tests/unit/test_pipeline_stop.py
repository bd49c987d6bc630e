"""A stop ends even when the brokers never answer the final commit or leave.

With the brokers out of reach, consumer.close() (and the synchronous final
commit) waited as long as the outage lasted, past the 60 s after which
Kubernetes kills the pod. The integration test freezes a real broker.
"""

import logging
import threading
from collections.abc import Iterator

import pytest
from test_pipeline_unencodable import Broker, pipeline_on

from scorer import pipeline as pipeline_module
from scorer.pipeline import ScorerPipeline, finished_within, uncommitted_spans

# Long enough for the old code to show it waits; short enough for a test.
UNANSWERED_S = 20.0


class Unreachable(Broker):
    """Brokers that never answer a close: it returns after UNANSWERED_S."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.wait(UNANSWERED_S)


@pytest.fixture
def unreachable() -> Unreachable:
    return Unreachable()


@pytest.fixture
def pipeline(unreachable: Unreachable) -> Iterator[ScorerPipeline]:
    yield pipeline_on(unreachable)
    unreachable.closed.set()


def test_a_stop_gives_up_on_unanswering_brokers_and_says_so(
    pipeline: ScorerPipeline,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(pipeline_module, "CLIENTS_CLOSE_TIMEOUT_S", 1.0)

    with caplog.at_level(logging.INFO, logger="scorer.pipeline"):
        pipeline._close()

    messages = [record.getMessage() for record in caplog.records]
    assert messages[-2:] == [
        "the brokers did not let the Kafka clients close within 1s; stopping "
        "without them: what is not committed is consumed again",
        "scorer stopped",
    ]


def test_work_that_ends_in_time_is_waited_for_and_its_error_raised() -> None:
    done: list[str] = []

    def fails() -> None:
        done.append("ran")
        raise ValueError("from the closing thread")

    assert finished_within(5.0, lambda: done.append("ran")) is True
    with pytest.raises(ValueError, match="from the closing thread"):
        finished_within(5.0, fails)
    assert done == ["ran", "ran"]


def test_a_stop_during_a_wait_names_the_offsets_left_uncommitted() -> None:
    # Epoch 3 of each partition: t/0 published to 100 and started to 250;
    # t/1 published nothing yet, its first batch from 40; t/2 all published;
    # t/3's published mark is of an older assignment, its first unknown.
    started = {("t", 0): (3, 250), ("t", 1): (3, 90), ("t", 2): (3, 70),
               ("t", 3): (3, 30)}  # fmt: skip
    done = {("t", 0): (3, 100), ("t", 2): (3, 70), ("t", 3): (2, 12)}
    first = {("t", 0): (3, 0), ("t", 1): (3, 40)}

    spans = uncommitted_spans(started, done, first)

    assert spans == [
        "t/0 offsets 100-249",
        "t/1 offsets 40-89",
        "t/3 offsets up to 29",
    ]
