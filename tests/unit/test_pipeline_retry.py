"""Redis failing part way through a batch: the parts before keep their results.

A fit update or a tombstone applied a second time does not give the same
outcome as the first time (the store remembers them by lead, not by update
id), so the pipeline must not score again the parts that reached Redis.
"""

import itertools
from collections.abc import Sequence
from typing import Any

import pytest

import scorer.backoff
import scorer.pipeline
from scorer.config import load_config
from scorer.errors import StateStoreError
from scorer.events import Activity, Firmographics, Forget
from scorer.lead import MemoryStore, Outcome, Params, Update
from scorer.metrics import Metrics
from scorer.pipeline import Batch, InFlight, ScorerPipeline
from scorer.scoring import Item, Scored, Scorer

CONFIG = load_config(environ={})
SCORING = CONFIG.scoring
T0 = 1_750_000_000_000


class FailingStore(MemoryStore):
    """The in-process store, whose apply number `fail_call` fails unwritten."""

    def __init__(self, fail_call: int) -> None:
        super().__init__(Params.of(SCORING))
        self.calls = 0
        self.fail_call = fail_call

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        self.calls += 1
        if self.calls == self.fail_call:
            raise StateStoreError("connection reset by peer")
        return super().apply(updates)


class Consumed:
    """Where a record was consumed from: all the outputs need of its message."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class Idle:
    """Stands for the Kafka clients: scoring in parts never calls them."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_kwargs: 0


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorer.backoff, "delays", lambda: itertools.repeat(0.0))


def scored_in_parts(store: MemoryStore, parts: list[list[Item]]) -> list[Scored]:
    """Score `parts` as one started batch, the way the live loop does."""
    pipeline = ScorerPipeline(
        CONFIG, Scorer(SCORING, store), Idle(), lambda: Idle(), Metrics()
    )
    planned = []
    batch = Batch([])
    for items in parts:
        sources: list[Any] = [Consumed(len(batch.items) + n) for n in range(len(items))]
        part = Batch([], items, sources)
        plan = pipeline.scorer.plan(items)
        planned.append((part, plan, pipeline.lane.submit(plan.updates)))
        batch.items += items
        batch.sources += sources
    in_flight = InFlight(0.0, len(batch.items), batch, planned, {}, {})

    results, _outputs = pipeline._scored(in_flight, behind=None)
    pipeline.lane.close()
    return results


def scored_at_once(store: MemoryStore, parts: list[list[Item]]) -> list[Scored]:
    return Scorer(SCORING, store).score([item for items in parts for item in items])


def scores(results: list[Scored]) -> list[tuple[str, list[tuple[float, float]]]]:
    return [
        (r.status, [(e["previous_score"], e["score"]) for e in r.outputs])
        for r in results
    ]


def test_a_fit_update_before_the_failed_part_keeps_its_output() -> None:
    smaller = Firmographics("L1", T0, employees=500)
    larger = Firmographics("L1", T0 + 1, employees=500, industry="software")
    pricing = Activity("e1", "L2", "page_view", T0, url="/pricing")
    parts: list[list[Item]] = [[smaller], [larger], [pricing]]

    retried = scored_in_parts(FailingStore(fail_call=3), parts)

    expected = scored_at_once(MemoryStore(Params.of(SCORING)), parts)
    assert scores(retried) == scores(expected)
    assert scores(retried)[0] == ("scored", [(0.0, 15.0)])


def test_an_event_before_a_tombstone_keeps_its_output() -> None:
    earlier = Activity("e0", "L1", "page_view", T0, url="/pricing")
    demo = Activity("e1", "L1", "page_view", T0 + 1, url="/demo")
    pricing = Activity("e2", "L2", "page_view", T0, url="/pricing")
    parts: list[list[Item]] = [
        [demo],
        [Forget("L1", "tombstone:crm:0:1", T0)],
        [pricing],
    ]
    failing, clean = FailingStore(fail_call=4), MemoryStore(Params.of(SCORING))
    for store in (failing, clean):
        Scorer(SCORING, store).score([earlier])  # the lead's history: 20 points

    retried = scored_in_parts(failing, parts)

    expected = scored_at_once(clean, parts)
    assert scores(retried) == scores(expected)
    assert scores(retried)[0] == ("scored", [(20.0, 50.0)])
