"""From validated records to output events: the part every mode shares.

`scorer run` (Kafka and Redis) and `scorer replay` (files, in-process state)
both hand batches of records to a `Scorer`; only the store differs. That is
what makes a replay a faithful re-computation of the live service.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from scorer.config import Scoring
from scorer.events import Activity, Firmographics, Forget, firmographics_op_id
from scorer.fit import FitModel
from scorer.lead import (
    DUPLICATE,
    LATE,
    TOO_LATE,
    ActivityUpdate,
    FitUpdate,
    Outcome,
    Params,
    Snapshot,
    Update,
)
from scorer.publish import ERASURE, Reason, output_events
from scorer.rules import RuleBook

Item = Activity | Firmographics | Forget

# What became of one record, as a metric label.
SCORED = "scored"
DUPLICATE_RECORD = "duplicate"
NO_RULE = "no_rule"
STALE = "stale"
FORGOTTEN = "forgotten"


class LeadStore(Protocol):
    params: Params

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]: ...

    def snapshot(
        self, lead_id: str, as_of_ms: int | None = None
    ) -> Snapshot | None: ...

    def lead_ids(self) -> Iterator[str]: ...


@dataclass(slots=True)
class Scored:
    """The result of one record."""

    status: str
    outcome: Outcome | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    # The status the first delivery of this record had (or has).
    first_status: str = SCORED

    @property
    def too_late(self) -> bool:
        return self.outcome is not None and self.outcome.late == TOO_LATE

    @property
    def lateness(self) -> str | None:
        """ "late" or "too_late" (scorer_late_events_total's labels), else None.

        A redelivered copy is no new late event.
        """
        if self.status == DUPLICATE_RECORD or self.outcome is None:
            return None
        if self.outcome.late not in (LATE, TOO_LATE):
            return None
        return "too_late" if self.too_late else "late"


@dataclass(slots=True)
class Plan:
    """A batch's updates for the store, and what each needs to be published."""

    count: int  # records planned, with or without an update
    positions: list[int] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    reasons: list[Reason | None] = field(default_factory=list)


class Scorer:
    def __init__(self, scoring: Scoring, store: LeadStore) -> None:
        self.rules = RuleBook(scoring)
        self.fit = FitModel(scoring)
        self.store = store
        self.rules_version = scoring.rules_version
        self.threshold = scoring.mql.threshold

    def score(self, items: Sequence[Item]) -> list[Scored]:
        """Score a batch; results are in the order of `items`."""
        plan = self.plan(items)
        return self.finish(plan, self.store.apply(plan.updates))

    def plan(self, items: Sequence[Item]) -> Plan:
        """Match rules and compute fit: all of scoring that needs no state.

        `score` is `plan`, the store's `apply` of the plan's updates, then
        `finish`; the live pipeline runs `apply` on another thread so that
        Redis works while Python plans the next part of a batch.
        """
        plan = Plan(len(items))
        for position, item in enumerate(items):
            prepared = self._prepare(item)
            if prepared is None:
                continue
            update, reason = prepared
            plan.positions.append(position)
            plan.updates.append(update)
            plan.reasons.append(reason)
        return plan

    def finish(self, plan: Plan, outcomes: Sequence[Outcome | None]) -> list[Scored]:
        """The results of a plan whose updates the store applied."""
        results: list[Scored] = [Scored(NO_RULE) for _ in range(plan.count)]
        for position, update, reason, outcome in zip(
            plan.positions, plan.updates, plan.reasons, outcomes, strict=True
        ):
            results[position] = self._result(update, reason, outcome)
        return results

    def _prepare(self, item: Item) -> tuple[Update, Reason | None] | None:
        if isinstance(item, Forget):
            return item, ERASURE
        if isinstance(item, Firmographics):
            fit = self.fit.score(item)
            # The digest hashes the record: worked out once, for both fields.
            digest, at_ms = item.digest, item.updated_at_ms
            op_id = firmographics_op_id(at_ms, digest)
            update = FitUpdate(item.lead_id, op_id, at_ms, fit.points, digest)
            return update, Reason(None, fit.points, fit.rules)
        rule = self.rules.match(item)
        if rule is None:
            return None
        activity = ActivityUpdate(
            item.lead_id, item.event_id, item.occurred_at_ms, rule
        )
        return activity, Reason(rule.name, rule.points)

    def _result(
        self, update: Update, reason: Reason | None, outcome: Outcome | None
    ) -> Scored:
        if outcome is None:
            # A stale fit, or a tombstone of a lead not held: nothing moved.
            return Scored(FORGOTTEN if isinstance(update, Forget) else STALE)
        assert reason is not None
        outputs = output_events(
            update, outcome, reason, self.rules_version, self.threshold
        )
        first = FORGOTTEN if isinstance(update, Forget) else SCORED
        if outcome.status == DUPLICATE:
            return Scored(DUPLICATE_RECORD, outcome, outputs, first)
        return Scored(first, outcome, outputs, first)
