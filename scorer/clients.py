"""The Kafka and Redis clients as a config sets them up.

Defaults a user may change and the settings the delivery guarantees fix;
librdkafka's refusal of a setting as a config error naming its section;
librdkafka's own log lines, thinned out while a broker is away; and the
Redis client, standalone or cluster, with TLS and credentials.
"""

import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from scorer import logs
from scorer.config import (
    CONSUMER_FIXED,
    PRODUCER_FIXED,
    PRODUCER_RESERVED,
    STATISTICS_INTERVAL_MS,
    Config,
    Kafka,
    RedisTls,
    node_address,
)
from scorer.errors import ConfigError

# Defaults a user's settings may change; the settings the delivery
# guarantees rest on are fixed (scorer.config.CONSUMER_FIXED and friends).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 45_000,
    "max.poll.interval.ms": 300_000,
    # How often metrics.silent_after is judged (scorer.silence).
    "statistics.interval.ms": STATISTICS_INTERVAL_MS,
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
# Immediate retries of a Redis command whose connection broke.
REDIS_RECONNECTS = 1
# librdkafka warnings of a state it retries out of by itself: logged at INFO.
TRANSIENT_CLIENT_WARNINGS = ("Coordinator load in progress",)
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


def client_logger(role: str) -> logging.Logger:
    logger = logging.getLogger(f"scorer.kafka.{role}")
    if not any(isinstance(f, Repeats) for f in logger.filters):
        logger.addFilter(Repeats())
    return logger


class Repeats(logging.Filter):
    """Let one librdkafka line of a kind through per `window_s` seconds.

    While a broker is unreachable, librdkafka logs every failed connection
    attempt: over 20 ERROR lines a second, and as many INFO lines of
    disconnections (a network tester counted 379 in 10 s). A kind is a
    level and a facility (e.g. ERROR FAIL); see `scorer.logs.Repeats`.
    DEBUG lines, asked for with librdkafka's `debug` setting, all pass.
    """

    def __init__(
        self,
        window_s: float = logs.REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.repeats = logs.Repeats(window_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and _is_transient(record):
            record.levelno, record.levelname = logging.INFO, "INFO"
            if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
                return False
        if record.levelno < logging.INFO:
            return True

        # By level too: an ERROR must not be held back by an INFO line.
        note = self.repeats.admit((record.levelno, _facility(record)))
        if note is None:
            return False
        record.msg = f"{record.msg}{note}"
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
