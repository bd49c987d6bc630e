"""A lead's score state and how one update changes it.

This module is the reference implementation of the scoring state machine and
the in-process store `scorer replay` runs on. `scorer.state` holds its Lua
twin for Redis; a property test keeps the two identical.

State of one lead:
- ``ref_ms``: the newest activity time seen; every value is held as of it.
- accumulators, by field name as in Redis: ``b:<rule>`` is a rule's folded
  engagement, ``w:<rule>:<window>`` an open capped window (raw points, decayed
  points). A window closes (folds into ``b:``) once the allowed lateness has
  passed its end, so events up to that late still meet the cap exactly.
- fit, the time and digest of the firmographic record it came from, and the
  MQL flag.
- the ids of recent updates with their outcomes, for dedupe and re-publishing,
  each with ``ref_ms`` as it was right after the update was applied; an id is
  dropped once ``ref_ms`` moves more than the dedupe horizon past that.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from scorer import decay
from scorer.config import Scoring
from scorer.events import Forget
from scorer.rules import ScoringRule

# Outcome.status: what the store did with one update (scoring.py has the
# statuses of whole records, for the metrics).
APPLIED = "applied"
DUPLICATE = "duplicate"

ON_TIME = 0
LATE = 1  # behind the lead's newest event, within the allowed lateness
TOO_LATE = 2  # beyond it: still counted, but a closed window's cap restarts

# An MQL stays one while its engagement holds this share of a positive
# `mql.min_engagement`: fit alone keeps no lead an MQL, as it makes none. The
# gap below the entry level is the band that keeps the flag from flapping; a
# min_engagement of 0 leaves none, so it asks nothing of an MQL to stay.
# The Lua twin in scorer.state is built with this number.
STAY_ENGAGEMENT_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class ActivityUpdate:
    lead_id: str
    op_id: str
    at_ms: int
    rule: ScoringRule


@dataclass(frozen=True, slots=True)
class FitUpdate:
    """A firmographic record's fit; `digest` orders records stamped alike."""

    lead_id: str
    op_id: str
    at_ms: int
    fit: float
    digest: str


Update = ActivityUpdate | FitUpdate | Forget


@dataclass(frozen=True, slots=True)
class Params:
    """The scoring settings the state machine needs, as plain numbers."""

    fit_weight: float
    engagement_weight: float
    threshold: float
    hysteresis: float
    lateness_ms: int
    dedupe_horizon_ms: int
    # None: the threshold alone (engagement may be negative, so 0 would differ).
    min_engagement: float | None = None

    @classmethod
    def of(cls, scoring: Scoring) -> "Params":
        return cls(
            fit_weight=scoring.total.fit_weight,
            engagement_weight=scoring.total.engagement_weight,
            threshold=scoring.mql.threshold,
            hysteresis=scoring.mql.hysteresis,
            lateness_ms=scoring.allowed_lateness,
            dedupe_horizon_ms=scoring.dedupe_horizon,
            min_engagement=scoring.mql.min_engagement,
        )

    def total(self, fit: float, engagement: float) -> float:
        return self.fit_weight * fit + self.engagement_weight * engagement

    def is_mql(self, was_mql: bool, score: float, engagement: float) -> bool:
        """Hysteresis: up at the threshold, down only below the band.

        Going up also needs `min_engagement`: a buying signal, not fit alone.
        Staying up needs a share of it (see `stays`), so that a lead whose
        fit alone is in the band does not stay an MQL for ever once in.
        """
        if was_mql:
            return self.stays(score, engagement)
        if score < self.threshold:
            return False
        return self.min_engagement is None or engagement >= self.min_engagement

    def stays(self, score: float, engagement: float) -> bool:
        """Whether an MQL with this score and engagement is still one."""
        in_band = score >= self.threshold - self.hysteresis
        if self.min_engagement is None or self.min_engagement <= 0:
            return in_band
        engaged = engagement >= self.min_engagement * STAY_ENGAGEMENT_SHARE
        return in_band and engaged

    def fell_out(self, was_mql: bool, decayed_score: float, decayed: float) -> bool:
        """Whether an MQL, decayed to its next event, was no longer one.

        Decay lowers a quiet lead's score and engagement between events,
        unseen. Had its next event's points been judged against the flag
        alone, an event lifting it back into the band would keep it an MQL it
        stopped being weeks before: it is judged as no MQL instead, and leaves
        (down) unless the event takes it up to the threshold again.
        """
        return was_mql and not self.stays(decayed_score, decayed)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one update did to a lead; the source of its output events."""

    status: str
    previous_score: float
    score: float
    fit: float
    engagement: float
    points_applied: float
    decay: float
    capped: bool
    late: int
    was_mql: bool
    is_mql: bool
    as_of_ms: int

    def encode(self) -> str:
        flags = [self.capped, self.late, self.was_mql, self.is_mql]
        numbers = [
            self.previous_score,
            self.score,
            self.fit,
            self.engagement,
            self.points_applied,
            self.decay,
        ]
        parts = [repr(n) for n in numbers] + [str(int(f)) for f in flags]
        return "|".join([self.status, *parts, str(self.as_of_ms)])

    @classmethod
    def decode(cls, text: str) -> "Outcome":
        # One call per scored event: indexing beats unpacking generators.
        part = text.split("|")
        # Both stores write flags and lateness as one digit and the time as
        # whole ms: those spellings skip the float, which is exact for them
        # (15 digits stay below 2**53). Any other spelling goes the general way.
        return cls(
            part[0],
            float(part[1]),
            float(part[2]),
            float(part[3]),
            float(part[4]),
            float(part[5]),
            float(part[6]),
            part[7] == "1" if part[7] in ("0", "1") else bool(int(float(part[7]))),
            int(part[8]) if part[8] in ("0", "1", "2") else int(float(part[8])),
            part[9] == "1" if part[9] in ("0", "1") else bool(int(float(part[9]))),
            part[10] == "1" if part[10] in ("0", "1") else bool(int(float(part[10]))),
            int(part[11])
            if len(part[11]) <= 15 and part[11].isdecimal()
            else int(float(part[11])),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    lead_id: str
    fit: float
    engagement: float
    score: float
    as_of_ms: int | None
    is_mql: bool


@dataclass(slots=True)
class Window:
    raw: float
    decayed: float
    half_life_ms: int
    cap: float
    end_ms: int


@dataclass(slots=True)
class LeadState:
    ref_ms: int | None = None
    fit: float = 0.0
    fit_at_ms: int | None = None
    fit_digest: str = ""  # also what a state from before digests holds
    fit_outcome: Outcome | None = None
    is_mql: bool = False
    score: float = 0.0
    folded: dict[str, tuple[float, int]] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    # Update id -> (ref_ms right after it was applied, outcome), in the
    # order applied: oldest first (see `_forget_old`).
    seen: dict[str, tuple[int, Outcome]] = field(default_factory=dict)

    def engagement(self) -> float:
        """Sum in field-name order, exactly as the Lua script does."""
        total = 0.0
        for name in sorted([*self.folded, *self.windows]):
            if name in self.folded:
                total = total + self.folded[name][0]
            else:
                window = self.windows[name]
                share = decay.capped_share(window.cap, window.raw)
                total = total + share * window.decayed
        return total

    def advance(self, to_ms: int) -> None:
        """Decay every accumulator forward to `to_ms` (the new newest event)."""
        assert self.ref_ms is not None
        elapsed = to_ms - self.ref_ms
        for name, (value, half_life) in self.folded.items():
            self.folded[name] = (value * decay.factor(elapsed, half_life), half_life)
        for window in self.windows.values():
            window.decayed = window.decayed * decay.factor(elapsed, window.half_life_ms)
        self.ref_ms = to_ms

    def close_windows(self, lateness_ms: int) -> None:
        """Fold windows no on-time-enough event can reach any more."""
        assert self.ref_ms is not None
        for name in sorted(self.windows):
            window = self.windows[name]
            if window.end_ms + lateness_ms > self.ref_ms:
                continue
            base = _folded_name(name)
            value, _ = self.folded.get(base, (0.0, window.half_life_ms))
            share = decay.capped_share(window.cap, window.raw)
            self.folded[base] = (value + share * window.decayed, window.half_life_ms)
            del self.windows[name]


class MemoryStore:
    """Lead state in this process: for `scorer replay` and for tests."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._leads: dict[str, LeadState] = {}
        # Per erased lead, its tombstone's id and outcome until the lead
        # comes back: a redelivered tombstone publishes the same again.
        # Redis forgets them after a day of wall time, which this store has
        # not got; they need no bound: one small entry per erased lead, in
        # place of all its state, and replay's JSON lines hold no tombstones.
        self._erased: dict[str, tuple[str, Outcome]] = {}

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        return [self._apply_one(update) for update in updates]

    def snapshot(self, lead_id: str, as_of_ms: int | None = None) -> Snapshot | None:
        state = self._leads.get(lead_id)
        if state is None:
            return None
        return evaluate(lead_id, state, self.params, as_of_ms)

    def lead_ids(self) -> Iterator[str]:
        return iter(sorted(self._leads))

    def remembered_ids(self, lead_id: str) -> list[str]:
        """The lead's update ids kept for dedupe, oldest first.

        The same ids as the lead's ``seen`` set in Redis.
        """
        state = self._leads.get(lead_id)
        return [] if state is None else list(state.seen)

    def _apply_one(self, update: Update) -> Outcome | None:
        if isinstance(update, Forget):
            return self._forget(update)

        if update.lead_id not in self._leads:
            self._erased.pop(update.lead_id, None)
        state = self._leads.setdefault(update.lead_id, LeadState())
        if isinstance(update, FitUpdate):
            return apply_fit(state, update, self.params)
        return apply_activity(state, update, self.params)

    def _forget(self, update: Forget) -> Outcome | None:
        state = self._leads.pop(update.lead_id, None)
        if state is None:
            erased = self._erased.get(update.lead_id)
            if erased is not None and erased[0] == update.op_id:
                return replace(erased[1], status=DUPLICATE)
            return None

        outcome = erasure(state, update)
        self._erased[update.lead_id] = (update.op_id, outcome)
        return outcome


def erasure(state: LeadState, update: Forget) -> Outcome:
    """What a tombstone does to a lead it holds: everything back to zero.

    The outcome says so, so that readers of the output topic drop the lead
    (and its MQL status) too instead of keeping its last score for ever.
    """
    return Outcome(
        status=APPLIED,
        previous_score=state.score,
        score=0.0,
        fit=0.0,
        engagement=0.0,
        points_applied=0.0,
        decay=0.0,
        capped=False,
        late=ON_TIME,
        was_mql=state.is_mql,
        is_mql=False,
        as_of_ms=update.at_ms,
    )


def apply_activity(state: LeadState, update: ActivityUpdate, params: Params) -> Outcome:
    remembered = _remembered(state, update.op_id, params)
    if remembered is not None:
        return replace(remembered, status=DUPLICATE)

    previous_score = state.score
    decay_lost = 0.0
    fell = False
    if state.ref_ms is None:
        state.ref_ms = update.at_ms
    moved = update.at_ms > state.ref_ms
    if moved:
        before = state.engagement()
        state.advance(update.at_ms)
        after = state.engagement()
        decay_lost = before - after
        fell = params.fell_out(state.is_mql, params.total(state.fit, after), after)
    late = _lateness(state.ref_ms - update.at_ms, params.lateness_ms)

    applied, capped = _add_points(state, update)
    state.close_windows(params.lateness_ms)
    outcome = _settle(state, params, previous_score, applied, decay_lost, fell)
    outcome = replace(outcome, capped=capped, late=late)

    # Remembered by the lead's newest time, not the event's own: an event
    # older than the horizon must be known again when it is redelivered.
    state.seen[update.op_id] = (state.ref_ms, outcome)
    if moved:
        _forget_old(state, params.dedupe_horizon_ms)
    return outcome


def apply_fit(state: LeadState, update: FitUpdate, params: Params) -> Outcome | None:
    # Records stamped alike are ordered by digest, so that any arrival order
    # ends in the same fit; the same time and digest is the same record.
    record = (update.at_ms, update.digest)
    current = (state.fit_at_ms, state.fit_digest)
    if state.fit_at_ms is not None and record <= current:
        if record == current and state.fit_outcome is not None:
            return replace(state.fit_outcome, status=DUPLICATE)
        return None

    previous_score = state.score
    change = update.fit - state.fit
    state.fit = update.fit
    state.fit_at_ms = update.at_ms
    state.fit_digest = update.digest
    outcome = _settle(state, params, previous_score, change, 0.0)
    if state.ref_ms is None:
        outcome = replace(outcome, as_of_ms=update.at_ms)

    state.fit_outcome = outcome
    return outcome


def evaluate(
    lead_id: str, state: LeadState, params: Params, as_of_ms: int | None
) -> Snapshot:
    """The lead's scores as of `as_of_ms` (default: its newest event)."""
    if state.ref_ms is None:
        engagement = 0.0
        as_of_ms = as_of_ms if as_of_ms is not None else state.fit_at_ms
    else:
        as_of_ms = state.ref_ms if as_of_ms is None else max(as_of_ms, state.ref_ms)
        engagement = _engagement_at(state, as_of_ms)
    score = params.total(state.fit, engagement)
    return Snapshot(
        lead_id=lead_id,
        fit=state.fit,
        engagement=engagement,
        score=score,
        as_of_ms=as_of_ms,
        is_mql=params.is_mql(state.is_mql, score, engagement),
    )


def _engagement_at(state: LeadState, as_of_ms: int) -> float:
    assert state.ref_ms is not None
    probe = LeadState(
        ref_ms=state.ref_ms,
        folded=dict(state.folded),
        windows={name: replace(w) for name, w in state.windows.items()},
    )
    probe.advance(as_of_ms)
    return probe.engagement()


def _remembered(state: LeadState, op_id: str, params: Params) -> Outcome | None:
    entry = state.seen.get(op_id)
    if entry is None or state.ref_ms is None:
        return None
    applied_at_ms, outcome = entry
    # An id is forgotten once the lead's newest time has moved a whole
    # horizon past the moment it was applied. `_forget_old` has dropped such
    # ids already; the check mirrors the script's, and the delete keeps
    # `seen` in applied order should the id be applied again.
    if applied_at_ms < state.ref_ms - params.dedupe_horizon_ms:
        del state.seen[op_id]
        return None
    return outcome


def _forget_old(state: LeadState, horizon_ms: int) -> None:
    """Drop the ids applied more than a horizon before the lead's newest time.

    Called when that time moved, as the Lua script's forget_old is, so both
    stores hold the same ids. `seen` is in the order the ids were applied,
    and the newest time they are kept by never goes back while the lead is
    held (an expired id applied again is re-inserted at the end), so the
    expired ids are the first ones.
    """
    assert state.ref_ms is not None
    limit = state.ref_ms - horizon_ms
    expired: list[str] = []
    for op_id, (applied_at_ms, _) in state.seen.items():
        if applied_at_ms >= limit:
            break
        expired.append(op_id)
    for op_id in expired:
        del state.seen[op_id]


def _lateness(behind_ms: int, lateness_ms: int) -> int:
    if behind_ms <= 0:
        return ON_TIME
    return LATE if behind_ms <= lateness_ms else TOO_LATE


def _add_points(state: LeadState, update: ActivityUpdate) -> tuple[float, bool]:
    """Add the event's decayed points; returns (points added, hit the cap)."""
    assert state.ref_ms is not None
    rule = update.rule
    worth = rule.points * decay.factor(state.ref_ms - update.at_ms, rule.half_life_ms)
    if rule.cap_points is None or rule.cap_window_ms is None:
        name = f"b:{rule.name}"
        value, _ = state.folded.get(name, (0.0, rule.half_life_ms))
        state.folded[name] = (value + worth, rule.half_life_ms)
        return worth, False

    bucket = update.at_ms // rule.cap_window_ms
    name = f"w:{rule.name}:{bucket}"
    window = state.windows.get(name)
    if window is None:
        end_ms = (bucket + 1) * rule.cap_window_ms
        window = Window(0.0, 0.0, rule.half_life_ms, rule.cap_points, end_ms)
        state.windows[name] = window
    before = decay.capped_share(window.cap, window.raw) * window.decayed
    window.raw = window.raw + rule.points
    window.decayed = window.decayed + worth
    after = decay.capped_share(window.cap, window.raw) * window.decayed
    return after - before, abs(window.raw) > window.cap


def _settle(
    state: LeadState,
    params: Params,
    previous_score: float,
    applied: float,
    decay_lost: float,
    fell: bool = False,
) -> Outcome:
    """The update's outcome; `fell`: decay took an MQL out of the band before it."""
    engagement = state.engagement()
    score = params.total(state.fit, engagement)
    was_mql = state.is_mql
    state.is_mql = params.is_mql(was_mql and not fell, score, engagement)
    state.score = score
    return Outcome(
        status=APPLIED,
        previous_score=previous_score,
        score=score,
        fit=state.fit,
        engagement=engagement,
        points_applied=applied,
        decay=decay_lost,
        capped=False,
        late=ON_TIME,
        was_mql=was_mql,
        is_mql=state.is_mql,
        as_of_ms=state.ref_ms if state.ref_ms is not None else 0,
    )


def _folded_name(window_name: str) -> str:
    rule = window_name.split(":")[1]
    return f"b:{rule}"
