"""`scorer replay`: the scoring of the live service, over JSON-lines files.

Events and firmographic records (mixed, one JSON object per line) are scored
in file order with in-process state, by the same `Scorer` the live service
uses; the output events go to stdout as JSON lines. A line that cannot be
scored is reported with its file and line number and scoring goes on.
"""

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from scorer.config import Config
from scorer.errors import InvalidRecord
from scorer.events import Activity, TimeBounds, format_time, parse_record
from scorer.lead import MemoryStore, Params, Snapshot
from scorer.publish import MQL_CROSSED
from scorer.scoring import Item, Scored, Scorer
from scorer.wire import JsonCodec

BATCH_LINES = 1000


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    after_as_of: int = 0
    outputs: int = 0
    mql_up: int = 0
    latest_ms: int | None = None

    def summary(self) -> str:
        parts = [f"lines={self.lines}"]
        parts += [f"{name}={count}" for name, count in sorted(self.outcomes.items())]
        parts.append(f"bad={sum(self.bad.values())}")
        parts += [f"bad.{reason}={count}" for reason, count in sorted(self.bad.items())]
        if self.after_as_of:
            parts.append(f"after_as_of={self.after_as_of}")
        parts += [f"outputs={self.outputs}", f"mql_crossed_up={self.mql_up}"]
        return "replay: " + " ".join(parts)


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

    def run(self, lines: Iterable[Line], out: IO[bytes]) -> ReplayStats:
        for batch in _chunks(lines, BATCH_LINES):
            items = [item for item in map(self._parse, batch) if item is not None]
            for result in self.scorer.score(items):
                self._write(result, out)
        return self.stats

    def snapshots(self) -> Iterator[Snapshot]:
        as_of = self.as_of_ms if self.as_of_ms is not None else self.stats.latest_ms
        for lead_id in self.store.lead_ids():
            snapshot = self.store.snapshot(lead_id, as_of)
            if snapshot is not None:
                yield snapshot

    def _parse(self, line: Line) -> Item | None:
        self.stats.lines += 1
        if not line.text.strip():
            return None
        try:
            record = parse_record(self._codec.decode(line.text), self.bounds)
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
        if isinstance(record, Activity):
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
                "raw": line.text.decode("utf-8", errors="replace"),
            }
            self.dead_letters.write(json.dumps(entry) + "\n")

    def _write(self, result: Scored, out: IO[bytes]) -> None:
        self.stats.outcomes[result.status] += 1
        for event in result.outputs:
            out.write(self._codec.encode(event) + b"\n")
            self.stats.outputs += 1
            if event["type"] == MQL_CROSSED and event["direction"] == "up":
                self.stats.mql_up += 1


def read_lines(paths: Iterable[str]) -> Iterator[Line]:
    """The lines of each file in turn; '-' reads standard input."""
    for path in paths:
        if path == "-":
            yield from _numbered("<stdin>", sys.stdin.buffer)
            continue
        with Path(path).open("rb") as handle:
            yield from _numbered(path, handle)


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "lead_id": snapshot.lead_id,
        "fit": round(snapshot.fit, 4),
        "engagement": round(snapshot.engagement, 4) + 0.0,
        "score": round(snapshot.score, 4) + 0.0,
        "as_of": format_time(snapshot.as_of_ms) if snapshot.as_of_ms else None,
        "is_mql": snapshot.is_mql,
    }


def _numbered(source: str, handle: IO[bytes]) -> Iterator[Line]:
    for number, text in enumerate(handle, start=1):
        yield Line(source, number, text)


def _chunks(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
