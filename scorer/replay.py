"""`scorer replay`: the scoring of the live service, over JSON-lines files.

Events and firmographic records (mixed, one JSON object per line) are scored
in file order with in-process state, by the same `Scorer` the live service
uses; the output events go to stdout as JSON lines. A line that cannot be
scored is reported with its file and line number and scoring goes on.
"""

import base64
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from scorer.config import Config
from scorer.errors import InvalidRecord
from scorer.events import (
    Activity,
    Record,
    TimeBounds,
    format_time,
    parse_record,
    unexpected_error,
)
from scorer.lead import MemoryStore, Params, Snapshot
from scorer.publish import MQL_CROSSED, encode_outputs
from scorer.scoring import (
    DUPLICATE_RECORD,
    FORGOTTEN,
    NO_RULE,
    SCORED,
    STALE,
    Item,
    Scored,
    Scorer,
)
from scorer.wire import JsonCodec

BATCH_LINES = 1000
# Windows editors start UTF-8 files with a byte-order mark; it is no part of
# the first record (RFC 8259, section 8.1, lets a parser ignore it).
UTF8_BOM = b"\xef\xbb\xbf"
# Rows of the summary table per scoring status; the first three always show.
OUTCOME_LABELS = (
    (SCORED, "scored"),
    (NO_RULE, "no rule"),
    (DUPLICATE_RECORD, "duplicates"),
    (STALE, "stale firmographics"),
    (FORGOTTEN, "forgotten leads"),
)
ALWAYS_SHOWN = (SCORED, NO_RULE, DUPLICATE_RECORD)


class Progress(Protocol):
    def advance(self, records: int, bytes_read: int) -> None: ...


# How the summary names score changes that came from firmographics.
FIT_CHANGES = "(fit)"


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    after_as_of: int = 0
    outputs: int = 0
    copies: int = 0
    mql_up: int = 0
    mql_down: int = 0
    # Behind the lead's newest event, within scoring.allowed_lateness and
    # past it (the caps of closed windows restart; a window longer than
    # allowed_lateness may still be open), as scorer_late_events_total.
    lateness: Counter[str] = field(default_factory=Counter)
    # Score changes by the rule that made them ("(fit)" for firmographics):
    # which rules drive the scores, for a rules author comparing rule sets.
    by_rule: Counter[str] = field(default_factory=Counter)
    latest_ms: int | None = None

    def count_output(self, event: dict[str, Any], status: str) -> None:
        """Tally one output written for a record of this scoring status."""
        self.outputs += 1

        # A redelivered record re-publishes its first outputs byte for byte,
        # so that consumers can drop them; they are no new crossings.
        if status == DUPLICATE_RECORD:
            self.copies += 1
            return

        if event["type"] != MQL_CROSSED:
            self.by_rule[event["reason"]["rule"] or FIT_CHANGES] += 1
            return
        if event["direction"] == "up":
            self.mql_up += 1
        else:
            self.mql_down += 1

    def table(self, leads: int, elapsed_s: float) -> str:
        """The end-of-run summary, one figure a row."""
        rows: list[tuple[str, str]] = [("records read", f"{self.lines:,}")]
        rows += [
            (label, f"{self.outcomes[status]:,}")
            for status, label in OUTCOME_LABELS
            if status in ALWAYS_SHOWN or self.outcomes[status]
        ]
        rows.append(("dead-lettered", f"{sum(self.bad.values()):,}"))
        rows += [(f"  {reason}", f"{n:,}") for reason, n in sorted(self.bad.items())]
        if self.lateness:
            late, too_late = self.lateness["late"], self.lateness["too_late"]
            rows.append(("late, within allowed_lateness", f"{late:,}"))
            rows.append(("too late, past allowed_lateness", f"{too_late:,}"))
        if self.after_as_of:
            rows.append(("after --as-of", f"{self.after_as_of:,}"))
        rows.append(("outputs", f"{self.outputs:,}"))
        if self.copies:
            rows.append(("  re-published copies", f"{self.copies:,}"))
        rows += [
            (f"  score changes by {rule}", f"{n:,}")
            for rule, n in sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        rate = self.lines / elapsed_s if elapsed_s > 0 else 0.0
        rows += [
            ("MQL crossings up", f"{self.mql_up:,}"),
            ("MQL crossings down", f"{self.mql_down:,}"),
            ("leads in state", f"{leads:,}"),
            ("elapsed", f"{elapsed_s:.2f} s"),
            ("records/s", f"{rate:,.0f}"),
        ]
        width = max(len(label) for label, _ in rows) + 2
        digits = max(len(value) for _, value in rows)
        lines = [f"  {label:<{width}}{value:>{digits}}" for label, value in rows]
        return "\n".join(["replay summary", *lines])


@dataclass(frozen=True, slots=True)
class Line:
    source: str
    number: int
    text: bytes


class Replay:
    """One replay run: feed lines, then read the final state."""

    def __init__(
        self,
        config: Config,
        as_of_ms: int | None = None,
        errors: IO[str] | None = None,
        dead_letters: IO[str] | None = None,
    ) -> None:
        self.store = MemoryStore(Params.of(config.scoring))
        self.scorer = Scorer(config.scoring, self.store)
        self.bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
        self.as_of_ms = as_of_ms
        self.errors = errors if errors is not None else sys.stderr
        self.dead_letters = dead_letters
        self.stats = ReplayStats()
        self._codec = JsonCodec()

    def run(
        self, lines: Iterable[Line], out: IO[bytes], progress: Progress | None = None
    ) -> ReplayStats:
        for batch in _chunks(lines, BATCH_LINES):
            parsed = [
                (line, item)
                for line in batch
                if (item := self._parse(line)) is not None
            ]
            results = self.scorer.score([item for _, item in parsed])
            for (line, _), result in zip(parsed, results, strict=True):
                self._write(line, result, out)
            if progress is not None:
                progress.advance(len(batch), sum(len(line.text) for line in batch))
        return self.stats

    def lead_count(self) -> int:
        return sum(1 for _ in self.store.lead_ids())

    def snapshots(self) -> Iterator[Snapshot]:
        as_of = self.as_of_ms if self.as_of_ms is not None else self.stats.latest_ms
        for lead_id in self.store.lead_ids():
            snapshot = self.store.snapshot(lead_id, as_of)
            if snapshot is not None:
                yield snapshot

    def _parse(self, line: Line) -> Item | None:
        self.stats.lines += 1
        try:
            record = parse_line(line.text, self.bounds, self._codec)
        except InvalidRecord as exc:
            self._reject(line, exc)
            return None

        moment = (
            record.occurred_at_ms
            if isinstance(record, Activity)
            else record.updated_at_ms
        )
        if self.as_of_ms is not None and moment > self.as_of_ms:
            self.stats.after_as_of += 1
            return None
        # Firmographic records too: a default --as-of before one that is
        # applied would show its fit at a time it did not yet hold.
        latest = self.stats.latest_ms
        self.stats.latest_ms = moment if latest is None else max(latest, moment)
        return record

    def _reject(self, line: Line, exc: InvalidRecord) -> None:
        self.stats.bad[exc.reason] += 1
        where = f"{line.source}:{line.number}"
        field_note = f" field={exc.field}" if exc.field else ""
        # The line itself may hold personal data: report where, not what.
        print(f"{where}: {exc.reason}{field_note}: {exc.message}", file=self.errors)
        if self.dead_letters is not None:
            entry = {
                "file": line.source,
                "line": line.number,
                "reason": exc.reason,
                "field": exc.field,
                "message": exc.message,
                **_raw(line.text),
            }
            self.dead_letters.write(json.dumps(entry) + "\n")

    def _write(self, line: Line, result: Scored, out: IO[bytes]) -> None:
        """The line's outputs, or its report if they cannot be encoded."""
        try:
            encoded = encode_outputs(result.outputs, self._codec.encode)
        except InvalidRecord as exc:
            self._reject(line, exc)
            return

        self.stats.outcomes[result.status] += 1
        if result.lateness is not None:
            self.stats.lateness[result.lateness] += 1
        for event, text in zip(result.outputs, encoded, strict=True):
            out.write(text + b"\n")
            self.stats.count_output(event, result.status)


def parse_line(text: bytes, bounds: TimeBounds, codec: JsonCodec) -> Record:
    """The record on one input line, validated as the scorer validates it.

    Every refusal is an `InvalidRecord`, a bug met on the way too
    (`internal_error`): it must not end a run at one line.
    """
    try:
        if not text.strip():
            raise InvalidRecord("empty_line", "the line is empty")
        return parse_record(codec.decode(text), bounds)
    except InvalidRecord:
        raise
    except Exception as exc:
        raise unexpected_error(exc) from exc


def read_lines(paths: Iterable[str]) -> Iterator[Line]:
    """The lines of each file in turn; '-' reads standard input.

    A UTF-8 byte-order mark at the start of a file is dropped.
    """
    for path in paths:
        if path == "-":
            yield from _numbered("<stdin>", sys.stdin.buffer)
            continue
        with Path(path).open("rb") as handle:
            yield from _numbered(path, handle)


def state_line(snapshot: Snapshot) -> str:
    """A lead's line of `--state-out` (and of `scorer state`)."""
    return json.dumps(snapshot_json(snapshot)) + "\n"


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "lead_id": snapshot.lead_id,
        "fit": round(snapshot.fit, 4) + 0.0,
        "engagement": round(snapshot.engagement, 4) + 0.0,
        "score": round(snapshot.score, 4) + 0.0,
        "as_of": None if snapshot.as_of_ms is None else format_time(snapshot.as_of_ms),
        "is_mql": snapshot.is_mql,
    }


def _raw(text: bytes) -> dict[str, str]:
    """The line as it was: text if it is UTF-8, else its bytes in base64."""
    try:
        return {"raw": text.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(text).decode("ascii")}


def _numbered(source: str, handle: IO[bytes]) -> Iterator[Line]:
    for number, text in enumerate(handle, start=1):
        first = text.removeprefix(UTF8_BOM) if number == 1 else text
        yield Line(source, number, first)


def _chunks(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
