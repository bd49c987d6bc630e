"""`scorer run` as a real process: killed at random moments, or stopped.

After each run the final state in Redis is compared with an offline replay
of the same events, lead by lead, and the output topic with the replay's
outputs: nothing lost, nothing applied twice, copies only byte-identical.
"""

import random
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer
from guarantees import (
    Feeder,
    OutputLog,
    Report,
    ScorerProcess,
    applied_in_redis,
    check_results,
    committed_offsets,
    info_lines,
    kill_repeatedly,
    lead_ids_in,
    make_workload,
    produce_workload,
    raw_config,
    replay_workload,
    wait_caught_up,
)

from scorer.config import parse_config
from scorer.presence import ConsumerGroup

PARTITIONS = 6
# Static membership: a restarted process takes its partitions back at once
# instead of waiting for the dead one's session to time out.
CONSUMER = {"group.instance.id": "crash-test", "session.timeout.ms": 6000}

# The CI run: 20 kills over 100,000 events of 3,000 leads.
CI_EVENTS, CI_LEADS, CI_KILLS, CI_FEED_S = 100_000, 3_000, 20, 25.0
# The soak: the same at five times the size.
SOAK_EVENTS, SOAK_LEADS, SOAK_KILLS, SOAK_FEED_S = 500_000, 10_000, 60, 150.0


def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any, tmp_path: Path
) -> None:
    report = run_with_kills(
        kafka_bootstrap,
        redis_url,
        fresh_topics,
        tmp_path,
        (CI_EVENTS, CI_LEADS, CI_KILLS, CI_FEED_S),
        seed=20261204,
    )
    report.print()


@pytest.mark.soak
def test_soak_sigkill_at_random_moments(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any, tmp_path: Path
) -> None:
    report = run_with_kills(
        kafka_bootstrap,
        redis_url,
        fresh_topics,
        tmp_path,
        (SOAK_EVENTS, SOAK_LEADS, SOAK_KILLS, SOAK_FEED_S),
        seed=7,
    )
    report.print()


def run_with_kills(
    bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    work_dir: Path,
    size: tuple[int, int, int, float],
    seed: int,
) -> Report:
    events_count, leads, kills, feed_s = size
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    raw = raw_config(bootstrap, redis_url, events, out, dlq, consumer_settings=CONSUMER)
    config = parse_config(raw)
    workload = make_workload(events_count, leads, seed)
    expected = replay_workload(config, workload)

    started = time.monotonic()
    reader = OutputLog(bootstrap, out)
    feeder = Feeder(bootstrap, events, workload, rate=events_count / feed_s)
    scorer = ScorerProcess(raw, work_dir, "scorer")
    reader.start()
    feeder.start()
    try:
        kills_done = kill_repeatedly(scorer, reader, random.Random(seed), kills)
        feeder.finish()
        scorer.start()
        scorer.wait_assigned()
        wait_caught_up(bootstrap, raw["kafka"]["group_id"], events)
        assert scorer.terminate() == 0
    finally:
        scorer.ensure_stopped()
    outputs = reader.finish()

    figures = check_results(config, redis_url, expected, outputs)
    # Kills must have come between Redis writes and their commits, or the
    # run proved little: those records were redelivered, found applied, and
    # (as the state shows) not applied again.
    assert kills_done.redelivered > 0
    # The lives logged their lifecycle at INFO, and nothing per event.
    lines = info_lines(scorer.log_text())
    assert len(lines) <= 10 * (kills + 1)
    assert lead_ids_in(lines, workload.lead_ids) == []
    report = Report("crash", {"events": events_count, **kills_done.figures()})
    report.figures |= figures
    report.figures["run_s"] = round(time.monotonic() - started, 1)
    return report


def test_sigterm_finishes_the_batch_commits_and_exits_0(
    kafka_bootstrap: str, redis_url: str, fresh_topics: Any, tmp_path: Path
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    raw = raw_config(kafka_bootstrap, redis_url, events, out, dlq)
    raw["pipeline"]["batch_size"] = 200  # many batches: a stop lands in one
    config = parse_config(raw)
    workload = make_workload(30_000, 1_000, seed=4)
    expected = replay_workload(config, workload)
    group = raw["kafka"]["group_id"]
    placed = produce_workload(kafka_bootstrap, events, workload)

    reader = OutputLog(kafka_bootstrap, out)
    reader.start()
    first = ScorerProcess(raw, tmp_path, "first")
    first.start()
    reader.wait_for(2_000)
    code = first.terminate()
    stopped = committed_offsets(kafka_bootstrap, group, events)
    applied = applied_in_redis(config, redis_url, workload.lead_ids)

    second = ScorerProcess(raw, tmp_path, "second")
    second.start()
    try:
        second.wait_assigned()
        wait_caught_up(kafka_bootstrap, group, events)
        redelivered = second.metric(
            "scorer_records_total", topic=events, outcome="duplicate"
        )
        assert second.terminate() == 0
    finally:
        second.ensure_stopped()
    outputs = reader.finish()

    assert code == 0
    # Every record below the committed offsets was applied, none above.
    committed_at_stop = sum(max(offset, 0) for offset in stopped.values())
    assert 0 < committed_at_stop < len(workload.records)
    below = {id_ for id_, (p, offset) in placed.items() if offset < stopped[p]}
    assert applied == below & set().union(*expected.applied.values())
    assert redelivered == 0
    figures = check_results(config, redis_url, expected, outputs, allow_copies=False)
    check_lifecycle_logs(first.log_text(), workload.lead_ids)
    # The scorer announced its rules beside the leads and in its commits.
    prefix, rules = config.redis.key_prefix, config.scoring.rules_version
    announced = redis.Redis.from_url(redis_url).hkeys(f"{prefix}:rules")
    assert announced == [rules.encode()]
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    noted = ConsumerGroup(lambda: reader, group, [events]).ages_s(time.time())
    reader.close()
    assert noted.keys() == {rules}
    Report("sigterm", {"committed_at_stop": committed_at_stop, **figures}).print()


def check_lifecycle_logs(log: str, leads: set[str]) -> None:
    """INFO says start, assignment, revocation and stop; nothing per event."""
    lines = info_lines(log)
    for marker in (
        "scorer started",
        "partitions assigned",
        "partitions revoked",
        "scorer stopping",
        "scorer stopped",
    ):
        assert any(marker in line for line in lines), marker
    # The start names what sets instances apart (group, prefix, output, rules).
    started = next(line for line in lines if "scorer started" in line)
    for field in ("group=guarantees-", "key_prefix=g", "output=", "rules="):
        assert f" {field}" in started, started
    assert len(lines) < 30, lines
    assert lead_ids_in(lines, leads) == []
