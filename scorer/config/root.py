"""The whole configuration, one section per concept, as the YAML file holds it."""

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from scorer.config.fields import Frozen
from scorer.config.kafka import Kafka
from scorer.config.redis import Redis
from scorer.config.runtime import Logging, MetricsServer, Pipeline
from scorer.config.schema_registry import SchemaRegistry
from scorer.config.scoring import Scoring
from scorer.config.topics import Topics

# librdkafka's default fetch.wait.max.ms.
FETCH_WAIT_MAX_MS = 500


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

    @field_validator("metrics")
    @classmethod
    def _silence_longer_than_fetches(
        cls, value: MetricsServer, info: ValidationInfo
    ) -> MetricsServer:
        # A healthy broker holds a fetch of a quiet topic for up to
        # fetch.wait.max.ms before it answers (scorer.silence).
        kafka = info.data.get("kafka")
        if not isinstance(kafka, Kafka):
            return value
        wait_ms = _fetch_wait_ms(kafka)
        if wait_ms is not None and value.silent_after <= 2 * wait_ms:
            raise ValueError(
                f"silent_after ({value.silent_after} ms) must exceed twice the "
                f"consumer's fetch.wait.max.ms ({wait_ms} ms): a healthy broker "
                "answers a fetch of a quiet topic only after that wait"
            )
        return value


def _fetch_wait_ms(kafka: Kafka) -> int | None:
    """The consumer's fetch.wait.max.ms; None where librdkafka is to refuse it."""
    given: Any = kafka.consumer_settings.get(
        "fetch.wait.max.ms", kafka.settings.get("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
    )
    try:
        return int(given)
    except (TypeError, ValueError):
        return None
