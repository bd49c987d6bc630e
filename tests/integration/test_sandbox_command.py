"""`scorer sandbox`, then `scorer produce` and `scorer run` as the README says.

A user trying the service by hand runs three commands in three terminals;
this runs them as child processes and reads the scores they publish.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from scorer.wire import make_codec

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 120.0  # the sandbox starts a JVM
OUTPUT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
T0 = "2026-12-01T10:00:00.000Z"
RECORDS: list[dict[str, Any]] = [
    {"event_id": "v1", "lead_id": "L1", "type": "page_view", "occurred_at": T0},
    {"event_id": "d1", "lead_id": "L1", "type": "content_download", "occurred_at": T0},
    {"event_id": "w1", "lead_id": "L1", "type": "webinar", "occurred_at": T0},
]
RECORDS[0]["url"] = "/pricing"
RECORDS[1] |= {"asset_id": "a1", "asset_type": "whitepaper"}
RECORDS[2] |= {"webinar_id": "w", "status": "registered", "minutes_watched": 0}


# A topic beside the config's, as for seeding history (README).
SIDE_TOPIC = "lead.scores.seed"


def scorer(*args: str) -> list[str]:
    return [sys.executable, "-m", "scorer.cli", *args]


@contextmanager
def running_sandbox() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`scorer sandbox` started, with what it printed up to its instructions;
    killed at the end if the test did not stop it."""
    process = subprocess.Popen(
        scorer("sandbox", "--topic", SIDE_TOPIC),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process, _read_until(process, "Ctrl-C")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def sandbox() -> Iterator[tuple[str, str]]:
    """The running `scorer sandbox`: (bootstrap servers, Redis url)."""
    with running_sandbox() as (process, printed):
        kafka = re.search(r"^  Kafka  (\S+)$", printed, re.M)
        redis_url = re.search(r"^  Redis  (\S+)$", printed, re.M)
        assert kafka and redis_url, printed
        assert f"scorer produce --bootstrap-servers {kafka[1]}" in printed
        topics = re.search(r"^  Topics (.+) \(3 partitions each\)$", printed, re.M)
        assert topics and topics[1].endswith(f", {SIDE_TOPIC}"), printed
        yield kafka[1], redis_url[1]

        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_S) == 0


def test_records_produced_by_hand_are_scored_by_hand(
    sandbox: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, redis_url = sandbox
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))

    produced = subprocess.run(
        scorer("produce", "--bootstrap-servers", bootstrap, str(records)),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    assert produced.returncode == 0, produced.stderr
    run = subprocess.Popen(
        scorer(
            *("run", "--bootstrap-servers", bootstrap, "--redis-url", redis_url),
            *("--set", "metrics.port=null"),
            *("--set", f"kafka.group_id=by-hand-{uuid.uuid4().hex[:8]}"),
        ),
        stderr=subprocess.DEVNULL,
    )
    try:
        outputs = _outputs(bootstrap, count=3)
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(STOP_TIMEOUT_S) == 0

    # One topic per type: each record reached the scorer and scored by its rule.
    reasons = {o["source_event_id"]: o["reason"]["rule"] for o in outputs}
    assert reasons == {
        "v1": "pricing_page",
        "d1": "proof_download",
        "w1": "webinar_registered",
    }
    assert max(o["score"] for o in outputs) == 35.0
    assert (
        SIDE_TOPIC
        in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    )


def test_a_topic_name_kafka_refuses_stops_the_sandbox_before_any_server() -> None:
    done = subprocess.run(
        scorer("sandbox", "--topic", "no spaces"),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )

    assert done.returncode == 2
    assert done.stderr.startswith("config error: --topic: 'no spaces' is not a Kafka")
    assert "Starting" not in done.stdout


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    printed = ""
    # readline blocks while the command prints nothing: past the deadline,
    # killing it ends the read, and the assertion says what was printed.
    timer = threading.Timer(READY_TIMEOUT_S, process.kill)
    timer.start()
    try:
        while marker not in printed:
            line = process.stdout.readline()
            if not line:
                break  # the command ended: its output says why
            printed += line
    finally:
        timer.cancel()
    assert marker in printed, printed
    return printed


def _outputs(bootstrap: str, count: int) -> list[dict[str, Any]]:
    codec = make_codec("avro")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["lead.scores"])
    outputs: list[dict[str, Any]] = []
    deadline = time.monotonic() + OUTPUT_TIMEOUT_S
    try:
        while len(outputs) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                outputs.append(codec.decode(message.value() or b""))
    finally:
        consumer.close()
    assert len(outputs) == count, outputs
    return outputs


def test_the_sandbox_says_when_a_server_ends_on_its_own_and_fails_at_the_end() -> None:
    with running_sandbox() as (process, printed):
        redis_url = re.search(r"^  Redis  (\S+)$", printed, re.M)
        assert redis_url, printed
        client = redis.Redis.from_url(redis_url[1])
        pid = int(client.info("server")["process_id"])
        client.close()

        os.kill(pid, signal.SIGKILL)
        said = _read_until(process, "ended on its own")
        process.send_signal(signal.SIGTERM)
        code = process.wait(STOP_TIMEOUT_S)

    assert "redis ended on its own (signal=SIGKILL)" in said
    assert code == 1
