"""The whole configuration, one section per concept, as the YAML file holds it."""

import re
from typing import Any, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from scorer.config.fields import Frozen, duration_text
from scorer.config.kafka import Kafka
from scorer.config.redis import Redis
from scorer.config.runtime import Logging, MetricsServer, Pipeline
from scorer.config.schema_registry import SchemaRegistry
from scorer.config.scoring import Scoring
from scorer.config.topics import Topics
from scorer.errors import ConfigError

# librdkafka's default fetch.wait.max.ms.
FETCH_WAIT_MAX_MS = 500
# The scorer's (scorer.clients.CONSUMER_DEFAULTS).
STATISTICS_INTERVAL_MS = 3_000
_LEADING_INTEGER = re.compile(r"\s*[+-]?\d+")


class Config(Frozen):
    scoring: Scoring
    kafka: Kafka = Kafka()
    redis: Redis = Redis()
    topics: Topics
    pipeline: Pipeline = Pipeline()
    metrics: MetricsServer = MetricsServer()
    logging: Logging = Logging()
    schema_registry: SchemaRegistry | None = Field(
        default=None,
        validate_default=True,
        description="required when a topic's format is confluent_avro",
    )

    @field_validator("schema_registry")
    @classmethod
    def _registry_when_used(
        cls, value: SchemaRegistry | None, info: ValidationInfo
    ) -> SchemaRegistry | None:
        # Fields validate in order, so `topics` is in info.data if it was valid.
        topics = info.data.get("topics")
        if value is None and isinstance(topics, Topics):
            users = topics.named_with("confluent_avro")
            if users:
                raise ValueError(
                    f"required: topic {users[0]} has format confluent_avro"
                )
        return value

    @model_validator(mode="after")
    def _expiry_after_dedupe(self) -> Self:
        # A lead's remembered event ids go with its keys: expired sooner, a
        # repeat within the horizon would be scored again. Raised as a
        # ConfigError, which pydantic lets through, so that it names the
        # field itself, not the section (whose url a flag may have set).
        expire_after = self.redis.expire_after
        horizon = self.scoring.dedupe_horizon
        if expire_after is not None and expire_after < horizon:
            raise ConfigError(
                "redis.expire_after",
                f"{duration_text(expire_after)} is shorter than "
                f"scoring.dedupe_horizon ({duration_text(horizon)}): a lead's "
                "remembered event ids expire with it",
            )
        return self

    @model_validator(mode="after")
    def _silence_judged_in_time(self) -> Self:
        # A healthy broker holds a fetch of a quiet topic for up to
        # fetch.wait.max.ms before it answers, and the silence is judged
        # from statistics every statistics.interval.ms (scorer.silence).
        # A ConfigError, as above: a flag such as --metrics-port sets the
        # section, not this field.
        silent_after = self.metrics.silent_after
        shown = duration_text(silent_after)
        wait_ms = consumer_setting_ms(
            self.kafka, "fetch.wait.max.ms", FETCH_WAIT_MAX_MS
        )
        if wait_ms is not None and silent_after <= 2 * wait_ms:
            raise ConfigError(
                "metrics.silent_after",
                f"{shown} must exceed twice the consumer's fetch.wait.max.ms "
                f"({wait_ms} ms): a healthy broker answers a fetch of a quiet "
                "topic only after that wait",
            )
        every_ms = consumer_setting_ms(
            self.kafka, "statistics.interval.ms", STATISTICS_INTERVAL_MS
        )
        if every_ms is not None and every_ms > silent_after:
            raise ConfigError(
                "metrics.silent_after",
                f"{shown} is judged every statistics.interval.ms of the "
                f"consumer ({every_ms} ms): set that below silent_after, or "
                "to 0 to judge no silence",
            )
        return self


def consumer_setting_ms(kafka: Kafka, name: str, default: int) -> int | None:
    """A consumer's librdkafka setting of milliseconds, as librdkafka reads it.

    librdkafka reads the leading digits of a text ("20000ms" is 20000);
    None where it is to refuse the value.
    """
    given: Any = kafka.consumer_settings.get(name, kafka.settings.get(name, default))
    if isinstance(given, bool):
        return None
    digits = _LEADING_INTEGER.match(str(given))
    return int(digits.group(0)) if digits else None
