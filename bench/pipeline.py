"""Measure the live scorer beside a bare batch loop and a naive per-event loop.

    python bench/pipeline.py [--events N] [--leads L] [--runs R]

Starts its own Kafka broker and Redis server (scorer.sandbox), then in each
run measures three loops on the same machine, servers and records (see
`bench/README.md` for what each figure means):

1. scorer: `scorer run` as a child process with the default rules;
2. bare: consume, decode, encode, produce, commit in batches; no Redis;
3. naive: per record one poll, one Lua call, one produce.

Each loop first drains a backlog of N records as fast as it can (throughput),
then scores live traffic produced at a fixed rate below capacity (latency).
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import Message
from figures import (
    HEADER,
    Result,
    cpu_ratios,
    median_result,
    percentile,
    ratios,
    row,
    verdict,
)
from rig import (
    BARE,
    BROKER_PROPERTIES,
    LOOPS,
    NAIVE_ACK,
    SCORER,
    Encoded,
    Stage,
    encode,
    flush_redis,
    input_codec,
    now_ms,
    process_cpu_s,
    redis_commandstats,
)
from traffic import Traffic

from scorer.sandbox.kafka import KafkaBroker
from scorer.sandbox.redis import RedisServer
from scorer.wire import SCORE_SCHEMA, AvroCodec, SchemaCatalog

log = logging.getLogger("bench.pipeline")

# Backlog times end a minute ago, so live records come after all of them.
BACKLOG_END_AGO_MS = 60_000


class Servers:
    def __init__(self, broker: KafkaBroker, redis: RedisServer) -> None:
        self.broker = broker
        self.redis = redis

    def cpu_s(self) -> tuple[float, float]:
        return process_cpu_s(self.redis.pid), process_cpu_s(self.broker.pid)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    traffic = Traffic(args.leads)
    codec = input_codec()
    backlog = encode(traffic.backlog(args.events, now_ms() - BACKLOG_END_AGO_MS), codec)
    print(f"{len(backlog):,} records over {args.leads:,} leads; {args.runs} runs")

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        broker = stack.enter_context(KafkaBroker(extra_properties=BROKER_PROPERTIES))
        redis = stack.enter_context(RedisServer())
        servers = Servers(broker, redis)
        runs = [
            _run(index, args, servers, traffic, codec, backlog, work)
            for index in range(args.runs)
        ]
    _summary(runs)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog size")
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, default=2_000, help="live records/s (latency phase)"
    )
    parser.add_argument(
        "--steady-s", type=float, default=10.0, help="length of the latency phase"
    )
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help="which loops, comma-separated"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the scorer under cProfile; write its stats to this directory",
    )
    return parser


def _run(
    index: int,
    args: argparse.Namespace,
    servers: Servers,
    traffic: Traffic,
    codec: AvroCodec,
    backlog: list[Encoded],
    work: Path,
) -> dict[str, Result]:
    kinds = [k for k in args.loops.split(",") if k]
    order = kinds[index % len(kinds) :] + kinds[: index % len(kinds)]
    print(f"\nrun {index + 1}/{args.runs} (order: {', '.join(order)})")
    print(HEADER)
    results: dict[str, Result] = {}
    for kind in order:
        steady_count = int(args.rate * args.steady_s)
        steady = traffic.steady(steady_count, now_ms(), args.rate)
        live = encode(steady, codec)
        result = _measure(kind, servers, traffic, codec, backlog, live, args, work)
        print(row(result), flush=True)
        results[kind] = result
    if set(LOOPS) <= set(results):
        print(f"by rate: {verdict(*ratios(results))}")
        print(f"by CPU:  {verdict(*cpu_ratios(results))}")
    return results


def _measure(
    kind: str,
    servers: Servers,
    traffic: Traffic,
    codec: AvroCodec,
    backlog: list[Encoded],
    live: list[Encoded],
    args: argparse.Namespace,
    work: Path,
) -> Result:
    stage = Stage(kind, servers.broker.bootstrap_servers, servers.redis.url, work)
    stage.create()
    flush_redis(servers.redis.url)
    profile = args.profile is not None and kind == SCORER
    try:
        stage.start(profile)
        warm_up = encode(traffic.warm_up(now_ms() - BACKLOG_END_AGO_MS), codec)
        stage.produce(warm_up)
        stage.wait_outputs(len(warm_up))
        stage.wait_consumed()

        drain = _drain(stage, servers, backlog)

        live_started_ms = now_ms()
        stage.produce_paced(live, args.rate)
        stage.wait_consumed()
    finally:
        stage.stop()
    if profile:
        _save_profile(stage, args.profile)

    result = _figures(stage, drain, live_started_ms, len(backlog), len(live))
    stage.delete()
    return result


class Drain:
    """Clocks and counters around the backlog drain."""

    def __init__(self, started_ms: int, cpu: tuple[float, float, float]) -> None:
        self.started_ms = started_ms
        self.cpu = cpu
        self.lua_calls = 0
        self.lua_us_per_call = 0.0


def _drain(stage: Stage, servers: Servers, backlog: list[Encoded]) -> Drain:
    """Hold the loop, load the backlog, release it; wait until it is consumed."""
    stage.pause()
    stage.produce(backlog)
    stats_before = redis_commandstats(servers.redis.url)
    cpu_before = _cpu(stage, servers)
    drain = Drain(now_ms(), cpu_before)
    stage.resume()

    stage.wait_consumed()

    loop_s, redis_s, kafka_s = _cpu(stage, servers)
    drain.cpu = (
        loop_s - cpu_before[0],
        redis_s - cpu_before[1],
        kafka_s - cpu_before[2],
    )
    stats = redis_commandstats(servers.redis.url)
    calls = _lua(stats) - _lua(stats_before)
    usec = _lua(stats, "usec") - _lua(stats_before, "usec")
    drain.lua_calls = int(calls)
    drain.lua_us_per_call = usec / calls if calls else 0.0
    return drain


def _cpu(stage: Stage, servers: Servers) -> tuple[float, float, float]:
    redis_s, kafka_s = servers.cpu_s()
    return stage.cpu_s(), redis_s, kafka_s


def _lua(stats: dict[str, dict[str, float]], field: str = "calls") -> float:
    return sum(stats.get(f"cmdstat_{c}", {}).get(field, 0) for c in ("evalsha", "eval"))


def _figures(
    stage: Stage, drain: Drain, live_started_ms: int, events: int, live: int
) -> Result:
    outputs = stage.read([stage.output])
    drained = [m for m in outputs if drain.started_ms <= _ts(m) < live_started_ms]
    ended_ms = max((_ts(m) for m in drained), default=drain.started_ms)
    waits = [float(_ts(m) - drain.started_ms) for m in drained]

    steady = _steady_latencies(stage, outputs, live_started_ms)
    cpu_loop, cpu_redis, cpu_kafka = drain.cpu
    return Result(
        kind=stage.kind,
        events=events,
        drain_s=(ended_ms - drain.started_ms) / 1000,
        outputs=len(drained),
        drain_p50_ms=percentile(waits, 0.50),
        drain_p99_ms=percentile(waits, 0.99),
        steady_events=live,
        steady_p50_ms=percentile(steady, 0.50),
        steady_p99_ms=percentile(steady, 0.99),
        cpu_loop_s=cpu_loop,
        cpu_redis_s=cpu_redis,
        cpu_kafka_s=cpu_kafka,
        lua_calls=drain.lua_calls,
        lua_us_per_call=drain.lua_us_per_call,
    )


def _steady_latencies(
    stage: Stage, outputs: list[Message], live_started_ms: int
) -> list[float]:
    """Per live input with an output: its first output's time minus its own."""
    catalog = SchemaCatalog.load()
    inputs = AvroCodec(catalog)
    arrived: dict[str, int] = {}
    for message in stage.read(list(stage.inputs.values())):
        if _ts(message) >= live_started_ms:
            arrived[inputs.decode(_value(message))["event_id"]] = _ts(message)

    # The scorer and the naive loop publish score events naming their source;
    # the bare loop re-publishes the input itself.
    scores = AvroCodec(catalog, SCORE_SCHEMA)
    first: dict[str, int] = {}
    for message in outputs:
        if _ts(message) < live_started_ms:
            continue
        if stage.kind == BARE:
            source = inputs.decode(_value(message)).get("event_id")
        else:
            source = scores.decode(_value(message))["source_event_id"]
        if source in arrived:
            first[source] = min(first.get(source, _ts(message)), _ts(message))
    return [float(at - arrived[source]) for source, at in first.items()]


def _ts(message: Message) -> int:
    return int(message.timestamp()[1])


def _value(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes)
    return value


def _save_profile(stage: Stage, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"scorer-{int(time.time())}.prof"
    target.write_bytes(stage.profile_path.read_bytes())
    print(f"profile written to {target}")


def _summary(runs: list[dict[str, Result]]) -> None:
    kinds = [k for k in (*LOOPS, NAIVE_ACK) if all(k in run for run in runs)]
    print(f"\nmedian of {len(runs)} runs")
    print(HEADER)
    for kind in kinds:
        print(row(median_result([run[kind] for run in runs])))
    if set(LOOPS) <= set(kinds):
        each = [ratios(run) for run in runs]
        bare = statistics.median(r[0] for r in each)
        naive = statistics.median(r[1] for r in each)
        listed = "; ".join(f"{b:.2f} / {n:.1f}" for b, n in each)
        print(f"ratios per run (scorer/bare / scorer/naive): {listed}")
        print(f"median of the per-run ratios, by rate: {verdict(bare, naive)}")
        by_cpu = [cpu_ratios(run) for run in runs]
        bare = statistics.median(r[0] for r in by_cpu)
        naive = statistics.median(r[1] for r in by_cpu)
        print(f"median of the per-run ratios, by CPU:  {verdict(bare, naive)}")


if __name__ == "__main__":
    sys.exit(main())
