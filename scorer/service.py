"""Wiring of the live service: the pipeline, its clients, probes and metrics."""

import functools
import gc
import logging
import threading
from collections.abc import Callable

import redis
from confluent_kafka import Consumer, KafkaError, Producer
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from scorer import presence
from scorer.assignment import Reachability, Rejoin
from scorer.clients import (
    client_logger,
    consumer_settings,
    kafka_common,
    output_producer_settings,
    redis_client,
    settings_checked_by_librdkafka,
)
from scorer.config import (
    Config,
)
from scorer.delivery import CommitFailures
from scorer.errors import StateStoreError
from scorer.lead import Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.probes import PING_TIMEOUT_S, CachedPing, ProbeServer, Readiness
from scorer.scoring import Scorer
from scorer.silence import BrokerSilence
from scorer.state import RedisStore

log = logging.getLogger(__name__)

# Net allocations between two collections of the youngest generation; above
# what the batches in flight hold (see tune_garbage_collector).
GC_YOUNG_OBJECTS = 20_000


def build_pipeline(config: Config, metrics: Metrics | None = None) -> ScorerPipeline:
    """Connect everything the live scorer needs; nothing is consumed yet."""
    metrics = metrics if metrics is not None else Metrics()
    store = RedisStore(
        functools.partial(redis_client, config),
        Params.of(config.scoring),
        key_prefix=config.redis.key_prefix,
        ops_per_call=config.redis.ops_per_call,
        expire_ms=config.redis.expire_after,
    )
    try:
        store.load_script()
    except StateStoreError as exc:
        if not _unreachable(exc):
            raise  # refused credentials or commands: a config to fix
        # The first batch loads it; until Redis answers, the pipeline holds
        # its batch and keeps the consumer in the group (scorer.pipeline).
        log.warning("redis unreachable at start; scoring waits for it: %s", exc)
    scorer = Scorer(config.scoring, store)
    settings = {**output_producer_settings(config), "error_cb": _count_errors(metrics)}

    def make_producer() -> Producer:
        return Producer(settings, logger=client_logger("producer"))

    count_errors, reach = _count_errors(metrics), Reachability()
    silence = BrokerSilence.of(config, metrics)

    def on_consumer_error(error: KafkaError) -> None:
        count_errors(error)
        reach.note(error)

    def make_consumer() -> Consumer:
        return Consumer(
            {
                **consumer_settings(config),
                "error_cb": on_consumer_error,
                "on_commit": CommitFailures(metrics),
                "stats_cb": silence.listener(),
            },
            logger=client_logger("consumer"),
        )

    with settings_checked_by_librdkafka(config.kafka):
        consumer = make_consumer()  # librdkafka checks the settings read below
        rejoin = Rejoin(make_consumer, rejoin_after_s(config), reach)
        return ScorerPipeline(
            config,
            scorer,
            consumer,
            make_producer,
            metrics,
            rejoin=rejoin,
            silence=silence,
        )


def rejoin_after_s(config: Config) -> float:
    """`pipeline.rejoin_after`; by default longer than a rejoin may take.

    Once the brokers answer, a rejoin waits up to session.timeout.ms for the
    broker to expire members that did not come back, then up to
    max.poll.interval.ms (the rebalance timeout) for the others to join.
    """
    if config.pipeline.rejoin_after is not None:
        return config.pipeline.rejoin_after / 1000
    settings = consumer_settings(config)
    session_ms = int(settings["session.timeout.ms"])
    return (session_ms + int(settings["max.poll.interval.ms"])) / 1000


def run(config: Config, stop: threading.Event) -> None:
    """`scorer run`: serve metrics and probes, and score until `stop` is set."""
    metrics = Metrics()
    probes = start_probes(config, metrics, stop)
    announcing = None
    try:
        pipeline = build_pipeline(config, metrics)
        if probes is not None:
            probes.readiness.pipeline = pipeline
        announcing = presence.start(rules_presence(config, metrics))
        tune_garbage_collector()
        pipeline.run(stop)
    finally:
        if announcing is not None:
            announcing.set()
        if probes is not None:
            probes.close()


def rules_presence(config: Config, metrics: Metrics) -> presence.Presence:
    """The look for other rule sets on this instance's key prefix, output and group."""
    rules_version = config.scoring.rules_version

    def group_reader() -> Consumer:
        # Never subscribed, so never in the group: it only reads its offsets.
        settings = {
            **kafka_common(config),
            "group.id": config.kafka.group_id,
            "enable.auto.commit": False,
        }
        return Consumer(settings, logger=client_logger("presence"))

    # One client for both hashes, made at the first look.
    client = functools.cache(functools.partial(redis_client, config))
    topics = config.topics.input_names()
    places: list[presence.Place] = [
        presence.Marks.of_key_prefix(client, config.redis.key_prefix, rules_version),
        presence.Marks.of_output(client, config.topics.output.name, rules_version),
        presence.ConsumerGroup(group_reader, config.kafka.group_id, topics),
    ]
    return presence.Presence(rules_version, places, metrics.other_rules)


def tune_garbage_collector() -> None:
    """Spare the scoring loop most of the collector's work.

    Three batches in flight keep tens of thousands of young objects alive
    (messages, records, outputs); at Python's default threshold of 700 net
    allocations the collector ran 1,400 times in a 100,000-record drain,
    each time walking those live objects: about 15% of the loop's CPU
    (bench/pipeline.py). Nearly all of them are freed by reference counting,
    so a larger threshold leaves little garbage for later. What start-up
    built lives as long as the process; frozen, no collection walks it.
    """
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_OBJECTS, *older)


def start_probes(
    config: Config, metrics: Metrics, stop: threading.Event
) -> ProbeServer | None:
    """/metrics, /healthz and /readyz on `metrics.port`, if one is set."""
    if config.metrics.port is None:
        return None

    readiness = Readiness(
        CachedPing(redis_ping(config)),
        config.metrics.stall_after / 1000,
        stop,
        silent_after_s=config.metrics.silent_after / 1000,
    )

    probes = ProbeServer(
        config.metrics.host, config.metrics.port, metrics.registry, readiness
    )
    probes.start()
    return probes


def redis_ping(config: Config) -> Callable[[], object]:
    """A PING of the probes' own client, made at the first PING that can.

    A cluster client cannot be made while the node of redis.url is down;
    until it can, the PING fails as if Redis did not answer.
    """
    short = config.redis.model_copy(update={"timeout_s": PING_TIMEOUT_S})
    short_config = config.model_copy(update={"redis": short})
    client: redis.Redis | redis.RedisCluster | None = None

    def ping() -> object:
        nonlocal client
        if client is None:
            client = redis_client(short_config)
            # One try: a probe must answer within its own timeout.
            client.set_retry(Retry(NoBackoff(), 0))
        return client.ping()

    return ping


def _unreachable(exc: StateStoreError) -> bool:
    """Redis is down or silent, as opposed to refusing who we are."""
    cause = exc.__cause__
    # A cluster client that reached no node raises the cluster's own error,
    # chained to the node's (RedisClusterUnreachableError in redis-py 8).
    while isinstance(cause, RedisClusterException) and cause.__cause__ is not None:
        cause = cause.__cause__
    refused = isinstance(cause, redis.AuthenticationError | redis.ResponseError)
    away = isinstance(cause, redis.ConnectionError | redis.TimeoutError)
    return away and not refused


def _count_errors(metrics: Metrics) -> Callable[[KafkaError], None]:
    """librdkafka's error callback: count; its own log lines say the rest."""

    def on_error(error: KafkaError) -> None:
        metrics.kafka_errors.labels("client").inc()
        if error.fatal():
            log.error("kafka client fatal error code=%s: %s", error.name(), error.str())
        else:
            log.debug("kafka client error code=%s: %s", error.name(), error.str())

    return on_error
