"""Measure the Redis Lua script alone: its cost per update, one or two versions.

    python bench/state.py [--records N] [--leads L] [--runs R] [--against FILE]

Starts its own `redis-server` (scorer.sandbox, loopback, stopped at the end),
makes N records with `traffic.py` (the mix `pipeline.py` uses), turns them
into updates with the default rules and applies them through `RedisStore` in
batches of 1,000 records, 64 updates per script call, as `scorer run` does.

`--against FILE` runs a second script beside the current one: FILE is a Lua
file, or any version of `scorer/state.py` (its `APPLY_UPDATES` is read, not
imported). For example, to compare with the main branch:

    git show main:scorer/state.py > /tmp/state_main.py
    python bench/state.py --against /tmp/state_main.py

Each run empties Redis before each script, in an order rotated from run to
run. Every script's outcomes must equal the in-process store's (`MemoryStore`)
to the bit, and so must each lead's final snapshot; the remembered update ids
must be the same for every script. The benchmark stops with an error if one
of these differs.
"""

import argparse
import ast
import re
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import redis
from rig import process_cpu_s
from traffic import Traffic

from scorer import lead as lead_module
from scorer.config import load_config
from scorer.events import TimeBounds, parse_record
from scorer.lead import MemoryStore, Outcome, Params, Snapshot, Update
from scorer.sandbox.redis import RedisServer
from scorer.scoring import Scorer
from scorer.state import APPLY_UPDATES, RedisStore

# A mark in the script that scorer.state fills with a constant of scorer.lead.
_MARK = re.compile(r"@([A-Z_]+)@")

BATCH_RECORDS = 1_000  # `pipeline.batch_size` of scorer/default.yaml
OPS_PER_CALL = 64  # RedisStore's default, as `scorer run` uses it
BACKLOG_END_AGO_MS = 60_000  # event times end a minute ago, as in pipeline.py
CURRENT = "current"


@dataclass(frozen=True, slots=True)
class Workload:
    """The update batches of the records and what the Python twin makes of them."""

    batches: list[list[Update]]
    outcomes: list[str | None]
    memory: MemoryStore

    @property
    def updates(self) -> int:
        return sum(len(batch) for batch in self.batches)


@dataclass(frozen=True, slots=True)
class Figures:
    lua_us_per_update: float
    lua_us_per_call: float
    redis_cpu_us_per_update: float
    wall_s: float


class Recorder:
    """A store that keeps each batch of updates and applies it in memory."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.memory = MemoryStore(params)
        self.batches: list[list[Update]] = []
        self.outcomes: list[Outcome | None] = []

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        self.batches.append(list(updates))
        outcomes = self.memory.apply(updates)
        self.outcomes += outcomes
        return outcomes

    def snapshot(self, lead_id: str, as_of_ms: int | None = None) -> Snapshot | None:
        return self.memory.snapshot(lead_id, as_of_ms)

    def lead_ids(self) -> Iterator[str]:
        return self.memory.lead_ids()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Each variant: the script, and how long its leads live (None: for ever).
    scripts: dict[str, tuple[str, int | None]] = {CURRENT: (APPLY_UPDATES, None)}
    if args.against is not None:
        scripts[args.against.name] = (read_script(args.against), None)
    if args.expire_after is not None:
        scripts[f"{CURRENT}, expiring"] = (APPLY_UPDATES, args.expire_after)

    workload = make_workload(args.records, args.leads)
    print(
        f"{args.records:,} records over {args.leads:,} leads: "
        f"{workload.updates:,} updates in {len(workload.batches)} batches"
    )

    results: dict[str, list[Figures]] = {name: [] for name in scripts}
    remembered: dict[str, frozenset[bytes]] | None = None
    with RedisServer() as server:
        client = server.client()
        for index in range(args.runs):
            names = list(scripts)
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                script, expire_ms = scripts[name]
                figures, ids = measure(server, client, script, expire_ms, workload)
                if remembered is not None and ids != remembered:
                    raise SystemExit(f"{name}: the remembered update ids differ")
                remembered = ids
                results[name].append(figures)
                print(f"run {index + 1} {name:>20}: {_row(figures)}", flush=True)
        client.close()

    print("\nmedian over the runs")
    for name, runs in results.items():
        print(f"{name:>26}: {_row(_median(runs))}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--against",
        type=Path,
        help="a Lua file or a scorer/state.py whose APPLY_UPDATES to run too",
    )
    parser.add_argument(
        "--expire-after",
        type=int,
        metavar="MS",
        help="run today's script a second time with redis.expire_after MS",
    )
    return parser


def read_script(path: Path) -> str:
    """The Lua text of a .lua file, or the APPLY_UPDATES literal of a module.

    The literal may be followed by `.replace(...)` calls that fill in
    `@NAME@` marks from scorer.lead; the marks are filled from today's
    scorer.lead, which the compared versions share.
    """
    text = path.read_text()
    if path.suffix != ".py":
        return text
    for node in ast.parse(text).body:
        if not isinstance(node, ast.Assign):
            continue
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        literal = _string_literal(node.value)
        if names == ["APPLY_UPDATES"] and literal is not None:
            return _MARK.sub(lambda m: repr(getattr(lead_module, m.group(1))), literal)
    raise SystemExit(f"{path}: no APPLY_UPDATES string constant")


def _string_literal(node: ast.expr) -> str | None:
    """The string of `"..."` or of `"...".replace(...)...`, else None."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def make_workload(records: int, leads: int) -> Workload:
    """Score the traffic in memory, keeping the updates the scorer made."""
    scoring = load_config().scoring
    recorder = Recorder(Params.of(scoring))
    scorer = Scorer(scoring, recorder)
    end_ms = int(time.time() * 1000) - BACKLOG_END_AGO_MS
    bounds = TimeBounds()
    items = [
        parse_record(r.fields, bounds) for r in Traffic(leads).backlog(records, end_ms)
    ]
    for start in range(0, len(items), BATCH_RECORDS):
        scorer.score(items[start : start + BATCH_RECORDS])

    outcomes = [_exact(o) for o in recorder.outcomes]
    return Workload(recorder.batches, outcomes, recorder.memory)


def _exact(outcome: Outcome | None) -> str | None:
    """The outcome with every number as its exact bits (0 and 0.0 alike)."""
    if outcome is None:
        return None
    parts = [
        float(value).hex() if isinstance(value, int | float) else str(value)
        for value in astuple(outcome)
    ]
    return "|".join(parts)


def measure(
    server: RedisServer,
    client: redis.Redis,
    script: str,
    expire_ms: int | None,
    workload: Workload,
) -> tuple[Figures, dict[str, frozenset[bytes]]]:
    """Apply the workload on an empty database; check it, then time it."""
    client.flushall()
    client.config_resetstat()
    params = workload.memory.params
    store = RedisStore(
        client, params, ops_per_call=OPS_PER_CALL, script=script, expire_ms=expire_ms
    )
    store.load_script()

    started, cpu_s = time.perf_counter(), process_cpu_s(server.pid)
    outcomes: list[Outcome | None] = []
    for batch in workload.batches:
        outcomes += store.apply(batch)
    wall_s = time.perf_counter() - started
    cpu_s = process_cpu_s(server.pid) - cpu_s

    stats = client.info("commandstats")["cmdstat_evalsha"]
    remembered = _check(client, store, workload, outcomes)
    figures = Figures(
        lua_us_per_update=stats["usec"] / workload.updates,
        lua_us_per_call=stats["usec_per_call"],
        redis_cpu_us_per_update=cpu_s * 1e6 / workload.updates,
        wall_s=wall_s,
    )
    return figures, remembered


def _check(
    client: redis.Redis,
    store: RedisStore,
    workload: Workload,
    outcomes: list[Outcome | None],
) -> dict[str, frozenset[bytes]]:
    """Outcomes and snapshots equal the Python twin's; returns remembered ids.

    The in-process store keeps every update id, Redis only those within the
    dedupe horizon, so the ids are compared between scripts instead.
    """
    encoded = [_exact(o) for o in outcomes]
    for position, (got, want) in enumerate(
        zip(encoded, workload.outcomes, strict=True)
    ):
        if got != want:
            raise SystemExit(f"outcome {position} differs: {got} != {want}")

    memory = workload.memory
    leads = sorted(memory.lead_ids())
    if sorted(store.lead_ids()) != leads:
        raise SystemExit("the leads in Redis differ from the in-process store's")
    for lead in leads:
        if store.snapshot(lead) != memory.snapshot(lead):
            raise SystemExit(f"lead {lead}: its snapshot differs")

    pipe = client.pipeline(transaction=False)
    for lead in leads:
        pipe.zrange(store.keys(lead)[1], 0, -1)
    return {
        lead: frozenset(members)
        for lead, members in zip(leads, pipe.execute(), strict=True)
    }


def _median(runs: list[Figures]) -> Figures:
    return Figures(
        statistics.median(f.lua_us_per_update for f in runs),
        statistics.median(f.lua_us_per_call for f in runs),
        statistics.median(f.redis_cpu_us_per_update for f in runs),
        statistics.median(f.wall_s for f in runs),
    )


def _row(figures: Figures) -> str:
    return (
        f"lua {figures.lua_us_per_update:6.1f} us/update "
        f"({figures.lua_us_per_call:7.1f} us/call), "
        f"redis CPU {figures.redis_cpu_us_per_update:6.1f} us/update, "
        f"wall {figures.wall_s:6.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
