"""A silent Kafka broker told from a quiet topic, by librdkafka's statistics."""

import json
import logging
import time
from typing import Any

import pytest

from scorer.clients import consumer_settings
from scorer.config import load_config
from scorer.metrics import Metrics
from scorer.service import build_pipeline
from scorer.silence import NO_LEADER, BrokerSilence, idle_by_address, leaders_idle

FETCHING = {("views", 0), ("views", 1), ("downloads", 0)}


def broker(node: int, rxidle_us: int, address: str = "") -> dict[str, Any]:
    return {"nodeid": node, "nodename": address, "state": "UP", "rxidle": rxidle_us}


def partition(leader: int, fetch_state: str = "active", queued: int = 0) -> Any:
    return {"leader": leader, "fetch_state": fetch_state, "fetchq_cnt": queued}


def stats(
    brokers: dict[str, Any], views: dict[str, Any], downloads: dict[str, Any]
) -> dict[str, Any]:
    """The parts of librdkafka's statistics the silence is judged by."""
    return {
        "brokers": brokers,
        "topics": {
            "views": {"partitions": {**views, "-1": partition(-1)}},
            "downloads": {"partitions": downloads},
        },
    }


def two_brokers(idle_1_us: int, idle_2_us: int) -> dict[str, Any]:
    return stats(
        {
            "a:9092/1": broker(1, idle_1_us),
            "b:9092/2": broker(2, idle_2_us),
            "GroupCoordinator": broker(-1, 40_000_000),
        },
        {"0": partition(1), "1": partition(1)},
        {"0": partition(2)},
    )


def test_each_leader_of_a_fetched_partition_reports_its_idle_seconds() -> None:
    idle = leaders_idle(two_brokers(250_000, 20_000_000), FETCHING)

    # The coordinator's handle (id -1) answers heartbeats only: not judged.
    assert idle == {1: 0.25, 2: 20.0}


@pytest.mark.parametrize(
    "downloads",
    [
        partition(2, fetch_state="stopped"),
        partition(2, fetch_state="none"),
        # Records wait in the client's queue: librdkafka fetches no more.
        partition(2, queued=3),
    ],
)
def test_a_leader_of_partitions_not_being_fetched_is_not_judged(
    downloads: dict[str, Any],
) -> None:
    report = two_brokers(250_000, 20_000_000)
    report["topics"]["downloads"]["partitions"]["0"] = downloads

    assert leaders_idle(report, FETCHING) == {1: 0.25}


@pytest.mark.parametrize(
    "state", ["offset-query", "offset-wait", "validate-epoch-wait", "active"]
)
def test_a_partition_waiting_for_its_leader_in_any_state_is_judged(state: str) -> None:
    """After an outage librdkafka queries offsets and validates epochs with the
    leader before it fetches again: a silent leader keeps it there."""
    report = two_brokers(250_000, 20_000_000)
    report["topics"]["downloads"]["partitions"]["0"] = partition(2, fetch_state=state)

    assert leaders_idle(report, FETCHING) == {1: 0.25, 2: 20.0}


def test_partitions_paused_or_owned_by_others_are_not_judged() -> None:
    report = two_brokers(250_000, 20_000_000)

    assert leaders_idle(report, {("views", 1)}) == {1: 0.25}
    assert leaders_idle(report, set()) == {}


def test_no_answer_yet_and_no_leader_have_no_idle_time() -> None:
    report = two_brokers(-1, 250_000)
    report["topics"]["views"]["partitions"]["1"] = partition(-1)

    assert leaders_idle(report, FETCHING) == {1: None, 2: 0.25, NO_LEADER: None}


def test_partitions_without_a_leader_count_whatever_waits_in_their_queue() -> None:
    """Seen with every broker down: one item (an error) queued per partition."""
    report = two_brokers(250_000, 250_000)
    report["topics"]["views"]["partitions"]["1"] = partition(-1, queued=1)

    assert leaders_idle(report, FETCHING) == {1: 0.25, 2: 0.25, NO_LEADER: None}


def silence(after_s: float = 15.0) -> tuple[BrokerSilence, Metrics]:
    metrics = Metrics()
    watch = BrokerSilence(metrics, after_s)
    watch.fetching = lambda: FETCHING
    return watch, metrics


def gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("scorer_kafka_silence_seconds")


def test_a_broker_silent_past_the_limit_is_reported_until_it_answers() -> None:
    watch, metrics = silence(after_s=15.0)
    watch.note(two_brokers(100_000, 100_000), now_s=80.0)

    watch.note(two_brokers(300_000, 14_900_000), now_s=100.0)
    assert (watch.silent, gauge(metrics)) == ({}, 14.9)

    watch.note(two_brokers(200_000, 17_900_000), now_s=103.0)
    assert (watch.silent, gauge(metrics)) == ({2: 17.9}, 17.9)

    watch.note(two_brokers(200_000, 100_000), now_s=106.0)
    assert (watch.silent, gauge(metrics)) == ({}, 0.2)


def test_a_broker_silent_for_exactly_the_limit_is_silent() -> None:
    watch, metrics = silence(after_s=15.0)
    watch.note(two_brokers(100_000, 100_000), now_s=80.0)

    watch.note(two_brokers(100_000, 15_000_000), now_s=100.0)

    assert (watch.silent, gauge(metrics)) == ({2: 15.0}, 15.0)


def test_the_silence_counts_on_through_a_reconnection_with_no_answer() -> None:
    """librdkafka's request timeout drops the connection, and its new one
    counts from -1: the broker has still said nothing since its last answer."""
    watch, metrics = silence(after_s=15.0)
    watch.note(two_brokers(100_000, 100_000), now_s=80.0)

    watch.note(two_brokers(100_000, 10_000_000), now_s=100.0)
    watch.note(two_brokers(100_000, -1), now_s=110.0)

    assert watch.silent == {2: pytest.approx(20.0)}
    assert gauge(metrics) == pytest.approx(20.0)


def test_a_leader_never_heard_from_counts_from_its_first_report() -> None:
    watch, _ = silence(after_s=15.0)

    watch.note(two_brokers(-1, 100_000), now_s=100.0)
    watch.note(two_brokers(-1, 100_000), now_s=114.0)
    assert watch.silent == {}

    watch.note(two_brokers(-1, 100_000), now_s=116.0)
    assert watch.silent == {1: 16.0}


def test_partitions_left_without_a_leader_count_as_a_silence() -> None:
    """Every broker gone: librdkafka forgets the leaders of the partitions."""
    watch, _ = silence(after_s=15.0)
    leaderless = stats({}, {"0": partition(-1)}, {})

    watch.note(leaderless, now_s=100.0)
    watch.note(leaderless, now_s=118.0)

    assert watch.silent == {NO_LEADER: 18.0}


def test_a_silence_counts_from_the_first_report_of_the_leader_at_most() -> None:
    """Statistics made while the scorer held its partitions paused can come
    after the resume: no fetch was asked for, so none was answered."""
    watch, metrics = silence(after_s=15.0)
    watch.note(two_brokers(100_000, 100_000), now_s=80.0)
    fetching = watch.fetching

    watch.fetching = frozenset
    watch.note(two_brokers(20_000_000, 20_000_000), now_s=100.0)
    watch.fetching = fetching
    watch.note(two_brokers(31_000_000, 31_000_000), now_s=111.0)
    assert (watch.silent, gauge(metrics)) == ({}, 0.0)

    watch.note(two_brokers(100_000, 47_000_000), now_s=127.0)
    assert watch.silent == {2: 16.0}


def coordinated_by_2(idle_2_us: int, coordinator_us: int) -> dict[str, Any]:
    """Broker 2 leads a fetched partition and is the group's coordinator."""
    return stats(
        {
            "a:9092/1": broker(1, 100_000, "a:9092"),
            "b:9092/2": broker(2, idle_2_us, "b:9092"),
            "GroupCoordinator": broker(-1, coordinator_us, "b:9092"),
        },
        {"0": partition(1), "1": partition(1)},
        {"0": partition(2)},
    )


def test_a_silent_coordinator_stays_silent_past_the_lost_session() -> None:
    """Its group session timed out, the consumer fetches nothing: no leader
    to judge, but the broker has not answered since."""
    watch, metrics = silence(after_s=15.0)
    watch.note(coordinated_by_2(100_000, 100_000), now_s=80.0)
    watch.note(coordinated_by_2(17_900_000, 17_900_000), now_s=103.0)
    assert watch.silent == {2: 17.9}

    watch.fetching = frozenset  # the partitions lost with the session
    watch.note(coordinated_by_2(44_900_000, 44_900_000), now_s=130.0)
    assert (watch.silent, gauge(metrics)) == ({2: 44.9}, 44.9)
    watch.note(coordinated_by_2(-1, -1), now_s=140.0)  # reconnecting
    assert watch.silent == {2: pytest.approx(54.9)}

    watch.note(coordinated_by_2(-1, 200_000), now_s=143.0)  # the coordinator
    assert (watch.silent, gauge(metrics)) == ({}, 0.0)


def test_a_silent_broker_whose_handle_librdkafka_dropped_stays_silent() -> None:
    """Seen 73 s into a freeze: only a bootstrap connection to it is left."""
    watch, _ = silence(after_s=15.0)
    watch.note(coordinated_by_2(100_000, 100_000), now_s=80.0)
    watch.note(coordinated_by_2(17_900_000, 17_900_000), now_s=103.0)
    watch.fetching = frozenset

    bootstrap = {"b:9092/bootstrap": broker(-1, -1, "b:9092")}
    watch.note(stats(bootstrap, {}, {}), now_s=160.0)
    assert watch.silent == {2: pytest.approx(74.9)}

    bootstrap["b:9092/bootstrap"] = broker(-1, 170_000, "b:9092")
    watch.note(stats(bootstrap, {}, {}), now_s=163.0)
    assert watch.silent == {}


def test_a_broker_is_as_silent_as_its_least_idle_connection() -> None:
    # Broker 2's own connection hangs; the coordinator's answered just now.
    report = coordinated_by_2(idle_2_us=40_000_000, coordinator_us=200_000)

    assert idle_by_address(report) == {"a:9092": 0.1, "b:9092": 0.2}


def test_a_broker_not_silent_before_the_partitions_went_is_not_judged() -> None:
    watch, _ = silence(after_s=15.0)
    watch.note(coordinated_by_2(100_000, 100_000), now_s=80.0)
    watch.note(coordinated_by_2(14_000_000, 14_000_000), now_s=94.0)

    watch.fetching = frozenset
    watch.note(coordinated_by_2(60_000_000, 60_000_000), now_s=140.0)

    assert watch.silent == {}


def test_partitions_lost_without_a_leader_stay_silent_until_a_broker_answers() -> None:
    watch, _ = silence(after_s=15.0)
    gone = broker(1, 30_000_000, "a:9092")
    leaderless = stats({"a:9092/1": gone}, {"0": partition(-1)}, {})
    watch.note(leaderless, now_s=100.0)
    watch.note(leaderless, now_s=118.0)

    watch.fetching = frozenset
    watch.note(stats({"a:9092/1": gone}, {}, {}), now_s=150.0)
    assert watch.silent == {NO_LEADER: 50.0}

    back = broker(1, 300_000, "a:9092")
    watch.note(stats({"a:9092/1": back}, {}, {}), now_s=153.0)
    assert watch.silent == {}


def test_a_broker_that_led_before_starts_afresh_when_it_leads_again() -> None:
    watch, _ = silence(after_s=15.0)
    only_1 = two_brokers(100_000, 100_000)
    only_1["topics"]["downloads"]["partitions"]["0"] = partition(1)

    watch.note(two_brokers(100_000, 100_000), now_s=100.0)
    watch.note(only_1, now_s=103.0)
    watch.note(two_brokers(100_000, -1), now_s=200.0)

    assert watch.silent == {}


def test_the_start_and_end_of_a_silence_are_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch, _ = silence(after_s=15.0)
    watch.note(two_brokers(100_000, 100_000), now_s=80.0)

    with caplog.at_level(logging.INFO, logger="scorer.silence"):
        for now_s, idle_us in [(100, 16_000_000), (103, 19_000_000), (106, 50_000)]:
            watch.note(two_brokers(100_000, idle_us), now_s=now_s)

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "kafka silent: broker 2 silent 16.0s, past metrics.silent_after, "
            "on partitions this instance fetches broker=2",
        ),
        (
            "INFO",
            "kafka silence over: broker 2 answers again broker=2 "
            "silent_s=19.0 (at least)",
        ),
    ]


def test_a_replaced_consumers_statistics_are_ignored() -> None:
    watch, _ = silence(after_s=15.0)
    old = watch.listener()
    new = watch.listener()
    watch.note(two_brokers(100_000, 100_000), now_s=time.monotonic() - 60.0)

    old(json.dumps(two_brokers(100_000, 30_000_000)))
    assert watch.silent == {}

    new(json.dumps(two_brokers(100_000, 30_000_000)))
    assert watch.silent == {2: pytest.approx(30.0)}


def test_the_consumer_reports_statistics_unless_told_otherwise() -> None:
    assert consumer_settings(load_config())["statistics.interval.ms"] == 3000

    config = load_config(
        overrides={"kafka.consumer_settings": "{statistics.interval.ms: 0}"}
    )
    assert consumer_settings(config)["statistics.interval.ms"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps(
            {
                "brokers": {"a": {"nodeid": 1, "rxidle": None}},
                "topics": {"views": {"partitions": {"0": partition(1)}}},
            }
        ),
    ],
)
def test_unreadable_statistics_are_logged_once_and_never_raised(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    watch, _ = silence()
    on_stats = watch.listener()

    with caplog.at_level(logging.INFO, logger="scorer.silence"):
        on_stats(text)
        on_stats(text)

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "kafka statistics unreadable; broker silence not judged error="
    )
    assert watch.silent == {}


@pytest.mark.parametrize(("interval", "judged"), [("3000ms", True), ("0ms", False)])
def test_the_service_reads_the_statistics_interval_as_librdkafka_does(
    interval: str, judged: bool
) -> None:
    """librdkafka reads the leading digits of "3000ms"; `scorer run` crashed."""
    overrides = {
        "kafka.bootstrap_servers": "127.0.0.1:1",
        "redis.url": "redis://127.0.0.1:1/0",
        "kafka.consumer_settings": f"{{statistics.interval.ms: '{interval}'}}",
    }

    pipeline = build_pipeline(load_config(overrides=overrides))
    try:
        assert pipeline.silence_judged is judged
    finally:
        pipeline.consumer.close()
