"""Wiring of the live service: Kafka clients, Redis, metrics, the pipeline."""

import logging
import threading
from typing import Any

import redis
from confluent_kafka import Consumer, Producer
from prometheus_client import start_http_server

from scorer.config import Config
from scorer.errors import ConfigError
from scorer.lead import Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.scoring import Scorer
from scorer.state import RedisStore

log = logging.getLogger(__name__)

# Defaults the delivery guarantees rest on; a user's settings may tune the
# rest of librdkafka but not these (see `_fixed`).
CONSUMER_FIXED = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 45_000,
    "max.poll.interval.ms": 300_000,
}
PRODUCER_FIXED = {"enable.idempotence": True, "acks": "all"}
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4"}


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
    return _fixed(settings, PRODUCER_FIXED, "kafka.producer_settings")


def redis_client(config: Config) -> "redis.Redis | redis.RedisCluster":
    options: dict[str, Any] = {
        "socket_timeout": config.redis.timeout_s,
        "socket_connect_timeout": config.redis.timeout_s,
    }
    if config.redis.username:
        options["username"] = config.redis.username
    if config.redis.password is not None:
        options["password"] = config.redis.password.get_secret_value()
    if config.redis.cluster:
        return redis.RedisCluster.from_url(config.redis.url, **options)
    return redis.Redis.from_url(config.redis.url, **options)


def build_pipeline(config: Config, metrics: Metrics | None = None) -> ScorerPipeline:
    """Connect everything the live scorer needs; nothing is consumed yet."""
    metrics = metrics if metrics is not None else Metrics()
    store = RedisStore(
        redis_client(config),
        Params.of(config.scoring),
        key_prefix=config.redis.key_prefix,
        ops_per_call=config.redis.ops_per_call,
    )
    store.load_script()
    scorer = Scorer(config.scoring, store)
    consumer = Consumer(consumer_settings(config), logger=_client_logger("consumer"))
    producer = Producer(producer_settings(config), logger=_client_logger("producer"))
    return ScorerPipeline(config, scorer, consumer, producer, metrics)


def run(config: Config, stop: threading.Event) -> None:
    """`scorer run`: serve metrics and score until `stop` is set."""
    metrics = Metrics()
    if config.metrics.port is not None:
        start_http_server(config.metrics.port, config.metrics.host, metrics.registry)
        log.info("metrics served port=%d", config.metrics.port)
    build_pipeline(config, metrics).run(stop)


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


def _client_logger(role: str) -> logging.Logger:
    return logging.getLogger(f"scorer.kafka.{role}")
