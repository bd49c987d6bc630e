"""What the delivery-guarantee tests share.

- `Workload`: many events with unique ids over thousands of leads, in the
  order they are produced, and what an offline replay of them gives;
- `ScorerProcess`: `scorer run` as a real child process, killed, stopped or
  restarted by the test;
- `Feeder`: produces a workload at a steady rate while faults happen;
- `check_results`: the final Redis state and the output topic against the
  replay (nothing lost, nothing applied twice, copies byte-identical).

Each lead's events go to one partition (key = lead id) of one event topic,
so the order a lead's events arrive in is the order of the replay's file.
"""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from prometheus_client.parser import text_string_to_metric_families

from scorer.config import Config, default_config_path, parse_config
from scorer.delivery import send
from scorer.events import format_time, parse_record
from scorer.lead import Params
from scorer.replay import Line, Replay
from scorer.sandbox import free_ports, spawn
from scorer.state import RedisStore
from scorer.wire import JsonCodec

T0_MS = 1_750_000_000_000
MINUTE_MS = 60_000
WAIT_S = 120.0  # the longest any single step may take on a loaded CI box
STOP_TIMEOUT_S = 60.0
QUIET_S = 2.0  # an output topic read ends when nothing arrives for this long
# A kill lands this long after the process showed progress (or was started).
KILL_AFTER_S = (0.0, 1.5)
# This share of kills ignores progress: during start-up and group join.
BLIND_KILL_SHARE = 0.2
# Progress may never come once every event is scored; kill anyway then.
PROGRESS_WAIT_S = 15.0

# What the workload's events look like, with their weights: every rule of the
# default config, plus pages no rule matches.
PAGES = (
    ("/pricing", 12),
    ("/demo", 4),
    ("/blog/kafka-at-scale", 25),
    ("/blog/redis-lua", 15),
    ("/careers", 3),
    ("/about", 6),
)
DOWNLOADS = (("case_study", 8), ("whitepaper", 5), ("ebook", 3))
WEBINARS = (("registered", 6), ("attended", 8))


# -- the workload ----------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Events in production order, encoded as the JSON lines produced."""

    records: list[dict[str, Any]]
    values: list[bytes]

    @property
    def lead_ids(self) -> set[str]:
        return {r["lead_id"] for r in self.records}


def make_workload(events: int, leads: int, seed: int) -> Workload:
    """`events` events with unique ids spread over `leads` leads.

    Each lead's clock moves forward by minutes to hours per event; one event
    in twenty arrives up to half a day late, within the default allowed
    lateness. The span stays well inside the 30-day dedupe horizon.
    """
    rng = random.Random(seed)
    clocks = [T0_MS + rng.randrange(0, 6 * 60) * MINUTE_MS for _ in range(leads)]
    records = []
    for number in range(events):
        lead = rng.randrange(leads)
        clocks[lead] += rng.randrange(1, 8 * 60) * MINUTE_MS // 4
        at_ms = clocks[lead]
        if rng.random() < 0.05:
            at_ms -= rng.randrange(1, 12 * 60) * MINUTE_MS
        records.append(
            _event(rng, f"ev-{seed}-{number:07d}", f"lead-{lead:05d}", at_ms)
        )
    codec = JsonCodec()
    return Workload(records, [codec.encode(r) for r in records])


def _event(rng: random.Random, event_id: str, lead: str, at_ms: int) -> dict[str, Any]:
    base = {"event_id": event_id, "lead_id": lead, "occurred_at": format_time(at_ms)}
    kind = rng.random()
    if kind < 0.75:
        return {**base, "type": "page_view", "url": _pick(rng, PAGES)}
    if kind < 0.88:
        asset = _pick(rng, DOWNLOADS)
        return {
            **base,
            "type": "content_download",
            "asset_id": "a1",
            "asset_type": asset,
        }
    status = _pick(rng, WEBINARS)
    minutes = float(rng.randrange(0, 60)) if status == "attended" else 0.0
    return {
        **base,
        "type": "webinar",
        "webinar_id": "w1",
        "status": status,
        "minutes_watched": minutes,
    }


def _pick(rng: random.Random, weighted: Sequence[tuple[str, int]]) -> str:
    names = [name for name, _ in weighted]
    return rng.choices(names, weights=[w for _, w in weighted])[0]


@dataclass
class Expected:
    """What an offline replay of the workload gives."""

    outputs: dict[str, bytes]  # output event_id -> its JSON bytes
    per_lead: dict[str, list[str]]  # lead -> output event ids, in order
    applied: dict[str, set[str]]  # lead -> ids of the events a rule matched
    replay: Replay


def replay_workload(config: Config, workload: Workload) -> Expected:
    replay = Replay(config, errors=io.StringIO())
    lines = [Line("workload", n, v) for n, v in enumerate(workload.values, 1)]
    out = io.BytesIO()
    stats = replay.run(lines, out)
    assert not stats.bad, stats.summary()

    outputs: dict[str, bytes] = {}
    per_lead: dict[str, list[str]] = defaultdict(list)
    for line in out.getvalue().splitlines():
        event = json.loads(line)
        assert event["event_id"] not in outputs, "replay ids must be unique"
        outputs[event["event_id"]] = line
        per_lead[event["lead_id"]].append(event["event_id"])
    return Expected(outputs, dict(per_lead), _applied(config, workload), replay)


def _applied(config: Config, workload: Workload) -> dict[str, set[str]]:
    from scorer.events import Activity, TimeBounds
    from scorer.rules import RuleBook

    rules = RuleBook(config.scoring)
    bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
    applied: dict[str, set[str]] = defaultdict(set)
    for record in workload.records:
        event = parse_record(record, bounds)
        assert isinstance(event, Activity)
        if rules.match(event) is not None:
            applied[event.lead_id].add(event.event_id)
    return dict(applied)


# -- configuration ---------------------------------------------------------


def raw_config(
    bootstrap: str,
    redis_url: str,
    events_topic: str,
    output_topic: str,
    dead_letter_topic: str,
    *,
    consumer_settings: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    redis_timeout_s: float = 2.0,
) -> dict[str, Any]:
    """The default config as a YAML mapping, pointed at the test servers."""
    raw = yaml.safe_load(default_config_path().read_text())
    raw["kafka"] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"guarantees-{uuid.uuid4().hex[:8]}",
        "consumer_settings": dict(consumer_settings or {}),
    }
    raw["redis"] = {
        "url": redis_url,
        "key_prefix": f"g{uuid.uuid4().hex[:6]}",
        "timeout_s": redis_timeout_s,
    }
    raw["topics"] = {
        "events": [{"name": events_topic, "format": "json"}],
        "output": {"name": output_topic, "format": "json"},
        "dead_letter": dead_letter_topic,
    }
    raw["metrics"] = {"port": None}
    raw["pipeline"] = {"batch_size": 500, "batch_timeout_ms": 20, **(pipeline or {})}
    return raw


def write_config(raw: Mapping[str, Any], path: Path) -> Config:
    path.write_text(yaml.safe_dump(dict(raw)))
    return parse_config(raw)


# -- the scorer as a process -----------------------------------------------


class ScorerProcess:
    """`scorer run --config CFG` as a child process, logging to a file.

    Its config file is `raw` with its own metrics port, written beside the
    log as `<name>.yaml`.
    """

    def __init__(self, raw: Mapping[str, Any], work_dir: Path, name: str) -> None:
        self.metrics_port = free_ports(1)[0]
        self.config_path = work_dir / f"{name}.yaml"
        self.log_path = work_dir / f"{name}.log"
        raw = {**raw, "metrics": {"port": self.metrics_port, "host": "127.0.0.1"}}
        self.config_path.write_text(yaml.safe_dump(raw))
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        assert self.process is None, "already running"
        command = [*_scorer_command(), "run", "--config", str(self.config_path)]
        self.process = spawn(command, self.log_path.parent, self.log_path)
        self.started_at = time.monotonic()

    def wait_assigned(self, timeout_s: float = WAIT_S) -> None:
        """Until the process owns partitions (and so handles SIGTERM)."""
        deadline = time.monotonic() + timeout_s
        while self.metric_or_zero("scorer_assigned_partitions") == 0:
            assert self.is_running, self.log_text()[-2000:]
            assert time.monotonic() < deadline, "no partitions assigned in time"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process ends at once, wherever it was."""
        process = self._running()
        process.kill()
        process.wait()
        self.process = None

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code."""
        process = self._running()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.wait()
            raise AssertionError(
                f"scorer ignored SIGTERM for {timeout_s:.0f}s"
            ) from exc
        finally:
            self.process = None
        return code

    def freeze(self, seconds: float) -> None:
        """SIGSTOP, then SIGCONT after `seconds`: every thread stands still."""
        process = self._running()
        process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            process.send_signal(signal.SIGCONT)

    def ensure_stopped(self) -> None:
        if self.process is not None:
            self.kill()

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The process's current metrics, by (sample name, sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = sample.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """One sample; the sum over the other labels if not all are given."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, pairs), value in self.metrics().items()
            if sample == name and wanted <= set(pairs)
        )

    def metric_or_zero(self, name: str, **labels: str) -> float:
        """`metric`, or 0 while the process serves no metrics yet."""
        try:
            return self.metric(name, **labels)
        except OSError:
            return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "not running"
        return self.process


def _scorer_command() -> list[str]:
    # The console script of this environment; `python -m` runs the same
    # `scorer.cli:main` where the script is not installed beside Python.
    script = Path(sys.executable).with_name("scorer")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "scorer.cli"]


@dataclass
class Kills:
    """What a run of kills did."""

    lives_s: list[float] = field(default_factory=list)
    # From a restart to the first output after it, where one came.
    restart_to_output_s: list[float] = field(default_factory=list)
    # Records a life found already applied in Redis: redelivered after a
    # kill between their Redis write and their commit (from its metrics,
    # read just before it was killed).
    redelivered: int = 0

    def figures(self) -> dict[str, Any]:
        restarts = sorted(self.restart_to_output_s) or [float("nan")]
        return {
            "kills": len(self.lives_s),
            "mean_life_s": round(sum(self.lives_s) / len(self.lives_s), 2),
            "median_restart_to_output_s": round(restarts[len(restarts) // 2], 2),
            "max_restart_to_output_s": round(restarts[-1], 2),
            "redelivered_already_applied": self.redelivered,
        }


def kill_repeatedly(
    scorer: ScorerProcess, reader: OutputLog, rng: random.Random, kills: int
) -> Kills:
    """Start and SIGKILL the scorer `kills` times, at random moments.

    Most kills come a random while after the life showed progress (a new
    output); `BLIND_KILL_SHARE` of them a random while after its start,
    during start-up or the group join.
    """
    done = Kills()
    for _ in range(kills):
        scorer.start()
        if rng.random() >= BLIND_KILL_SHARE and reader.wait_for_more(PROGRESS_WAIT_S):
            done.restart_to_output_s.append(time.monotonic() - scorer.started_at)
        time.sleep(rng.uniform(*KILL_AFTER_S))
        assert scorer.is_running, scorer.log_text()[-2000:]
        done.redelivered += int(
            scorer.metric_or_zero("scorer_records_total", outcome="duplicate")
        )
        scorer.kill()
        done.lives_s.append(time.monotonic() - scorer.started_at)
    return done


# -- Kafka input and output ------------------------------------------------


def idempotent_producer(bootstrap: str) -> Producer:
    # Idempotence keeps each partition's order through broker restarts and
    # retries: the replay's order per lead is the order produced.
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )


def produce_workload(
    bootstrap: str, topic: str, workload: Workload
) -> dict[str, tuple[int, int]]:
    """Produce every event; returns where each went: id -> (partition, offset)."""
    producer = idempotent_producer(bootstrap)
    failures: list[KafkaError] = []
    placed: dict[str, tuple[int, int]] = {}

    def on_delivery(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.append(error)
            return
        event_id = json.loads(message.value())["event_id"]
        placed[event_id] = (message.partition(), message.offset())

    for index in range(len(workload.values)):
        _produce_one(producer, topic, workload, index, on_delivery)
    assert producer.flush(WAIT_S) == 0
    assert not failures, failures[:3]
    return placed


def _produce_one(
    producer: Producer, topic: str, workload: Workload, index: int, on_delivery: Any
) -> None:
    key = workload.records[index]["lead_id"].encode()
    send(producer, topic, workload.values[index], key, on_delivery=on_delivery)
    if index % 500 == 0:
        producer.poll(0)


class Feeder(threading.Thread):
    """Produces a workload at about `rate` events a second, in order."""

    def __init__(self, bootstrap: str, topic: str, workload: Workload, rate: float):
        super().__init__(name="feeder", daemon=True)
        self.producer = idempotent_producer(bootstrap)
        self.topic = topic
        self.workload = workload
        self.rate = rate
        self.produced = 0
        self.failures: list[KafkaError] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def _feed(self) -> None:
        started = time.monotonic()
        for index in range(len(self.workload.values)):
            due = started + index / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self.producer.poll(delay)
            _produce_one(self.producer, self.topic, self.workload, index, self._report)
            self.produced = index + 1
        assert self.producer.flush(WAIT_S * 2) == 0

    def _report(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.failures.append(error)

    def finish(self) -> None:
        self.join(WAIT_S * 3)
        assert not self.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error
        assert not self.failures, self.failures[:3]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets (-1001 where it committed none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in end_offsets(bootstrap, topic)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, 10)}
    finally:
        consumer.close()


def wait_caught_up(
    bootstrap: str, group: str, topic: str, timeout_s: float = WAIT_S
) -> None:
    """Until the group has committed every record of the topic (as produced)."""
    deadline = time.monotonic() + timeout_s
    ends = end_offsets(bootstrap, topic)
    while (committed := committed_offsets(bootstrap, group, topic)) != ends:
        assert time.monotonic() < deadline, f"not caught up: {committed} of {ends}"
        time.sleep(0.5)


class OutputLog(threading.Thread):
    """Reads the output topic from the start, in the background."""

    def __init__(self, bootstrap: str, topic: str, read_committed: bool = False):
        super().__init__(name=f"reader-{topic}", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": (
                    "read_committed" if read_committed else "read_uncommitted"
                ),
            }
        )
        # Assigned, not subscribed: a group member can stay cut off from its
        # coordinator after a broker restart (the scorer replaces such a
        # consumer; this reader would not), and the test would see no output.
        metadata = self.consumer.list_topics(topic, timeout=WAIT_S).topics[topic]
        assert metadata.partitions, f"no partitions of {topic}"
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        )
        self.bootstrap, self.topic = bootstrap, topic
        self.values: list[bytes] = []
        self.arrivals: list[float] = []  # time.monotonic() per message
        self.read_up_to: dict[int, int] = {}  # partition -> next offset
        self._lock = threading.Lock()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for message in self.consumer.consume(1000, 0.1):
                if message.error() is None:
                    with self._lock:
                        self.values.append(message.value())
                        self.arrivals.append(time.monotonic())
                        self.read_up_to[message.partition()] = message.offset() + 1
        self.consumer.close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.values)

    def first_arrival_after(self, moment: float) -> float | None:
        with self._lock:
            later = [t for t in self.arrivals if t > moment]
        return min(later) if later else None

    def wait_for(self, count: int, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count < count:
            assert time.monotonic() < deadline, f"only {self.count} outputs"
            time.sleep(0.05)

    def wait_for_more(self, timeout_s: float) -> bool:
        """Until a new output arrives; False if none came in `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen = self.count
        while self.count == seen:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def finish(self) -> list[bytes]:
        """Read to the end of the topic as it is now, then stop reading.

        The end is reached when the last record of every partition was read;
        a read_committed reader never sees a partition's last offset when it
        holds a transaction marker, so for it the end is also a quiet spell.
        """
        ends = end_offsets(self.bootstrap, self.topic)
        deadline = time.monotonic() + WAIT_S
        last, seen = time.monotonic(), self.count
        while not self._read_to(ends) and time.monotonic() - last < QUIET_S * 3:
            assert time.monotonic() < deadline, "the output topic was not read"
            time.sleep(0.1)
            if self.count != seen:
                last, seen = time.monotonic(), self.count
        self._done.set()
        self.join(WAIT_S)
        return list(self.values)

    def _read_to(self, ends: Mapping[int, int]) -> bool:
        with self._lock:
            return all(self.read_up_to.get(p, 0) >= end for p, end in ends.items())


# -- the checks ------------------------------------------------------------


@dataclass
class Report:
    """Figures a test prints at the end."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)

    def print(self) -> None:
        body = " ".join(f"{k}={v}" for k, v in self.figures.items())
        print(f"\n[{self.name}] {body}", file=sys.stderr)


def check_results(
    config: Config,
    redis_url: str,
    expected: Expected,
    outputs: Sequence[bytes],
    allow_copies: bool = True,
) -> dict[str, int]:
    """Everything the guarantees promise, checked; returns figures."""
    figures = check_outputs(expected, outputs, allow_copies)
    figures |= check_state(config, redis_url, expected)
    return figures


def check_outputs(
    expected: Expected, outputs: Sequence[bytes], allow_copies: bool = True
) -> dict[str, int]:
    """Every replayed output was published; copies only as exact bytes."""
    by_id: dict[str, bytes] = {}
    order: dict[str, list[str]] = defaultdict(list)
    copies = 0
    for value in outputs:
        event = json.loads(value)
        event_id = event["event_id"]
        if event_id in by_id:
            assert by_id[event_id] == value, f"a different copy of {event_id}"
            copies += 1
            continue
        by_id[event_id] = value
        order[event["lead_id"]].append(event_id)

    missing = expected.outputs.keys() - by_id.keys()
    extra = by_id.keys() - expected.outputs.keys()
    assert not missing, f"{len(missing)} outputs never published"
    assert not extra, f"{len(extra)} outputs the replay does not have"
    differing = [i for i, v in by_id.items() if v != expected.outputs[i]]
    assert not differing, f"{len(differing)} outputs differ from the replay"
    # First copies come in each lead's order: the path of scores matches.
    assert dict(order) == expected.per_lead
    if not allow_copies:
        assert copies == 0, f"{copies} duplicate outputs"
    return {"outputs_checked": len(by_id), "duplicate_outputs": copies}


def check_state(config: Config, redis_url: str, expected: Expected) -> dict[str, int]:
    """Each lead's Redis state equals the replay's; each event applied once."""
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, Params.of(config.scoring), config.redis.key_prefix)
    try:
        live_leads = set(store.lead_ids())
        replay_leads = set(expected.replay.store.lead_ids())
        assert live_leads == replay_leads
        for lead in sorted(replay_leads):
            _same_snapshot(store, expected.replay, lead)
            seen = {m.decode() for m in client.zrange(store.keys(lead)[1], 0, -1)}
            assert seen == expected.applied.get(lead, set()), lead
    finally:
        client.close()
    events = sum(len(ids) for ids in expected.applied.values())
    return {"leads_checked": len(replay_leads), "events_applied": events}


def applied_in_redis(config: Config, redis_url: str, leads: Iterable[str]) -> set[str]:
    """Ids of every update Redis remembers for `leads`."""
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, Params.of(config.scoring), config.redis.key_prefix)
    try:
        ids: set[str] = set()
        for lead in leads:
            ids |= {m.decode() for m in client.zrange(store.keys(lead)[1], 0, -1)}
        return ids
    finally:
        client.close()


def _same_snapshot(store: RedisStore, replay: Replay, lead: str) -> None:
    live = store.snapshot(lead)
    offline = replay.store.snapshot(lead)
    assert live is not None and offline is not None
    assert live.as_of_ms == offline.as_of_ms, lead
    assert live.is_mql == offline.is_mql, lead
    for name in ("fit", "engagement", "score"):
        got, want = getattr(live, name), getattr(offline, name)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (lead, name)


def info_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " INFO " in line]


def lead_ids_in(lines: Iterable[str], leads: set[str]) -> list[str]:
    """Log lines that name a lead of the workload (there should be none)."""
    return [line for line in lines if any(lead in line for lead in leads)]
