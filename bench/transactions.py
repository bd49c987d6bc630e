"""What `pipeline.transactional: true` costs: the two delivery modes side by side.

    python bench/transactions.py [--events N] [--leads L] [--rounds R]
                                 [--batch-size B] [--partitions P]

Starts its own Kafka broker and Redis server (scorer.sandbox). Each round
drains the same backlog of N page views once per mode, the modes taking turns
so that drift of the machine hits both alike:

- at-least-once (the default): outputs acknowledged, then offsets committed;
- transactional: outputs and offsets in one Kafka transaction per batch.

The scorer runs as `scorer run`, a child process, on topics, a consumer group
and a Redis key prefix of its own. A drain is timed from the first output to
the moment the group's committed offsets reach the end of the input, so the
start-up (and transactional start-up) is left out. The figures are the median
rate per mode, their ratio, and the ratio within each round.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from scorer.config import default_config_path
from scorer.delivery import send
from scorer.events import format_time
from scorer.sandbox import spawn
from scorer.sandbox.kafka import KafkaBroker, create_topics
from scorer.sandbox.redis import RedisServer

MODES = ("at-least-once", "transactional")
T0_MS = 1_750_000_000_000
PAGES = ("/pricing", "/demo", "/blog/a", "/blog/b", "/careers", "/about")
WAIT_S = 600.0  # one drain on a slow machine
POLL_S = 0.05  # how often progress is checked; well below a drain's length


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    values = _backlog(args.events, args.leads)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with (
        KafkaBroker() as broker,
        RedisServer() as redis_server,
        tempfile.TemporaryDirectory() as work,
    ):
        for round_number in range(1, args.rounds + 1):
            for mode in MODES:
                run = Run(broker.bootstrap_servers, redis_server.url, Path(work), args)
                rate = run.drain(mode, values)
                rates[mode].append(rate)
                print(f"round {round_number} {mode:>14}: {rate:8.0f} events/s")
    _summary(rates, args)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--leads", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=6)
    return parser


def _backlog(events: int, leads: int) -> list[tuple[bytes, bytes]]:
    """(key, JSON value) of `events` page views over `leads` leads."""
    rng = random.Random(1)
    clocks = [T0_MS] * leads
    values = []
    for number in range(events):
        lead = rng.randrange(leads)
        clocks[lead] += rng.randrange(1, 120) * 60_000
        event = {
            "event_id": f"bench-{number}",
            "lead_id": f"lead-{lead}",
            "type": "page_view",
            "occurred_at": format_time(clocks[lead]),
            "url": rng.choice(PAGES),
        }
        values.append((event["lead_id"].encode(), json.dumps(event).encode()))
    return values


class Run:
    """One drain of the backlog by one `scorer run` in one mode."""

    def __init__(
        self, bootstrap: str, redis_url: str, work: Path, args: argparse.Namespace
    ) -> None:
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.work = work
        self.args = args
        suffix = uuid.uuid4().hex[:8]
        self.events, self.out = f"events-{suffix}", f"out-{suffix}"
        self.group = f"bench-{suffix}"
        self.suffix = suffix

    def drain(self, mode: str, values: list[tuple[bytes, bytes]]) -> float:
        partitions = self.args.partitions
        create_topics(
            self.bootstrap,
            {self.events: partitions, self.out: partitions, f"dlq-{self.suffix}": 1},
        )
        self._produce(values)
        process = self._start(mode)
        try:
            started = self._first_output()
            self._wait_committed()
            finished = time.monotonic()
        finally:
            process.terminate()
            process.wait(60)
        return len(values) / (finished - started)

    def _produce(self, values: list[tuple[bytes, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        for number, (key, value) in enumerate(values):
            send(producer, self.events, value, key)
            if number % 1000 == 0:
                producer.poll(0)
        assert producer.flush(WAIT_S) == 0

    def _start(self, mode: str) -> "subprocess.Popen[bytes]":
        config = self.work / f"{self.suffix}.yaml"
        config.write_text(yaml.safe_dump(self._config(mode)))
        script = Path(sys.executable).with_name("scorer")
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "scorer.cli"]
        )
        log = self.work / f"{self.suffix}.log"
        return spawn([*command, "run", "--config", str(config)], self.work, log)

    def _config(self, mode: str) -> dict[str, Any]:
        raw: dict[str, Any] = yaml.safe_load(default_config_path().read_text())
        raw["kafka"] = {"bootstrap_servers": self.bootstrap, "group_id": self.group}
        raw["redis"] = {"url": self.redis_url, "key_prefix": f"b{self.suffix}"}
        raw["topics"] = {
            "events": [{"name": self.events, "format": "json"}],
            "output": {"name": self.out, "format": "json"},
            "dead_letter": f"dlq-{self.suffix}",
        }
        raw["metrics"] = {"port": None}
        raw["pipeline"] = {
            "batch_size": self.args.batch_size,
            "transactional": mode == "transactional",
            "transactional_id_prefix": f"bench-{self.suffix}",
        }
        return raw

    def _first_output(self) -> float:
        reader = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{self.suffix}",
                "auto.offset.reset": "earliest",
            }
        )
        reader.subscribe([self.out])
        deadline = time.monotonic() + WAIT_S
        try:
            while time.monotonic() < deadline:
                message = reader.poll(POLL_S)
                if message is not None and message.error() is None:
                    return time.monotonic()
        finally:
            reader.close()
        raise TimeoutError("no output from the scorer")

    def _wait_committed(self) -> None:
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        partitions = [
            TopicPartition(self.events, p) for p in range(self.args.partitions)
        ]
        ends = [probe.get_watermark_offsets(tp, 10)[1] for tp in partitions]
        deadline = time.monotonic() + WAIT_S
        try:
            while time.monotonic() < deadline:
                committed = [tp.offset for tp in probe.committed(partitions, 10)]
                if committed == ends:
                    return
                time.sleep(POLL_S)
        finally:
            probe.close()
        raise TimeoutError("the scorer did not commit the backlog")


def _summary(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    plain, transactional = (statistics.median(rates[mode]) for mode in MODES)
    print(
        f"\n{args.events} events, {args.leads} leads, batch_size {args.batch_size}, "
        f"{args.partitions} partitions, {args.rounds} rounds (medians):"
    )
    print(f"  at-least-once  {plain:8.0f} events/s")
    print(f"  transactional  {transactional:8.0f} events/s")
    print(f"  transactional / at-least-once = {transactional / plain:.2f}")
    # Per round too: the two drains of a round ran back to back.
    paired = [t / p for p, t in zip(*(rates[mode] for mode in MODES), strict=True)]
    shown = " ".join(f"{ratio:.2f}" for ratio in paired)
    print(f"  per round: {shown}; median {statistics.median(paired):.2f}")


if __name__ == "__main__":
    sys.exit(main())
