"""How the scorer process runs: the pipeline's batches and transactions, the
HTTP server of metrics and probes, and the log lines.
"""

from typing import Any, Literal

from pydantic import Field, field_validator

from scorer.config.fields import UNIT_MS, DurationMs, Frozen, Integer


class Pipeline(Frozen):
    batch_size: Integer = Field(default=1000, ge=1, le=100_000)
    batch_timeout_ms: Integer = Field(default=50, ge=1, le=60_000)
    batch_bytes: Integer = Field(
        default=16 * 1024 * 1024,
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="a batch takes fewer records than batch_size when records "
        "are large, to hold about this many bytes: three batches are in flight, "
        "each with the dead letters it copies, so this bounds the memory that "
        "large records take (1,000 malformed records of 1 MB once took 1 GB)",
    )
    max_future: DurationMs = Field(default=UNIT_MS["d"], ge=0)
    transactional: bool = Field(
        default=False,
        description="publish each batch's outputs and commit its offsets in one "
        "Kafka transaction: read_committed consumers see no copy made by the "
        "scorer's own retries, crashes or rebalances (an event its producer sent "
        "twice still publishes its outputs twice)",
    )
    transactional_id_prefix: str = Field(
        default="lead-scorer",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="the producer's transactional.id is <prefix>-<instance id>",
    )
    instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="this instance's name, stable across its restarts and unique "
        "among running instances (default: the consumer's group.instance.id, "
        "else the host name)",
    )
    rejoin_after: DurationMs | None = Field(
        default=None,
        gt=0,
        description="an instance that lost its partitions and is given no new "
        "assignment, not even an empty one, for this long replaces its Kafka "
        "consumer: librdkafka's consumer can stay cut off from the group "
        "coordinator after a broker restart. Counted from the loss, or from "
        "the consumer's last report of the brokers out of reach if later "
        "(default: the consumer's session.timeout.ms plus max.poll.interval.ms, "
        "345 s with the defaults, longer than a rejoin may take)",
    )


class MetricsServer(Frozen):
    """The HTTP server of /metrics, /healthz and /readyz."""

    port: Integer | None = Field(
        default=None, ge=0, le=65535, description="no port, no server; 0 picks one"
    )
    host: str = Field(default="127.0.0.1", description="address to listen on")
    stall_after: DurationMs = Field(
        default=60_000,
        gt=0,
        description="/readyz fails when the consume loop has not turned, or a "
        "lagging consumer has committed nothing, for this long",
    )
    silent_after: DurationMs = Field(
        default=15_000,
        gt=0,
        description="/readyz fails when a Kafka broker leading a partition "
        "this instance fetches has answered nothing, not even an empty fetch, "
        "or a batch has waited for the brokers' acks or for Redis, for this long "
        "(scorer.silence; judged every statistics.interval.ms of the "
        "consumer, 3 s by default, at most this long, 0 turns it off); must "
        "exceed twice its fetch.wait.max.ms",
    )


class Logging(Frozen):
    """Log lines on stderr: `text` for people, `json` (one object a line) for tools."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
