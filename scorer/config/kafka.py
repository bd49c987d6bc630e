"""The Kafka clients' settings: librdkafka's own names, the credentials among
them, and the settings that the delivery guarantees fix.
"""

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from scorer.config.fields import Frozen

# Settings whose keys are librdkafka's dotted names, not further levels.
FREE_FORM_MAPS = frozenset(
    {
        ("kafka", "settings"),
        ("kafka", "consumer_settings"),
        ("kafka", "producer_settings"),
        ("kafka", "secrets"),
    }
)
# librdkafka settings that hold credentials (sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, an inline private key, ...).
_SECRET_SETTING = re.compile(
    r"password|secret|^ssl\.key\.pem$|^sasl\.oauthbearer\.config$"
)


def is_secret_setting(name: str) -> bool:
    """Whether a librdkafka setting holds a credential, kept out of every output."""
    return _SECRET_SETTING.search(name.lower()) is not None


# librdkafka settings the delivery guarantees rest on (see scorer.delivery):
# offsets are stored by hand after the outputs are acknowledged, and the
# producer retries without duplicates or reordering.
CONSUMER_FIXED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
PRODUCER_FIXED: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
# YAML 1.1's words for booleans besides true and false.
BOOLEAN_WORDS = {"yes": True, "on": True, "no": False, "off": False}
# Set from pipeline.transactional and its prefix only.
PRODUCER_RESERVED = ("transactional.id",)


class Kafka(Frozen):
    # librdkafka checks the values of its own settings; refused here, an inf
    # would be reported once per branch of the settings' type union.
    model_config = ConfigDict(allow_inf_nan=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="librdkafka's bootstrap.servers: host:port[,host:port...] of "
        "the brokers; a host without a port is taken as port 9092, librdkafka's "
        "default",
    )
    group_id: str = "lead-scorer"
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka settings, by librdkafka's names, for every client",
    )
    consumer_settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="librdkafka settings for the consumer only"
    )
    producer_settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="librdkafka settings for producers only"
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="librdkafka settings kept out of logs (sasl.password, ...); "
        "credentials given in `settings` land here too",
    )

    @field_validator("bootstrap_servers", "group_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # An empty group id aborts the process inside confluent-kafka; an
        # empty broker list leaves the scorer waiting for ever.
        if not value.strip() or value != value.strip():
            raise ValueError("must not be empty or start or end with a space")
        return value

    @model_validator(mode="before")
    @classmethod
    def _secrets_apart(cls, data: Any) -> Any:
        """Credentials among the plain settings move to `secrets`."""
        if not isinstance(data, dict):
            return data
        for where in ("consumer_settings", "producer_settings"):
            _refuse_secrets(where, data.get(where))

        settings, secrets = data.get("settings"), data.get("secrets") or {}
        if not isinstance(settings, dict) or not isinstance(secrets, dict):
            return data  # the field validation names what is wrong
        moved = {k: v for k, v in settings.items() if is_secret_setting(str(k))}
        if not moved:
            return data

        twice = sorted(set(moved) & set(secrets))
        if twice:
            raise ValueError(f"{', '.join(twice)}: given in settings and in secrets")
        plain = {k: v for k, v in settings.items() if k not in moved}
        return {**data, "settings": plain, "secrets": {**secrets, **moved}}

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_mapping(cls, value: Any) -> Any:
        # A whole map from --set or a variable stays text (credentials are
        # taken verbatim, not read as YAML): say how to give them instead
        # of pydantic's "Input should be a valid dictionary". No ": " in the
        # message, which would be read as "name: problem" (see messages.py).
        if isinstance(value, dict):
            return value
        raise ValueError(
            "a mapping of librdkafka names to values; from the command line "
            "or the environment, give one at a time (--set "
            "kafka.secrets.sasl.password=VALUE, SCORER_RDKAFKA_SASL_PASSWORD=VALUE)"
        )

    @field_validator(
        "settings", "consumer_settings", "producer_settings", mode="before"
    )
    @classmethod
    def _boolean_words(cls, value: Any) -> Any:
        """yes, no, on and off as librdkafka's true and false.

        The config is read as YAML 1.2 (see yaml_syntax), where they are text;
        YAML 1.1 made them booleans, and librdkafka takes only true and false,
        so a map that said `enable.auto.commit: no` keeps its meaning.
        """
        if not isinstance(value, dict):
            return value
        return {name: _boolean_word(setting) for name, setting in value.items()}

    @field_validator("settings")
    @classmethod
    def _common_keeps_guarantees(cls, value: dict[str, Any]) -> dict[str, Any]:
        _keep_fixed(value, {**CONSUMER_FIXED, **PRODUCER_FIXED})
        return value

    @field_validator("consumer_settings")
    @classmethod
    def _consumer_keeps_guarantees(cls, value: dict[str, Any]) -> dict[str, Any]:
        _keep_fixed(value, CONSUMER_FIXED)
        return value

    @field_validator("producer_settings")
    @classmethod
    def _producer_keeps_guarantees(cls, value: dict[str, Any]) -> dict[str, Any]:
        _keep_fixed(value, PRODUCER_FIXED)
        return value


def _boolean_word(value: Any) -> Any:
    if isinstance(value, str):
        return BOOLEAN_WORDS.get(value.lower(), value)
    return value


def _keep_fixed(given: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Refuse a change of a setting the delivery guarantees rest on."""
    for name, value in fixed.items():
        if name in given and str(given[name]).lower() != str(value).lower():
            raise ValueError(f"{name}: must stay {value}: delivery guarantees need it")
    for name in PRODUCER_RESERVED:
        if name in given:
            raise ValueError(f"{name}: set pipeline.transactional (and its prefix)")


def _refuse_secrets(where: str, settings: Any) -> None:
    if not isinstance(settings, dict):
        return
    for name in settings:
        if is_secret_setting(str(name)):
            # One set of credentials serves every client; a per-client copy
            # would sit among the plain settings.
            raise ValueError(f"{where}.{name}: a credential; give it in secrets")
