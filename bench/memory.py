"""Peak memory of `scorer run` draining large malformed records among valid ones.

    python bench/memory.py [--bad 1000] [--good 20000] [--size 900000] [--runs 1]

Starts its own Kafka broker and redis-server (loopback, stopped at the end),
holds the scorer (SIGSTOP), produces `--bad` records of `--size` bytes that
cannot be decoded (random bytes, and a valid single-object header before
garbage) shuffled among `--good` valid records, releases it and waits until
every input record is committed. It prints the scorer's peak resident memory
(VmHWM), its memory at the end (VmRSS) and the drain's time. The deployment
limits the container to 512 MiB (deploy/kubernetes/statefulset.yaml).
"""

import argparse
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from rig import SCORER, Encoded, Stage, encode, input_codec, now_ms
from traffic import EVENT_ROLES, Traffic

from scorer.sandbox.kafka import KafkaBroker
from scorer.sandbox.redis import RedisServer

SINGLE_OBJECT_MARKER = b"\xc3\x01"
LEADS = 2_000


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    records = _records(args)
    print(f"{args.bad:,} malformed records of {args.size:,} bytes among {args.good:,}")

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        broker = stack.enter_context(KafkaBroker())
        redis = stack.enter_context(RedisServer())
        for run in range(args.runs):
            peak, end, drain_s = _measure(broker, redis, records, work)
            print(
                f"run {run + 1}: peak {peak / 1024:,.0f} MiB, at the end "
                f"{end / 1024:,.0f} MiB, drained in {drain_s:.1f} s"
            )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bad", type=int, default=1_000)
    parser.add_argument("--good", type=int, default=20_000)
    parser.add_argument(
        "--size", type=int, default=900_000, help="bytes per bad record"
    )
    parser.add_argument("--runs", type=int, default=1)
    return parser


def _records(args: argparse.Namespace) -> list[Encoded]:
    rng = random.Random(6)
    traffic = Traffic(LEADS)
    good = encode(traffic.backlog(args.good, now_ms() - 60_000), input_codec())
    bad = []
    for index in range(args.bad):
        body = rng.randbytes(args.size)
        # Half look like Avro until their body: the decoder reads further.
        value = SINGLE_OBJECT_MARKER + body[2:] if index % 2 else body
        key = f"bad-{index}"
        bad.append(Encoded(EVENT_ROLES[0], key.encode(), value, key))
    records = good + bad
    rng.shuffle(records)
    return records


def _measure(
    broker: KafkaBroker, redis: RedisServer, records: list[Encoded], work: Path
) -> tuple[int, int, float]:
    """Peak and final resident kB of the scorer, and the drain's seconds."""
    stage = Stage(SCORER, broker.bootstrap_servers, redis.url, work)
    stage.create()
    try:
        stage.start(profile=False)
        stage.pause()
        stage.produce(records)
        started = time.monotonic()
        stage.resume()
        stage.wait_consumed()
        drain_s = time.monotonic() - started
        status = _status(stage)
    finally:
        stage.stop()
        stage.delete()
    return status["VmHWM"], status["VmRSS"], drain_s


def _status(stage: Stage) -> dict[str, int]:
    assert stage.process is not None
    lines = Path(f"/proc/{stage.process.pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return {name: int(fields[name].split()[0]) for name in ("VmHWM", "VmRSS")}


if __name__ == "__main__":
    raise SystemExit(main())
