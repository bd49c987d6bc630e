"""Wiring of the live service: Kafka clients, Redis, metrics, the pipeline."""

import functools
import gc
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from scorer.assignment import Reachability, Rejoin
from scorer.config import (
    CONSUMER_FIXED,
    PRODUCER_FIXED,
    PRODUCER_RESERVED,
    Config,
    Kafka,
    RedisTls,
    node_address,
)
from scorer.delivery import CommitFailures
from scorer.errors import ConfigError, StateStoreError
from scorer.lead import Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.probes import PING_TIMEOUT_S, CachedPing, ProbeServer, Readiness
from scorer.scoring import Scorer
from scorer.state import RedisStore

log = logging.getLogger(__name__)

# Defaults a user's settings may change; the settings the delivery
# guarantees rest on are fixed (scorer.config.CONSUMER_FIXED and friends).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 45_000,
    "max.poll.interval.ms": 300_000,
}
# murmur2_random places a key where Java's producer and Kafka Streams do
# (librdkafka's own default hashes with CRC32), so the outputs are
# co-partitioned with a Java client's topics keyed by lead id.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "partitioner": "murmur2_random",
}
# The pipeline's delivery acts on failures only (flush() tells when all are
# done); a report per acknowledged output cost a Python call and object each.
# (`scorer produce` counts acknowledged records, so it keeps every report.)
OUTPUT_PRODUCER_DEFAULTS: dict[str, Any] = {"delivery.report.only.error": True}
# Net allocations between two collections of the youngest generation; above
# what the batches in flight hold (see tune_garbage_collector).
GC_YOUNG_OBJECTS = 20_000
# Immediate retries of a Redis command whose connection broke.
REDIS_RECONNECTS = 1
# librdkafka warnings of a state it retries out of by itself: logged at INFO.
TRANSIENT_CLIENT_WARNINGS = ("Coordinator load in progress",)
# A librdkafka warning repeated within this many seconds is counted, not logged.
REPEAT_WINDOW_S = 30.0
# librdkafka quotes the setting it refuses after "property" ('No such
# configuration property: "x"', 'Invalid value "v" for configuration
# property "x"'), and the value after "value".
_REFUSED_PROPERTY = re.compile(r'property:? "([^"]+)"')
_REFUSED_VALUE = re.compile(r'value "[^"]*"')


def kafka_common(config: Config) -> dict[str, Any]:
    settings: dict[str, Any] = {"bootstrap.servers": config.kafka.bootstrap_servers}
    settings.update(config.kafka.settings)
    for name, secret in config.kafka.secrets.items():
        settings[name] = secret.get_secret_value()
    return settings


def consumer_settings(config: Config) -> dict[str, Any]:
    settings = {**CONSUMER_DEFAULTS, **kafka_common(config)}
    settings["group.id"] = config.kafka.group_id
    settings.update(config.kafka.consumer_settings)
    return _fixed(settings, CONSUMER_FIXED, "kafka.consumer_settings")


def producer_settings(config: Config) -> dict[str, Any]:
    settings = {**PRODUCER_DEFAULTS, **kafka_common(config)}
    settings.update(config.kafka.producer_settings)
    for name in PRODUCER_RESERVED:
        if name in settings:
            raise ConfigError(
                f"kafka.producer_settings.{name}",
                "set pipeline.transactional (and its prefix) instead",
            )
    return _fixed(settings, PRODUCER_FIXED, "kafka.producer_settings")


def output_producer_settings(config: Config) -> dict[str, Any]:
    """The settings of the pipeline's producer: transactional if configured."""
    settings = {**OUTPUT_PRODUCER_DEFAULTS, **producer_settings(config)}
    if config.pipeline.transactional:
        settings["transactional.id"] = transactional_id(config)
    return settings


def transactional_id(config: Config) -> str:
    """`<prefix>-<instance>`: stable per instance, unique among instances.

    Stable, so that a restarted instance fences its previous life and aborts
    the transaction it left open at once (instead of after
    transaction.timeout.ms, with read_committed consumers stuck behind it).
    One id per instance, not per input partition, is enough since KIP-447:
    the consumer group's metadata sent with the offsets fences an instance
    that lost its partitions.
    """
    pipeline, kafka = config.pipeline, config.kafka
    # The consumer takes group.instance.id from either settings (the
    # consumer's win); SCORER_RDKAFKA_GROUP_INSTANCE_ID lands in `settings`.
    instance = (
        pipeline.instance_id
        or kafka.consumer_settings.get("group.instance.id")
        or kafka.settings.get("group.instance.id")
        or socket.gethostname()
    )
    return f"{pipeline.transactional_id_prefix}-{instance}"


def redis_client(config: Config) -> "redis.Redis | redis.RedisCluster":
    cluster = config.redis.cluster
    options: dict[str, Any] = {
        "socket_timeout": config.redis.timeout_s,
        "socket_connect_timeout": config.redis.timeout_s,
        # One quick reconnect for a connection that broke (a restarted
        # server); longer outages are the pipeline's to wait out while it
        # keeps the consumer alive. redis-py's default would sleep through
        # four timeouts and backoffs, and retry timeouts too. RedisCluster
        # retries timeouts whatever the Retry's errors say (its loops check
        # RedisCluster.ERRORS_ALLOW_RETRY), so a cluster call gets no retry:
        # each would wait out another timeout.
        "retry": Retry(
            NoBackoff(),
            0 if cluster else REDIS_RECONNECTS,
            (redis.ConnectionError,),
        ),
    }
    if config.redis.username:
        options["username"] = config.redis.username
    if config.redis.password is not None:
        options["password"] = config.redis.password.get_secret_value()
    if config.redis.tls is not None:
        options.update(redis_tls_options(config.redis.tls))
    if cluster:
        # redis-py asks these and the url's node for the slot map. Its
        # ClusterNode is untyped (no-untyped-call).
        nodes = [
            ClusterNode(*node_address(a))  # type: ignore[no-untyped-call]
            for a in config.redis.cluster_nodes
        ]
        return redis.RedisCluster.from_url(
            config.redis.url, startup_nodes=nodes, **options
        )
    return redis.Redis.from_url(config.redis.url, **options)


def redis_tls_options(tls: RedisTls) -> dict[str, Any]:
    """redis-py's arguments for `redis.tls` (the rediss:// scheme turns TLS on)."""
    files = {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
    }
    options: dict[str, Any] = {k: str(v) for k, v in files.items() if v is not None}
    options["ssl_check_hostname"] = tls.check_hostname
    return options


def build_pipeline(config: Config, metrics: Metrics | None = None) -> ScorerPipeline:
    """Connect everything the live scorer needs; nothing is consumed yet."""
    metrics = metrics if metrics is not None else Metrics()
    store = RedisStore(
        functools.partial(redis_client, config),
        Params.of(config.scoring),
        key_prefix=config.redis.key_prefix,
        ops_per_call=config.redis.ops_per_call,
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

    def on_consumer_error(error: KafkaError) -> None:
        count_errors(error)
        reach.note(error)

    def make_consumer() -> Consumer:
        return Consumer(
            {
                **consumer_settings(config),
                "error_cb": on_consumer_error,
                "on_commit": CommitFailures(metrics),
            },
            logger=client_logger("consumer"),
        )

    with settings_checked_by_librdkafka(config.kafka):
        consumer = make_consumer()  # librdkafka checks the settings read below
        rejoin = Rejoin(make_consumer, rejoin_after_s(config), reach)
        return ScorerPipeline(
            config, scorer, consumer, make_producer, metrics, rejoin=rejoin
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


@contextmanager
def settings_checked_by_librdkafka(kafka: Kafka) -> Iterator[None]:
    """A Kafka client librdkafka refuses to make is a config error, not a crash.

    Setting names are librdkafka's own, checked only when a client is made:
    `socket_timeout_ms` for socket.timeout.ms passed check-config and then
    ended `scorer run` in a traceback. The error names the section of
    `kafka` that holds the setting.
    """
    try:
        yield
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() != KafkaError._INVALID_ARG:
            raise
        raise librdkafka_refusal(kafka, error.str()) from exc


def librdkafka_refusal(kafka: Kafka, text: str) -> ConfigError:
    """librdkafka's refusal, blamed on the section that holds the setting.

    A value is shown only from a plain section: librdkafka quotes it
    (`Invalid value "..." for configuration property "..."`), and in
    `secrets`, or under a name not found (an alias), it may be a credential.
    """
    section = _section_holding(kafka, _refused_names(kafka, text))
    if section in (None, "secrets"):
        text = _REFUSED_VALUE.sub("value", text)
    field = "kafka" if section is None else f"kafka.{section}"
    return ConfigError(field, f"librdkafka: {text}")


def _refused_names(kafka: Kafka, text: str) -> list[str]:
    """The settings librdkafka's message names: the quoted one, else any given.

    Not every message quotes it: 'ssl.ca.location failed: ...' names it bare.
    """
    named = _REFUSED_PROPERTY.search(text)
    if named is not None:
        canonical = named.group(1)
        return [canonical, *_ALIASES_OF.get(canonical, ())]
    given = [*kafka.settings, *kafka.consumer_settings, *kafka.producer_settings]
    given += kafka.secrets
    return [name for name in given if _bare_name(name).search(text)]


# librdkafka names a setting given by an alias by its canonical name
# (linger.ms is refused as "queue.buffering.max.ms"): the aliases to look
# for in the config, by canonical name.
_ALIASES_OF = {
    "queue.buffering.max.ms": ("linger.ms",),
    "message.send.max.retries": ("retries",),
    "request.required.acks": ("acks",),
    "compression.codec": ("compression.type",),
    "max.in.flight.requests.per.connection": ("max.in.flight",),
    "message.timeout.ms": ("delivery.timeout.ms",),
    "metadata.broker.list": ("bootstrap.servers",),
    "sasl.mechanisms": ("sasl.mechanism",),
}


def _bare_name(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")


def _section_holding(kafka: Kafka, names: list[str]) -> str | None:
    """The section of `kafka` that sets one of `names`, most specific first."""
    for section in ("consumer_settings", "producer_settings", "secrets", "settings"):
        if any(name in getattr(kafka, section) for name in names):
            return section
    return None


def run(config: Config, stop: threading.Event) -> None:
    """`scorer run`: serve metrics and probes, and score until `stop` is set."""
    metrics = Metrics()
    probes = start_probes(config, metrics, stop)
    try:
        pipeline = build_pipeline(config, metrics)
        if probes is not None:
            probes.readiness.pipeline = pipeline
        tune_garbage_collector()
        pipeline.run(stop)
    finally:
        if probes is not None:
            probes.close()


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
        CachedPing(redis_ping(config)), config.metrics.stall_after / 1000, stop
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


def _fixed(
    settings: dict[str, Any], fixed: dict[str, Any], where: str
) -> dict[str, Any]:
    for name, value in fixed.items():
        given = settings.get(name, value)
        if str(given).lower() != str(value).lower():
            raise ConfigError(
                f"{where}.{name}", f"must stay {value}: delivery guarantees need it"
            )
        settings[name] = value
    return settings


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


def client_logger(role: str) -> logging.Logger:
    logger = logging.getLogger(f"scorer.kafka.{role}")
    if not any(isinstance(f, Repeats) for f in logger.filters):
        logger.addFilter(Repeats())
    return logger


class Repeats(logging.Filter):
    """Let one librdkafka warning of a kind through per `window_s` seconds.

    While a broker is unreachable, librdkafka logs every failed connection
    attempt: over 20 ERROR lines a second. The first line of a kind (its
    facility, e.g. FAIL) passes, the next ones within the window are counted,
    and the first one after it says how many were held back. DEBUG and INFO
    lines, asked for, all pass.
    """

    def __init__(
        self,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and _is_transient(record):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        if record.levelno < logging.WARNING:
            return True
        kind = _facility(record)
        now = self.clock()
        if now - self._last.get(kind, -self.window_s) < self.window_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False

        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            text = record.getMessage()
            record.msg = (
                f"{text} ({held} more like it in the last {self.window_s:.0f}s)"
            )
            record.args = ()
        return True


def _args(record: logging.LogRecord) -> tuple[object, ...]:
    return record.args if isinstance(record.args, tuple) else ()


def _is_transient(record: logging.LogRecord) -> bool:
    """A warning librdkafka retries away on its own, e.g. on a fresh broker.

    Every start against a just-started broker logged "Failed to acquire
    idempotence PID ... Coordinator load in progress: retrying" as a WARNING,
    which the README reserves for trouble; it is logged at INFO instead.
    """
    text = record.getMessage()
    return any(part in text for part in TRANSIENT_CLIENT_WARNINGS)


def _facility(record: logging.LogRecord) -> str:
    """librdkafka logs as ('%s [%s] %s', facility, client, text)."""
    args = _args(record)
    return str(args[0]) if args else record.getMessage().split(" ", 1)[0]


def _count_errors(metrics: Metrics) -> Callable[[KafkaError], None]:
    """librdkafka's error callback: count; its own log lines say the rest."""

    def on_error(error: KafkaError) -> None:
        metrics.kafka_errors.labels("client").inc()
        if error.fatal():
            log.error("kafka client fatal error code=%s: %s", error.name(), error.str())
        else:
            log.debug("kafka client error code=%s: %s", error.name(), error.str())

    return on_error
