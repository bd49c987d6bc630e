"""Python CPU per record of the scorer's in-process stages, without servers.

    python bench/records.py [--records N] [--leads L] [--repeats R]
    python bench/records.py --against REV [--rounds K]

Builds N Avro records with `traffic.Traffic` (as bench/pipeline.py sends
them), then times each stage the live loop runs in Python, over every record
or output it meets:

- decode: `AvroCodec.decode` of an input message value;
- parse: `events.parse_record` of the decoded mapping;
- match: `RuleBook.match` of an activity, `FitModel.score` of a CRM record;
- outcome: `Outcome.decode` of the text the Redis script returns;
- outputs: `publish.output_events` of a realistic outcome (the in-process
  store `scorer replay` uses scores the records first, untimed);
- encode: `AvroCodec.encode` of an output event for the output topic;
- json: `JsonCodec.encode` of an output event, as `scorer replay` writes it.

Each stage runs R times; the run with the least CPU time (a shared machine
steals wall time, not CPU time) counts. Figures are microseconds per
input record, so the stages add up to the loop's Python cost per record.

With `--against REV` the scorer package of git revision REV and that of the
working tree each run K times in turn, as child processes on the same
records, and the least CPU time of each side is printed (the machine's other
work only ever adds to it). The children also hash every result (records,
rejections, output bytes); different hashes mean the two versions do not
behave the same, and the run fails.
"""

import argparse
import gc
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig import encode, input_codec
from traffic import Traffic

from scorer.config import load_config
from scorer.errors import InvalidRecord
from scorer.events import Firmographics, Record, TimeBounds, parse_record
from scorer.fit import FitModel
from scorer.lead import ActivityUpdate, FitUpdate, MemoryStore, Outcome, Params
from scorer.publish import Reason, ScoredUpdate, output_events
from scorer.rules import RuleBook
from scorer.wire import SCORE_SCHEMA, AvroCodec, JsonCodec, SchemaCatalog

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
STAGES = ("decode", "parse", "match", "outcome", "outputs", "encode", "json")
# Fixed and in the past, so both versions of a comparison see the same records
# and all of them are within the time bounds.
DEFAULT_END_MS = 1_790_000_000_000
# Every this many records, one is spoilt on purpose, so the hash also covers
# the rejections (reason, message, field) of both versions.
SPOILT_EVERY = 50
_ADDRESS = re.compile(r"0x[0-9a-f]+")


@dataclass(slots=True)
class Workload:
    """Every stage's inputs, made once, untimed."""

    values: list[bytes]
    mappings: list[dict[str, Any]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    scored: list[tuple[ScoredUpdate, Outcome, Reason]] = field(default_factory=list)
    outcome_texts: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.against:
        return _compare(args)

    figures, digest = _measure(args)
    if args.json:
        found = {"figures": figures, "digest": digest, "records": args.records}
        print(json.dumps(found))
        return 0
    print(_counts(args.records, figures))
    for stage in STAGES:
        print(f"{stage:<8} {figures[stage]:8.2f} us/record")
    total = sum(figures[stage] for stage in STAGES)
    print(f"{'total':<8} {total:8.2f} us/record")
    print(f"digest   {digest}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5, help="runs per stage")
    parser.add_argument("--end-ms", type=int, default=DEFAULT_END_MS)
    parser.add_argument("--against", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="children per side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser


# -- one version, in this process --------------------------------------------


def _measure(args: argparse.Namespace) -> tuple[dict[str, float], str]:
    config = load_config()
    bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
    rules = RuleBook(config.scoring)
    fit = FitModel(config.scoring)
    codec = input_codec()
    output_codec = AvroCodec(SchemaCatalog.load(), SCORE_SCHEMA)
    json_codec = JsonCodec()
    threshold = config.scoring.mql.threshold
    version = config.scoring.rules_version

    work = _workload(args, codec, bounds, rules, fit, config.scoring)

    def match_all() -> None:
        for record in work.records:
            if isinstance(record, Firmographics):
                fit.score(record)
            else:
                rules.match(record)

    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: [codec.decode(v) for v in work.values],
        "parse": lambda: [parse_record(m, bounds) for m in work.mappings],
        "match": match_all,
        "outcome": lambda: [Outcome.decode(t) for t in work.outcome_texts],
        "outputs": lambda: [
            output_events(u, o, r, version, threshold) for u, o, r in work.scored
        ],
        "encode": lambda: [output_codec.encode(e) for e in work.events],
        "json": lambda: [json_codec.encode(e) for e in work.events],
    }
    per_record = len(work.values) / 1e6
    figures = {
        name: _fastest_s(run, args.repeats) / per_record for name, run in stages.items()
    }
    figures["count.outcomes"] = len(work.scored)
    figures["count.outputs"] = len(work.events)
    return figures, _digest(work, output_codec, json_codec, codec, bounds)


def _workload(
    args: argparse.Namespace,
    codec: AvroCodec,
    bounds: TimeBounds,
    rules: RuleBook,
    fit: FitModel,
    scoring: Any,
) -> Workload:
    traffic = Traffic(args.leads)
    backlog = traffic.backlog(args.records, args.end_ms - 60_000)
    work = Workload([item.value for item in encode(backlog, codec)])
    work.mappings = [codec.decode(value) for value in work.values]
    work.records = [parse_record(m, bounds) for m in work.mappings]

    prepared = [_prepared(record, rules, fit) for record in work.records]
    updates = [p for p in prepared if p is not None]
    store = MemoryStore(Params.of(scoring))
    outcomes = store.apply([update for update, _ in updates])
    for (update, reason), outcome in zip(updates, outcomes, strict=True):
        if outcome is not None:
            work.scored.append((update, outcome, reason))
            work.outcome_texts.append(outcome.encode())

    version = scoring.rules_version
    threshold = scoring.mql.threshold
    for update, outcome, reason in work.scored:
        work.events += output_events(update, outcome, reason, version, threshold)
    return work


def _prepared(
    record: Record, rules: RuleBook, fit: FitModel
) -> tuple[ScoredUpdate, Reason] | None:
    # What scorer.scoring.Scorer does before it calls the store.
    if isinstance(record, Firmographics):
        score = fit.score(record)
        update = FitUpdate(
            record.lead_id,
            record.op_id,
            record.updated_at_ms,
            score.points,
            record.digest,
        )
        return update, Reason(None, score.points, score.rules)
    rule = rules.match(record)
    if rule is None:
        return None
    activity = ActivityUpdate(
        record.lead_id, record.event_id, record.occurred_at_ms, rule
    )
    return activity, Reason(rule.name, rule.points)


def _fastest_s(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


# -- what both versions must agree on ------------------------------------------


def _digest(
    work: Workload,
    output_codec: AvroCodec,
    json_codec: JsonCodec,
    codec: AvroCodec,
    bounds: TimeBounds,
) -> str:
    sha = hashlib.sha256()
    for record in work.records:
        sha.update(repr(record).encode())
    for text in work.outcome_texts:
        sha.update(repr(Outcome.decode(text)).encode())
    for event in work.events:
        sha.update(output_codec.encode(event))
        sha.update(json_codec.encode(event))
    for line in _rejections(work, codec, bounds):
        sha.update(line.encode())
    return sha.hexdigest()


def _rejections(work: Workload, codec: AvroCodec, bounds: TimeBounds) -> Iterator[str]:
    """The outcome of spoilt copies of some records: bytes and fields."""
    for index in range(0, len(work.values), SPOILT_EVERY):
        value, mapping = work.values[index], work.mappings[index]
        for spoilt in _spoilt_values(value, index):
            yield _outcome_of(lambda v=spoilt: parse_record(codec.decode(v), bounds))
        for name in mapping:
            for bad in ("", " \t", None, 7, "x" * 5000, "\x00"):
                changed = {**mapping, name: bad}
                yield _outcome_of(lambda m=changed: parse_record(m, bounds))
            missing = {k: v for k, v in mapping.items() if k != name}
            yield _outcome_of(lambda m=missing: parse_record(m, bounds))


def _spoilt_values(value: bytes, index: int) -> list[bytes]:
    flip = 10 + index % max(1, len(value) - 10)
    flipped = value[:flip] + bytes([value[flip] ^ 0x41]) + value[flip + 1 :]
    return [value[:-1], value + b"\x00", flipped, value[:12]]


def _outcome_of(run: Callable[[], object]) -> str:
    try:
        return repr(run())
    except InvalidRecord as exc:
        # fastavro's EOFError quotes the stream's repr, address and all.
        message = _ADDRESS.sub("0x?", exc.message)
        return f"{exc.reason}|{message}|{exc.field}"


# -- two versions, side by side -------------------------------------------------


def _compare(args: argparse.Namespace) -> int:
    with _exported(args.against) as baseline:
        trees = {args.against: baseline, "working tree": REPO_DIR}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                runs[name].append(_child(args, tree))

    digests = {name: {r["digest"] for r in results} for name, results in runs.items()}
    _print_side_by_side(runs)
    if len({d for found in digests.values() for d in found}) != 1:
        print(f"DIFFERENT RESULTS: {digests}")
        return 1
    print("results identical (records, rejections, output bytes)")
    return 0


@contextmanager
def _exported(revision: str) -> Iterator[Path]:
    """The scorer package and schemas of `revision`, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-records-") as directory:
        archive = subprocess.run(
            ["git", "-C", str(REPO_DIR), "archive", revision, "scorer", "schemas"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        yield Path(directory)


def _child(args: argparse.Namespace, tree: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__)), "--json"]
    command += ["--records", str(args.records), "--leads", str(args.leads)]
    command += ["--repeats", str(args.repeats), "--end-ms", str(args.end_ms)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, check=True, capture_output=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _print_side_by_side(runs: dict[str, list[dict[str, Any]]]) -> None:
    (before_name, before), (after_name, after) = runs.items()
    print(_counts(before[0]["records"], before[0]["figures"]))
    print(f"us/record, least of {len(before)} children each")
    print(f"{'stage':<8} {before_name:>14} {after_name:>14} {'change':>8}")
    totals = [0.0, 0.0]
    for stage in STAGES:
        old = min(r["figures"][stage] for r in before)
        new = min(r["figures"][stage] for r in after)
        totals = [totals[0] + old, totals[1] + new]
        print(f"{stage:<8} {old:14.2f} {new:14.2f} {_change(old, new):>8}")
    print(f"{'total':<8} {totals[0]:14.2f} {totals[1]:14.2f} {_change(*totals):>8}")


def _counts(records: int, figures: dict[str, float]) -> str:
    outcomes, outputs = figures["count.outcomes"], figures["count.outputs"]
    return f"{records:,} records, {outcomes:,.0f} outcomes, {outputs:,.0f} outputs"


def _change(old: float, new: float) -> str:
    return f"{(new - old) / old:+.0%}" if old else "-"


if __name__ == "__main__":
    sys.exit(main())
