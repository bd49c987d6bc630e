"""Output events: what the scorer tells sales alerts and routing services.

Each update that moves a lead's score yields a ``score_changed`` event; one
that crosses the MQL threshold also yields an ``mql_crossed`` event. Their ids
are derived from the lead, the source event id and the rules version, so an
event re-processed after a crash produces byte-identical outputs that
consumers can recognise as copies, and the same events scored under other
rules produce new ones.
"""

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scorer.errors import InvalidRecord
from scorer.events import Forget
from scorer.lead import ActivityUpdate, FitUpdate, Outcome

ScoredUpdate = ActivityUpdate | FitUpdate | Forget

SCORE_CHANGED = "score_changed"
MQL_CROSSED = "mql_crossed"
# The dead-letter reason of a record whose output events the output format
# cannot hold (see `encode_outputs`).
OUTPUT_NOT_ENCODABLE = "output_not_encodable"

# Namespace of output event ids; fixed forever so ids stay stable across
# versions of the scorer (the name hashed with it changed once, when the
# rules version joined it).
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c9d0a-3b1e-4b8e-9a52-2c7d14f0e8a1")
_NAMESPACE_BYTES = OUTPUT_ID_NAMESPACE.bytes
# A hex digit with its two high bits set to the RFC 4122 variant, binary 10.
_VARIANT = {digit: f"{int(digit, 16) & 0x3 | 0x8:x}" for digit in "0123456789abcdef"}

# Scores are published with this many decimals; changes below the last one
# are not worth an event.
SCORE_DECIMALS = 2
DETAIL_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an update moved the score."""

    rule: str | None
    points: float
    fit_rules: tuple[str, ...] = ()


# The reason of an erasure (a tombstone): no rule, no points. Readers tell it
# by its source_event_id, which names the tombstone.
ERASURE = Reason(None, 0.0)


def output_events(
    update: ScoredUpdate,
    outcome: Outcome,
    reason: Reason,
    rules_version: str,
    threshold: float,
) -> list[dict[str, Any]]:
    """The events an applied (or re-delivered) update publishes."""
    score = _shown(outcome.score)
    previous = _shown(outcome.previous_score)
    crossed = outcome.was_mql != outcome.is_mql
    moved = score != previous
    if not (crossed or moved):
        return []

    # A crossing is decided on the unrounded score, which can cross while the
    # shown one stays put (50.004 to 49.996): its score_changed still
    # goes out, since the mql_crossed's reason points readers to it.
    base = _base(update, outcome, (score, previous), rules_version, threshold)
    events = [_score_changed(base, outcome, reason)]
    if crossed:
        events.append(_mql_crossed(base, outcome))
    return events


def encode_outputs(
    events: list[dict[str, Any]], encode: Callable[[Mapping[str, Any]], bytes]
) -> list[bytes]:
    """Each of a record's output events encoded, or none of them.

    An event the codec refuses (a score JSON cannot hold, say) raises
    `InvalidRecord` with reason OUTPUT_NOT_ENCODABLE for the record, which
    then goes to the dead letters like one that cannot be scored, instead
    of stopping the scorer for good: the same record consumed again would
    fail the same way. Its other events are left out with it, so no reader
    sees an mql_crossed without its score_changed.
    """
    encoded = []
    for event in events:
        try:
            encoded.append(encode(event))
        except InvalidRecord as exc:
            message = f"{event['type']} output: {exc.message}"
            raise InvalidRecord(OUTPUT_NOT_ENCODABLE, message, exc.field) from exc
    return encoded


def _base(
    update: ScoredUpdate,
    outcome: Outcome,
    shown: tuple[float, float],
    rules_version: str,
    threshold: float,
) -> dict[str, Any]:
    """The fields both kinds of event share, in the order they are written.

    That is the order schemas/lead_score.v1.avsc declares, in which an Avro
    reader returns them: `scorer watch` then prints an event read from an
    Avro topic with its keys in the order `scorer replay` writes them.
    """
    return {
        "lead_id": update.lead_id,
        "occurred_at": datetime.fromtimestamp(outcome.as_of_ms / 1000, tz=UTC),
        "score": shown[0],
        "previous_score": shown[1],
        "fit": _detail(outcome.fit),
        "engagement": _detail(outcome.engagement),
        "is_mql": outcome.is_mql,
        "direction": None,
        "threshold": threshold,
        "rules_version": rules_version,
        "source_event_id": _source_id(update),
        "reason": None,
    }


def _score_changed(
    base: dict[str, Any], outcome: Outcome, reason: Reason
) -> dict[str, Any]:
    # A key repeated in a dict display keeps its first place and its last
    # value: "reason" stays where the base puts it.
    return {
        "type": SCORE_CHANGED,
        "event_id": _event_id(base, SCORE_CHANGED, outcome),
        **base,
        "reason": {
            "rule": reason.rule,
            "fit_rules": list(reason.fit_rules),
            "points": _detail(reason.points),
            "points_applied": _detail(outcome.points_applied),
            "capped": outcome.capped,
            "decay": _detail(outcome.decay),
            "late": outcome.late > 0,
        },
    }


def _mql_crossed(base: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    direction = "up" if outcome.is_mql else "down"
    return {
        "type": MQL_CROSSED,
        "event_id": _event_id(base, f"{MQL_CROSSED}:{direction}", outcome),
        **base,
        "direction": direction,
    }


def _source_id(update: ScoredUpdate) -> str:
    if isinstance(update, ActivityUpdate):
        return update.op_id
    # A firmographic version or a tombstone has no event id of its own.
    return f"{update.lead_id}/{update.op_id}"


def _event_id(base: dict[str, Any], kind: str, outcome: Outcome) -> str:
    # The rules version is part of the name: the same events scored again
    # under other rules (a new key prefix or group) are new outputs, which
    # a reader that dedupes by event_id must not drop as copies. So is the
    # change itself (time, score before and after, fit and engagement): an
    # event scored again once its id was forgotten (past
    # scoring.dedupe_horizon, or after an erasure) changes the score anew,
    # and its output must not pass for a copy of the first one. A
    # redelivery gets its first outcome back from Redis, hence the same name.
    name = (
        f"{base['lead_id']}\n{base['source_event_id']}\n{kind}\n"
        f"{base['rules_version']}\n{outcome.as_of_ms}\n"
        f"{base['score']!r}\n{base['previous_score']!r}\n"
        f"{base['fit']!r}\n{base['engagement']!r}"
    )
    return output_id(name)


def output_id(name: str) -> str:
    """`str(uuid.uuid5(OUTPUT_ID_NAMESPACE, name))`, in about a third the time.

    RFC 4122 section 4.3: the first 16 bytes of SHA-1(namespace + name) with
    the version (5) in the high nibble of byte 6 and the variant (binary 10)
    in the two high bits of byte 8. Both are set on the hex digest, one
    character each; the stdlib also builds and validates a UUID object, which
    costs more than the hash at one call per output event.
    """
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _shown(score: float) -> float:
    return round(score, SCORE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _detail(value: float) -> float:
    return round(value, DETAIL_DECIMALS) + 0.0
