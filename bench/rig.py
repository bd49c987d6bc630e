"""The benchmark rig: topics, a loop under test as a child process, and clocks.

Every measurement gets topics of its own, a config file pointing at them and a
fresh Redis database, so no loop sees another's records or state. The loop
runs as a child process: it shares no GIL with the producer and reader here,
which is how `scorer run` runs in production too.

The broker stamps every record with its LogAppendTime (see `BROKER_PROPERTIES`),
so an input record and the output it caused carry times from one clock: the
moment each became readable in Kafka.
"""

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from traffic import EVENT_ROLES, ROLE_FIRMOGRAPHICS, Record

from scorer.config import default_config_path
from scorer.sandbox import spawn
from scorer.sandbox.kafka import admin_client, delete_topics
from scorer.wire import AvroCodec, SchemaCatalog

log = logging.getLogger("bench.rig")

BENCH_DIR = Path(__file__).resolve().parent
BROKER_PROPERTIES = {"log.message.timestamp.type": "LogAppendTime"}
PARTITIONS = 3
WAIT_S = 600.0  # a whole drain of the slowest loop on a loaded machine
POLL_S = 0.2  # how often completion is checked; the figures use broker times
READ_BATCH = 10_000
TOPIC_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3_000

# Idle connections are closed by the broker; that is not worth a log line.
QUIET = {"log.connection.close": False}

SCORER = "scorer"
BARE = "bare"
NAIVE = "naive"
NAIVE_ACK = "naive-ack"
LOOPS = (SCORER, BARE, NAIVE)  # the default; NAIVE_ACK on request


@dataclass(frozen=True, slots=True)
class Encoded:
    """A record as the producer sends it."""

    role: str
    key: bytes
    value: bytes
    event_id: str


def encode(records: Iterable[Record], codec: AvroCodec) -> list[Encoded]:
    return [
        Encoded(r.role, r.lead_id.encode(), codec.encode(r.fields), r.event_id)
        for r in records
    ]


class Stage:
    """Topics, config and a child process for one loop under test."""

    def __init__(self, kind: str, bootstrap: str, redis_url: str, work: Path) -> None:
        tag = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        self.kind = kind
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        roles = (*EVENT_ROLES, ROLE_FIRMOGRAPHICS)
        self.inputs = {role: f"{tag}.{role}" for role in roles}
        self.output = f"{tag}.scores"
        self.dead_letter = f"{tag}.dead_letter"
        self.group = f"{tag}-group"
        self.config_path = work / f"{tag}.yaml"
        self.log_path = work / f"{tag}.log"
        self.profile_path = work / f"{tag}.prof"
        self.process: subprocess.Popen[bytes] | None = None
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, **QUIET}
        )

    # -- set-up ------------------------------------------------------------

    def create(self) -> None:
        topics = [
            NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
            for name in self._all_topics()
        ]
        admin = admin_client(self.bootstrap)
        for name, future in admin.create_topics(topics).items():
            try:
                future.result()
            except KafkaException as exc:
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc
        self._wait_for_leaders()
        self.config_path.write_text(yaml.safe_dump(self._config()))

    def delete(self) -> None:
        delete_topics(self.bootstrap, self._all_topics())

    def _all_topics(self) -> list[str]:
        return [*self.inputs.values(), self.output, self.dead_letter]

    def _wait_for_leaders(self) -> None:
        # CreateTopics answers before the broker knows every partition's leader.
        deadline = time.monotonic() + TOPIC_TIMEOUT_S
        admin = admin_client(self.bootstrap)
        while time.monotonic() < deadline:
            known = admin.list_topics(timeout=5).topics
            ready = [known.get(name) for name in self._all_topics()]
            if all(
                t and all(p.leader >= 0 for p in t.partitions.values()) for t in ready
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("benchmark topics got no leaders in time")

    def _config(self) -> dict[str, Any]:
        raw: dict[str, Any] = yaml.safe_load(default_config_path().read_text())
        raw["kafka"] = {"bootstrap_servers": self.bootstrap, "group_id": self.group}
        raw["redis"] = {**raw.get("redis", {}), "url": self.redis_url}
        raw["metrics"] = {"port": None}
        raw["topics"] = {
            "events": [{"name": self.inputs[r], "format": "avro"} for r in EVENT_ROLES],
            "firmographics": {
                "name": self.inputs[ROLE_FIRMOGRAPHICS],
                "format": "avro",
            },
            "output": {"name": self.output, "format": "avro"},
            "dead_letter": self.dead_letter,
        }
        return raw

    # -- the child ---------------------------------------------------------

    def start(self, profile: bool) -> None:
        # spawn: the child dies with this process, so an interrupted
        # benchmark leaves no loop behind.
        self.process = spawn(self._command(profile), Path.cwd(), self.log_path)

    def _command(self, profile: bool) -> list[str]:
        python = [sys.executable]
        if profile:
            python += ["-m", "cProfile", "-o", str(self.profile_path)]
        config = str(self.config_path)
        if self.kind == SCORER:
            return [*python, "-m", "scorer.cli", "--log-level", "WARNING", "run",
                    "--config", config]  # fmt: skip
        return [*python, str(BENCH_DIR / "loops.py"), self.kind, config]

    def pause(self) -> None:
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def cpu_s(self) -> float:
        return process_cpu_s(self._pid())

    def _pid(self) -> int:
        assert self.process is not None, "the loop is not running"
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            text = self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise RuntimeError(f"{self.kind} loop exited early:\n{text}")

    # -- traffic -----------------------------------------------------------

    def produce(self, records: Sequence[Encoded]) -> None:
        for index, record in enumerate(records):
            self._produce_one(record)
            if index % 1000 == 0:
                self.producer.poll(0)
        remaining = self.producer.flush(WAIT_S)
        if remaining:
            raise RuntimeError(f"{remaining} input records not delivered")

    def _produce_one(self, record: Encoded) -> None:
        topic = self.inputs[record.role]
        # Imported here: records.py --against loads this module with older
        # versions of the package, which lack delivery.send.
        from scorer.delivery import send

        send(self.producer, topic, record.value, record.key)

    def produce_paced(self, records: Sequence[Encoded], rate: float) -> None:
        """Produce at `rate` records per second, in steps of a millisecond."""
        started = time.monotonic()
        sent = 0
        while sent < len(records):
            due = min(len(records), int((time.monotonic() - started) * rate) + 1)
            for record in records[sent:due]:
                self._produce_one(record)
            sent = max(sent, due)
            self.producer.poll(0)
            time.sleep(0.001)
        self.producer.flush(WAIT_S)

    # -- completion and reading back -----------------------------------------

    def wait_outputs(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self._high_watermarks(self.output) < count:
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: fewer than {count} outputs")
            time.sleep(POLL_S)

    def wait_consumed(self) -> None:
        """Until the loop has committed every input record produced so far."""
        inputs = list(self.inputs.values())
        counts = [self._high_watermarks(topic) for topic in inputs]
        if min(counts) < 0:
            raise RuntimeError(f"{self.kind}: input topics lost their leaders")
        end = sum(counts)
        deadline = time.monotonic() + WAIT_S
        with closing(Consumer(_reader_settings(self.bootstrap, self.group))) as reader:
            while _committed(reader, inputs) < end:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind}: inputs not consumed in time")
                time.sleep(POLL_S)

    def read(self, topics: Sequence[str]) -> list[Message]:
        """Every record of `topics`, from the beginning."""
        consumer = Consumer(_reader_settings(self.bootstrap, f"read-{uuid.uuid4()}"))
        ends = {}
        for topic in topics:
            for partition in range(PARTITIONS):
                tp = TopicPartition(topic, partition)
                ends[(topic, partition)] = consumer.get_watermark_offsets(tp, 10)[1]
        consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for (t, p), end in ends.items()]
        )
        messages: list[Message] = []
        while len(messages) < sum(ends.values()):
            batch = consumer.consume(READ_BATCH, 1.0)
            messages.extend(m for m in batch if m.error() is None)
        consumer.close()
        return messages

    def _high_watermarks(self, topic: str) -> int:
        """The topic's record count; -1 while a partition has no leader yet."""
        consumer = Consumer(_reader_settings(self.bootstrap, f"peek-{uuid.uuid4()}"))
        try:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(PARTITIONS)
            )
        except KafkaException:
            # A new topic's leaders reach the broker's metadata a moment late.
            return -1
        finally:
            consumer.close()


def _committed(consumer: Consumer, topics: Sequence[str]) -> int:
    partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    try:
        committed = consumer.committed(partitions, timeout=10)
    except KafkaException:
        return -1
    return sum(max(0, tp.offset) for tp in committed)


def _reader_settings(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **QUIET,
    }


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.config_resetstat()
    client.close()


def redis_commandstats(url: str) -> dict[str, dict[str, float]]:
    client = redis.Redis.from_url(url)
    stats: dict[str, dict[str, float]] = client.info("commandstats")
    client.close()
    return stats


def process_cpu_s(pid: int | None) -> float:
    """User plus system CPU seconds of a process and its threads so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def input_codec() -> AvroCodec:
    return AvroCodec(SchemaCatalog.load())


def now_ms() -> int:
    return int(time.time() * 1000)
