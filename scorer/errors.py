"""The package's exception tree.

Every error the scorer raises on purpose derives from `ScorerError`. Errors of
Kafka, Redis and Avro are converted where they enter the package and chained
with ``from exc`` so the original stays visible.
"""


class ScorerError(Exception):
    """Root of every error raised by the scorer."""


class ConfigError(ScorerError):
    """A configuration value is missing or invalid; `field` names it."""

    def __init__(
        self, field: str, message: str, details: list[str] | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.details = details or [f"{field}: {message}"]


class InvalidRecord(ScorerError):
    """A record cannot be scored. It goes to the dead-letter topic.

    `reason` is a short stable code (used as a metric label); `field` names the
    offending field where there is one.
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


class StateStoreError(ScorerError):
    """Redis could not be reached or refused a command."""


class BrokerError(ScorerError):
    """Kafka refused or lost a message the scorer needed delivered."""
