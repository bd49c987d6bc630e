"""The store lane: parts reach the store in order, and none after a failure."""

import threading
from collections.abc import Sequence

import pytest

from scorer.config import load_config
from scorer.errors import StateStoreError
from scorer.events import Activity
from scorer.lane import NotSent, StoreLane
from scorer.lead import MemoryStore, Outcome, Params, Update
from scorer.scoring import Scorer

SCORING = load_config(environ={}).scoring
T0 = 1_750_000_000_000
WAIT_S = 10.0


class GatedStore(MemoryStore):
    """The in-process store, which can be made to wait or to fail once."""

    def __init__(self) -> None:
        super().__init__(Params.of(SCORING))
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.applied: list[list[str]] = []

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        assert self.gate.wait(WAIT_S)
        if self.fail_next:
            self.fail_next = False
            raise StateStoreError("connection refused")
        self.applied.append([u.op_id for u in updates])  # type: ignore[union-attr]
        return super().apply(updates)


def plan_of(*event_ids: str) -> list[Update]:
    scorer = Scorer(SCORING, MemoryStore(Params.of(SCORING)))
    pages = [
        Activity(event_id, "L1", "page_view", T0 + n, url="/pricing")
        for n, event_id in enumerate(event_ids)
    ]
    return scorer.plan(pages).updates


def test_parts_reach_the_store_in_the_order_they_were_submitted() -> None:
    store = GatedStore()
    lane = StoreLane(store)
    store.gate.clear()
    first = lane.submit(plan_of("a1", "a2"))
    second = lane.submit(plan_of("b1"))
    third = lane.submit(plan_of("c1", "c2"))

    assert not first.done()
    store.gate.set()
    outcomes = [f.result(WAIT_S) for f in (first, second, third)]
    lane.close()

    assert store.applied == [["a1", "a2"], ["b1"], ["c1", "c2"]]
    assert [len(o) for o in outcomes] == [2, 1, 2]
    assert all(o is not None and o.status == "applied" for o in outcomes[2])


def test_no_part_is_sent_after_one_failed_until_cleared() -> None:
    store = GatedStore()
    lane = StoreLane(store)
    store.fail_next = True
    failed = lane.submit(plan_of("a1"))
    behind = lane.submit(plan_of("b1"))

    with pytest.raises(StateStoreError, match="connection refused"):
        failed.result(WAIT_S)
    with pytest.raises(NotSent):
        behind.result(WAIT_S)
    assert store.applied == []

    lane.settle()
    again = lane.submit(plan_of("a1", "b1"))
    assert len(again.result(WAIT_S)) == 2
    lane.close()
    assert store.applied == [["a1", "b1"]]
