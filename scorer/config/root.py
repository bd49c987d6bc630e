"""The whole configuration, one section per concept, as the YAML file holds it."""

from pydantic import Field, ValidationInfo, field_validator

from scorer.config.fields import Frozen
from scorer.config.kafka import Kafka
from scorer.config.redis import Redis
from scorer.config.runtime import Logging, MetricsServer, Pipeline
from scorer.config.schema_registry import SchemaRegistry
from scorer.config.scoring import Scoring
from scorer.config.topics import Topics


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
