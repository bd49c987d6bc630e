"""The Schema Registry client's settings, for topics in format confluent_avro,
with the limits that keep a lookup within the consumer's poll interval.
"""

from itertools import islice
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from scorer import backoff
from scorer.config.fields import MAX_TIMEOUT_S, Frozen, Integer, Number

# The schema registry client's waits between tries: doubling from the first
# (a restarting registry answers again within seconds) up to the last.
REGISTRY_FIRST_RETRY_DELAY_S = 0.25
REGISTRY_MAX_RETRY_DELAY_S = 4.0
# A registry lookup runs while a batch is decoded, unpolled: all its tries
# and waits together must end well within max.poll.interval.ms (5 min).
MAX_REGISTRY_WAIT_S = 120


class SchemaRegistry(Frozen):
    """A Confluent-compatible Schema Registry, for topics in format confluent_avro."""

    url: str = Field(
        description="base URL of the REST API: http://host:8081 for Confluent's, "
        "http://host:8080/apis/ccompat/v7 for Apicurio's"
    )
    username: str | None = Field(default=None, description="HTTP basic auth user")
    password: SecretStr | None = Field(default=None, description="its password")
    subject_strategy: Literal["topic", "record", "topic_record"] = Field(
        default="topic",
        description="subject of the output schema: <topic>-value (topic), the "
        "record's full name (record) or <topic>-<full name> (topic_record)",
    )
    auto_register: bool = Field(
        default=True,
        description="register the output schema at start-up; false: look it up "
        "and refuse to start if it is not registered",
    )
    timeout_s: Number = Field(
        default=5.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description=f"per HTTP request, seconds; at most {MAX_TIMEOUT_S}",
    )
    retries: Integer = Field(
        default=4,
        ge=0,
        le=10,
        description="further tries while the registry is unreachable, after "
        "delays doubling from 0.25 s (4: 3.75 s of waiting, plus the timeouts)",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        # Credentials in the URL would end up in log lines and errors.
        if parts.username is not None or parts.password is not None:
            raise ValueError("put credentials in username and password, not the URL")
        if parts.query or parts.fragment:
            raise ValueError("a base URL without ?query or #fragment")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _credentials_pair(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give username and password together, or neither")
        return self

    @model_validator(mode="after")
    def _lookups_end_in_time(self) -> Self:
        longest = self.longest_wait_s()
        if longest > MAX_REGISTRY_WAIT_S:
            raise ValueError(
                f"retries and timeout_s let one lookup hold the consume loop "
                f"{longest:g} s, beyond {MAX_REGISTRY_WAIT_S} s (the consumer "
                "leaves its group after 5 min without a poll); lower either"
            )
        return self

    def longest_wait_s(self) -> float:
        """The longest one request can take: every try timing out, and the
        waits between them."""
        delays = backoff.delays(
            REGISTRY_FIRST_RETRY_DELAY_S, REGISTRY_MAX_RETRY_DELAY_S
        )
        waits = sum(islice(delays, self.retries))
        return (self.retries + 1) * self.timeout_s + waits
