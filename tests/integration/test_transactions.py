"""`pipeline.transactional: true`: each batch's outputs and offsets commit in
one Kafka transaction, so a read_committed consumer sees every output once,
even when the scorer is SIGKILLed at random moments."""

import random
import time
import uuid
from pathlib import Path
from typing import Any

from guarantees import (
    Feeder,
    OutputLog,
    Report,
    ScorerProcess,
    check_results,
    kill_repeatedly,
    make_workload,
    raw_config,
    replay_workload,
    wait_caught_up,
)

from scorer.config import parse_config

EVENTS, LEADS, KILLS, FEED_S = 20_000, 1_000, 10, 20.0
PARTITIONS = 4
CONSUMER = {"group.instance.id": "txn-test", "session.timeout.ms": 6000}


def test_read_committed_sees_each_output_once_under_sigkill(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any, tmp_path: Path
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    raw = raw_config(
        kafka_bootstrap,
        redis_url,
        events,
        out,
        dlq,
        consumer_settings=CONSUMER,
        pipeline={
            "transactional": True,
            "transactional_id_prefix": f"test-{uuid.uuid4().hex[:8]}",
        },
    )
    config = parse_config(raw)
    workload = make_workload(EVENTS, LEADS, seed=11)
    expected = replay_workload(config, workload)

    committed = OutputLog(kafka_bootstrap, out, read_committed=True)
    everything = OutputLog(kafka_bootstrap, out)
    feeder = Feeder(kafka_bootstrap, events, workload, rate=EVENTS / FEED_S)
    scorer = ScorerProcess(raw, tmp_path, "scorer")
    committed.start()
    everything.start()
    feeder.start()
    started = time.monotonic()
    try:
        kills = kill_repeatedly(scorer, everything, random.Random(11), KILLS)
        feeder.finish()
        scorer.start()
        scorer.wait_assigned()
        wait_caught_up(kafka_bootstrap, raw["kafka"]["group_id"], events)
        assert scorer.terminate() == 0
    finally:
        scorer.ensure_stopped()
    seen = committed.finish()
    written = everything.finish()

    figures = check_results(config, redis_url, expected, seen, allow_copies=False)
    assert kills.redelivered > 0
    # Kills left transactions open; their outputs were written, then aborted.
    assert len(written) > len(seen)
    figures |= kills.figures()
    figures["aborted_outputs_hidden"] = len(written) - len(seen)
    figures["run_s"] = round(time.monotonic() - started, 1)
    Report("transactions", {"events": EVENTS, **figures}).print()
