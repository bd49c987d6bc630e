"""`scorer demo`: real traffic through local Kafka and Redis, scored live.

The demo starts a Kafka broker and a Redis server of its own (see
`scorer.sandbox`), then streams two real datasets through the live scorer:
1. the semicomplete.com web access log shipped in ``examples/access_log``
   (real visits and downloads, out of order, with crawlers), and
2. the X Education leads, when the public datasets folder is at hand
   (``--data``, default ``../shared/data`` beside the checkout): converted
   by ``examples/x_education/convert.py``, with their real outcomes.
MQL alerts are printed as the scorer publishes them; each part ends with a
summary of leads scored, MQLs and events per second.
"""

import csv
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from scorer import accesslog
from scorer.calibrate import GOOD_BAND, TOO_HIGH_ABOVE, TOO_LOW_BELOW, Row
from scorer.config import Config, parse_config
from scorer.config.yaml_syntax import ConfigLoader
from scorer.delivery import send
from scorer.errors import ScorerError
from scorer.events import FIRMOGRAPHICS_TYPE
from scorer.metrics import Metrics
from scorer.publish import MQL_CROSSED
from scorer.sandbox.stack import create_config_topics, start_servers
from scorer.service import build_pipeline
from scorer.wire import SCORE_SCHEMA, make_codec

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCESS_LOG = REPO_ROOT / "examples" / "access_log" / "apache_logs"
ACCESS_RULES = REPO_ROOT / "examples" / "access_log" / "rules.yaml"
XEDU_RULES = REPO_ROOT / "examples" / "x_education" / "rules.yaml"
XEDU_CONVERTER = REPO_ROOT / "examples" / "x_education" / "convert.py"
XEDU_CSV = Path("x_education_leads") / "Leads_dev70.csv"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"

# Alerts printed one by one per dataset; the rest are counted.
ALERTS_SHOWN = 15
PROGRESS_EVERY_S = 2.0
# The scorer is done when it has consumed everything produced, or gives up.
DRAIN_TIMEOUT_S = 300.0
# How long the alert watcher may take to join its group, or to read the
# outputs to their end once the scorer stopped.
WATCH_TIMEOUT_S = 60.0
# The converter logs in logging's default format, "LEVEL:logger:message".
_LOG_PREFIX = re.compile(r"^[A-Z]+:[\w.]+:")


@dataclass(slots=True)
class Watch:
    """What the alert watcher saw on the output topic."""

    outputs: int = 0
    mql_up: set[str] = field(default_factory=set)
    mql_down: int = 0
    leads: set[str] = field(default_factory=set)
    shown: int = 0
    read: int = 0  # records read from the output topic, alerts or not
    assigned: threading.Event = field(default_factory=threading.Event)


def main(data_dir: Path | None = None, speed: float = 0.0) -> int:
    data = data_dir if data_dir is not None else DEFAULT_DATA
    check_examples()
    say("Starting a local Kafka broker (KRaft) and Redis server ...")
    with ExitStack() as stack:
        broker, redis_server = start_servers(stack)
        say(f"  Kafka at {broker.bootstrap_servers}, Redis at {redis_server.url}")
        _access_log_part(broker.bootstrap_servers, redis_server.url, speed)
        _x_education_part(broker.bootstrap_servers, redis_server.url, data)
    say("Demo finished; the local servers are stopped.")
    return 0


def check_examples() -> None:
    """The demo's inputs are the repository's examples, not the package's.

    An installed wheel holds the `scorer` package only; say so before any
    server starts.
    """
    for path in (ACCESS_LOG, ACCESS_RULES, XEDU_RULES, XEDU_CONVERTER):
        if not path.is_file():
            raise ScorerError(
                f"scorer demo runs in a clone of the repository: it reads "
                f"{path.relative_to(REPO_ROOT)}, which is not in {REPO_ROOT} "
                "(an installed package has no examples); clone the repository "
                "and run `make demo` there"
            )


def say(text: str) -> None:
    print(text, flush=True)


def _access_log_part(bootstrap: str, redis_url: str, speed: float) -> None:
    say("\n== Part 1: the semicomplete.com access log (real traffic, May 2015) ==")
    stats = accesslog.ImportStats()
    with ACCESS_LOG.open(encoding="utf-8", errors="replace") as handle:
        records = list(accesslog.import_log(handle, stats=stats))
    say(
        f"  {stats.lines_read} log lines -> {len(records)} events for "
        f"{stats.distinct_leads} visitors "
        f"({sum(stats.dropped.values())} dropped: crawlers, assets, errors)"
    )
    config = _config(ACCESS_RULES, bootstrap, redis_url, "access")
    _rules_line(config, ACCESS_RULES)
    watch, elapsed = _stream(config, records, speed)
    _summary(watch, len(records), elapsed)


def _x_education_part(bootstrap: str, redis_url: str, data: Path) -> None:
    say("\n== Part 2: X Education leads (real outcomes, invented timeline) ==")
    csv_path = data / XEDU_CSV
    if not csv_path.exists():
        say(
            f"  skipped: {csv_path} not found (give the datasets folder: "
            "`scorer demo --data DIR`, or `make demo DATA=DIR`)"
        )
        return
    with tempfile.TemporaryDirectory(prefix="scorer-demo-") as work:
        events_path, labels_path = (
            Path(work) / "events.jsonl",
            Path(work) / "labels.csv",
        )
        _convert_x_education(csv_path, events_path, labels_path)
        records = [json.loads(line) for line in events_path.open()]
        labels = _labels(labels_path)
    say(f"  {len(labels)} leads -> {len(records)} events and firmographic records")
    config = _config(XEDU_RULES, bootstrap, redis_url, "xedu")
    _rules_line(config, XEDU_RULES)
    watch, elapsed = _stream(config, records, speed=0.0)
    _summary(watch, len(records), elapsed)
    _conversion(watch, labels, config.scoring.mql.threshold)


def _rules_line(config: Config, rules: Path) -> None:
    mql = config.scoring.mql
    say(
        f"  rules {rules.relative_to(REPO_ROOT)}: MQL at score {mql.threshold:g} "
        f"(out below {mql.threshold - mql.hysteresis:g})"
    )


def _convert_x_education(csv_path: Path, events: Path, labels: Path) -> None:
    """Run the converter; a file it refuses, or of no leads, is a ScorerError."""
    command = [sys.executable, str(XEDU_CONVERTER), str(csv_path)]
    command += ["--out", str(events), "--labels", str(labels)]
    done = subprocess.run(
        command, capture_output=True, text=True, errors="replace", cwd=REPO_ROOT
    )
    if done.returncode != 0:
        reason = _last_words(done.stderr) or f"exit code {done.returncode}"
        raise ScorerError(f"{csv_path}: cannot convert the X Education leads: {reason}")

    # The closing summary divides by the number of leads.
    if not _labels(labels):
        raise ScorerError(f"{csv_path}: holds no leads")


def _last_words(stderr: str) -> str:
    """The converter's reason: its last line (a log line, or a traceback's end)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return _LOG_PREFIX.sub("", lines[-1]) if lines else ""


def _labels(path: Path) -> dict[str, bool]:
    with path.open(newline="") as handle:
        return {
            row["lead_id"]: row["converted"] == "1" for row in csv.DictReader(handle)
        }


def _config(rules: Path, bootstrap: str, redis_url: str, name: str) -> Config:
    # Read as every config is read (YAML 1.2's numbers and booleans).
    raw = yaml.load(rules.read_text(), Loader=ConfigLoader)
    run = uuid.uuid4().hex[:6]
    raw["topics"] = {
        "events": [
            {"name": f"{name}.page_views", "format": "avro"},
            {"name": f"{name}.content_downloads", "format": "avro"},
        ],
        "firmographics": {"name": f"{name}.firmographics", "format": "avro"},
        "output": {"name": f"{name}.scores", "format": "avro"},
        "dead_letter": f"{name}.dead_letter",
    }
    raw["kafka"] = {"bootstrap_servers": bootstrap, "group_id": f"demo-{name}-{run}"}
    raw["redis"] = {"url": redis_url, "key_prefix": f"demo-{name}"}
    raw["metrics"] = {"port": None}
    config = parse_config(raw)
    create_config_topics(bootstrap, config)
    return config


def _stream(
    config: Config, records: list[dict[str, Any]], speed: float
) -> tuple[Watch, float]:
    """Run the scorer and the alert watcher while producing `records`."""
    metrics = Metrics()
    pipeline = build_pipeline(config, metrics)
    clock = _BatchClock()
    pipeline.on_batch = clock.tick
    scorer_stop, watcher_stop = threading.Event(), threading.Event()
    scorer_thread = threading.Thread(
        target=pipeline.run, args=(scorer_stop,), daemon=True
    )
    watch = Watch()
    watcher = threading.Thread(
        target=_watch_alerts, args=(config, watch, watcher_stop), daemon=True
    )
    watcher.start()
    scorer_thread.start()
    # Without this wait, a short part could end before the watcher joined
    # its group, and show no alert at all.
    if not watch.assigned.wait(WATCH_TIMEOUT_S):
        say("  (the alert watcher could not join its group; alerts are missing)")

    # The CRM knows a lead before the scorer sees its visits: firmographic
    # records go first, so an alert shows the fit the lead crossed with.
    # (Streamed together, the topics are read in no fixed order, and most
    # alerts came before the lead's fit.)
    profiles = [r for r in records if r["type"] == FIRMOGRAPHICS_TYPE]
    events = [r for r in records if r["type"] != FIRMOGRAPHICS_TYPE]
    _produce(config, profiles, speed=0.0)
    _drain(metrics, len(profiles))
    _produce(config, events, speed)
    _drain(metrics, len(records))

    # A record counts as consumed once its outputs are acknowledged, so all
    # of them are on the topic now: the alerts are shown before the scorer
    # says it stopped. Stopping may still publish; the watcher reads on.
    _await_watcher(config, watch)
    scorer_stop.set()
    scorer_thread.join()
    _await_watcher(config, watch)
    watcher_stop.set()
    watcher.join()
    return watch, clock.span_s()


def _await_watcher(config: Config, watch: Watch) -> None:
    published = _published(config)
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    while watch.read < published and time.monotonic() < deadline:
        time.sleep(0.05)
    if watch.read < published:
        say(f"  (the alert watcher read {watch.read} of {published} outputs)")


def _published(config: Config) -> int:
    """Records on the output topic (a fresh topic: its high watermarks)."""
    consumer = Consumer(
        {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": "demo-ends"}
    )
    try:
        topic = config.topics.output.name
        metadata = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
            total += high - low
        return total
    finally:
        consumer.close()


class _BatchClock:
    """From the first batch consumed to the last one committed."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def tick(self, _batch: object, _results: object) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now

    def span_s(self) -> float:
        return max(1e-6, self.last - (self.first or self.last))


def _produce(config: Config, records: list[dict[str, Any]], speed: float) -> None:
    codec = make_codec("avro")
    topics = config.topics
    assert topics.firmographics is not None
    by_type = {
        "page_view": topics.events[0].name,
        "content_download": topics.events[1].name,
        "webinar": topics.events[0].name,
        "firmographics": topics.firmographics.name,
    }
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers})
    for record, pause_s in zip(records, _pauses(records, speed), strict=True):
        if pause_s > 0:
            time.sleep(pause_s)
        topic = by_type[record["type"]]
        value = codec.encode(record)
        send(producer, topic, value, record["lead_id"].encode())
        producer.poll(0)
    producer.flush(60)


def _pauses(records: list[dict[str, Any]], speed: float) -> Iterator[float]:
    """Sleep between records to replay at `speed` x real time (0: no sleep)."""
    previous: float | None = None
    for record in records:
        moment = record.get("occurred_at") or record.get("updated_at")
        now = _seconds(moment) if speed > 0 and moment else None
        if previous is None or now is None:
            yield 0.0
        else:
            yield max(0.0, min(5.0, (now - previous) / speed))
        previous = now if now is not None else previous


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def _drain(metrics: Metrics, expected: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last_report = time.monotonic()
    while _consumed(metrics) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            say(f"  ... {_consumed(metrics)}/{expected} records processed")


def _consumed(metrics: Metrics) -> int:
    total = 0.0
    for metric in metrics.consumed.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return int(total)


def _watch_alerts(config: Config, watch: Watch, stop: threading.Event) -> None:
    codec = make_codec(config.topics.output.format, schema_name=SCORE_SCHEMA)
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "group.id": f"{config.kafka.group_id}-alerts",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(
        [config.topics.output.name],
        on_assign=lambda _consumer, _partitions: watch.assigned.set(),
    )
    try:
        while not stop.is_set():
            for message in consumer.consume(500, 0.2):
                value = message.value()
                if message.error() is None and value is not None:
                    watch.read += 1
                    _alert(codec.decode(value), watch)
    finally:
        consumer.close()


def _alert(event: dict[str, Any], watch: Watch) -> None:
    watch.outputs += 1
    watch.leads.add(event["lead_id"])
    if event["type"] != MQL_CROSSED:
        return
    if event["direction"] == "down":
        watch.mql_down += 1
        return
    watch.mql_up.add(event["lead_id"])
    if watch.shown < ALERTS_SHOWN:
        watch.shown += 1
        # The event's own time, in UTC like the data's: not the local clock.
        moment = event["occurred_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        say(
            f"  MQL ALERT  {event['lead_id']}  score {event['score']:.2f} "
            f"(fit {event['fit']:.2f}, engagement {event['engagement']:.2f})"
            f"  at {moment}"
        )
    elif watch.shown == ALERTS_SHOWN:
        watch.shown += 1
        say("  ... more MQL alerts are counted in the summary")


def _summary(watch: Watch, records: int, elapsed_s: float) -> None:
    say(
        f"  Summary: {records} records processed in {elapsed_s:.2f} s "
        f"({records / elapsed_s:,.0f} events/s from first to last batch); "
        f"{len(watch.leads)} leads scored, {len(watch.mql_up)} became MQLs "
        f"({watch.mql_down} crossings back down); {watch.outputs} output events"
    )


def _conversion(watch: Watch, labels: dict[str, bool], threshold: float) -> None:
    mqls = [lead for lead in watch.mql_up if lead in labels]
    converted = sum(labels[lead] for lead in mqls)
    base = sum(labels.values()) / len(labels)
    share = converted / len(mqls) if mqls else 0.0
    conversions = sum(labels.values())
    verdict = Row(threshold, len(mqls), converted, len(labels), conversions).verdict
    low, high = GOOD_BAND
    say(
        f"  X Education: {converted} of {len(mqls)} MQLs converted ({share:.1%}; "
        f"MQL threshold {threshold:g}; all leads {base:.1%}).\n"
        f"  Verdict: {verdict} (marketing-ops target {low:.0%}-{high:.0%}, "
        f"acceptable within {TOO_LOW_BELOW:.0%}-{TOO_HIGH_ABOVE:.0%}, too low "
        f"below {TOO_LOW_BELOW:.0%}, too high above {TOO_HIGH_ABOVE:.0%}). When "
        f"all leads convert at {base:.0%}, a threshold that picks the better ones "
        f"lands above {base:.0%}; `scorer calibrate` sweeps thresholds."
    )
