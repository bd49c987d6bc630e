"""The scorer's configuration: scoring rules and service settings.

One YAML file holds both. It is validated by frozen pydantic models; any
invalid value stops start-up with an error naming the field by its dotted
path (``scoring.mql.threshold``). Environment variables override the file
(see `load_config`).
"""

import logging
import os
import re
from collections.abc import Hashable, Mapping
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scorer import backoff
from scorer.config.fields import (
    MAX_DURATION_MS,
    MAX_POINTS,
    MAX_TIMEOUT_S,
    UNIT_MS,
    DurationMs,
    EventType,
    Frozen,
    Integer,
    Number,
    Points,
    duration_text,
)
from scorer.config.rules import (
    Cap,
    EngagementRule,
    FitRule,
    Match,
    Range,
)
from scorer.config.scoring import (
    MAX_OPEN_WINDOWS,
    MAX_WEIGHT,
    Mql,
    Scoring,
    Total,
)
from scorer.errors import ConfigError

__all__ = [
    "CONSUMER_FIXED",
    "ENV_PREFIX",
    "FREE_FORM_MAPS",
    "MAX_DURATION_MS",
    "MAX_OPEN_WINDOWS",
    "MAX_POINTS",
    "MAX_REGISTRY_WAIT_S",
    "MAX_TIMEOUT_S",
    "MAX_WEIGHT",
    "PRODUCER_FIXED",
    "PRODUCER_RESERVED",
    "RDKAFKA_ENV_PREFIX",
    "REDIS_SCHEMES",
    "REGISTRY_FIRST_RETRY_DELAY_S",
    "REGISTRY_MAX_RETRY_DELAY_S",
    "TOPIC_NAME_EXPECTED",
    "Cap",
    "Config",
    "DurationMs",
    "EngagementRule",
    "EventTopic",
    "EventType",
    "FitRule",
    "Frozen",
    "Integer",
    "Kafka",
    "Logging",
    "Match",
    "MetricsServer",
    "Mql",
    "Number",
    "Pipeline",
    "Points",
    "Range",
    "Redis",
    "RedisTls",
    "SchemaRegistry",
    "Scoring",
    "Topic",
    "TopicName",
    "Topics",
    "Total",
    "WireFormat",
    "default_config_path",
    "describe_errors",
    "duration_text",
    "is_secret_setting",
    "load_config",
    "node_address",
    "parse_config",
    "split_dotted",
    "topic_name_problem",
    "unread_variables",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "SCORER_"
RDKAFKA_ENV_PREFIX = "SCORER_RDKAFKA_"
# Settings whose keys are librdkafka's dotted names, not further levels.
FREE_FORM_MAPS = frozenset(
    {
        ("kafka", "settings"),
        ("kafka", "consumer_settings"),
        ("kafka", "producer_settings"),
        ("kafka", "secrets"),
    }
)


# The schema registry client's waits between tries: doubling from the first
# (a restarting registry answers again within seconds) up to the last.
REGISTRY_FIRST_RETRY_DELAY_S = 0.25
REGISTRY_MAX_RETRY_DELAY_S = 4.0
# A registry lookup runs while a batch is decoded, unpolled: all its tries
# and waits together must end well within max.poll.interval.ms (5 min).
MAX_REGISTRY_WAIT_S = 120
# librdkafka settings that hold credentials (sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, an inline private key, ...).
_SECRET_SETTING = re.compile(
    r"password|secret|^ssl\.key\.pem$|^sasl\.oauthbearer\.config$"
)
# A quoted token of a YAML error; punctuation (',', '\t') is shown, words not.
_QUOTED = re.compile(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def is_secret_setting(name: str) -> bool:
    """Whether a librdkafka setting holds a credential, kept out of every output."""
    return _SECRET_SETTING.search(name.lower()) is not None


WireFormat = Literal["avro", "json", "confluent_avro"]
# Kafka's rule for topic names (org.apache.kafka.common.internals.Topic):
# the broker refuses any other, after the scorer has written to Redis.
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
TOPIC_NAME_EXPECTED = "1 to 249 letters, digits, '.', '_' or '-', not '.' or '..'"


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse `name` as a topic name, or None."""
    if _TOPIC_NAME.fullmatch(name) and name not in (".", ".."):
        return None
    return f"not a Kafka topic name: use {TOPIC_NAME_EXPECTED}"


def _topic_name(value: str) -> str:
    problem = topic_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]


class Topic(Frozen):
    name: TopicName
    format: WireFormat = Field(
        default="avro",
        description="avro (single-object encoding), json, or confluent_avro "
        "(Schema Registry framing; needs schema_registry)",
    )


class EventTopic(Topic):
    types: tuple[EventType, ...] = Field(
        default=(),
        description="the event types this topic carries; `scorer produce` routes "
        "records of these types to it (the scorer reads any type on any topic)",
    )


class Topics(Frozen):
    events: tuple[EventTopic, ...] = Field(min_length=1)
    firmographics: Topic | None = None
    output: Topic
    dead_letter: TopicName

    @model_validator(mode="after")
    def _apart(self) -> Self:
        """Inputs, outputs and dead letters on distinct topics.

        A dead-letter topic that is also an input would consume its own dead
        letters again, for ever; an output topic that is an input would score
        the scorer's outputs.
        """
        inputs = [t.name for t in (*self.events, self.firmographics) if t]
        twice = sorted({name for name in inputs if inputs.count(name) > 1})
        if twice:
            raise ValueError(f"input topics named twice: {', '.join(twice)}")
        if self.output.name in inputs:
            raise ValueError(f"output {self.output.name!r} is also an input topic")
        if self.dead_letter in inputs:
            raise ValueError(f"dead_letter {self.dead_letter!r} is also an input topic")
        if self.dead_letter == self.output.name:
            raise ValueError(f"dead_letter {self.dead_letter!r} is also the output")
        self._one_topic_per_type()
        return self

    def _one_topic_per_type(self) -> None:
        """A record's type names one topic, or `scorer produce` cannot choose."""
        for topic in self.events:
            listed = [kind for kind in topic.types if topic.types.count(kind) > 1]
            if listed:
                raise ValueError(f"{topic.name} lists {listed[0]} twice in types")
        carried = [kind for topic in self.events for kind in topic.types]
        twice = sorted({kind for kind in carried if carried.count(kind) > 1})
        if twice:
            raise ValueError(f"types carried by two event topics: {', '.join(twice)}")

    def named_with(self, fmt: WireFormat) -> list[str]:
        """The names of the topics in wire format `fmt`, inputs first."""
        every = [*self.events, self.firmographics, self.output]
        return [t.name for t in every if t is not None and t.format == fmt]


# librdkafka settings the delivery guarantees rest on (see scorer.delivery):
# offsets are stored by hand after the outputs are acknowledged, and the
# producer retries without duplicates or reordering.
CONSUMER_FIXED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
PRODUCER_FIXED: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
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
        # message, which would be read as "name: problem" (_where_and_what).
        if isinstance(value, dict):
            return value
        raise ValueError(
            "a mapping of librdkafka names to values; from the command line "
            "or the environment, give one at a time (--set "
            "kafka.secrets.sasl.password=VALUE, SCORER_RDKAFKA_SASL_PASSWORD=VALUE)"
        )

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


class RedisTls(Frozen):
    """TLS to Redis: with a rediss:// url, certificates other than the system's."""

    ca_file: FilePath | None = Field(
        default=None, description="CA certificates (PEM) to check the server by"
    )
    cert_file: FilePath | None = Field(
        default=None, description="client certificate (PEM), if the server asks"
    )
    key_file: FilePath | None = Field(
        default=None, description="private key (PEM) of cert_file"
    )
    check_hostname: bool = Field(
        default=True, description="the server's certificate must name the url's host"
    )

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together")
        return self


class Redis(Frozen):
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS) or unix://; a user name and "
        "password in it move to `username` and `password`",
    )
    username: str | None = Field(default=None, description="ACL user")
    password: SecretStr | None = None
    tls: RedisTls | None = Field(default=None, description="needs a rediss:// url")
    cluster: bool = False
    cluster_nodes: tuple[str, ...] = Field(
        default=(),
        description="with cluster: more nodes, as host:port, that tell the "
        "cluster's layout when the url's node does not answer",
    )
    key_prefix: str = Field(default="scorer", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    timeout_s: Number = Field(
        default=5.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="socket timeout of each Redis call, seconds; at most "
        f"{MAX_TIMEOUT_S}",
    )
    ops_per_call: Integer = Field(
        default=64,
        ge=1,
        le=1000,
        description="score updates per Lua script call (a lead's updates of "
        "a batch are never split, so a call may carry more)",
    )

    @model_validator(mode="before")
    @classmethod
    def _credentials_apart(cls, data: Any) -> Any:
        """Take the user name and password out of the url, so it can be shown."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        parts = urlsplit(data["url"])
        if parts.username is None and parts.password is None:
            return data

        moved = {"username": parts.username or None, "password": parts.password}
        given = sorted(k for k, v in moved.items() if v and data.get(k) is not None)
        if given:
            raise ValueError(f"url and {' and '.join(given)} both give the {given[0]}")
        host = parts.netloc.rpartition("@")[2]
        plain = {k: unquote(v) for k, v in moved.items() if v}
        return {**data, **plain, "url": parts._replace(netloc=host).geturl()}

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        # The message leaves the url out: it may hold a password.
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError("use a redis://, rediss:// or unix:// url")
        try:
            parts.port  # noqa: B018 - urllib checks the port when it is read
        except ValueError:
            raise ValueError("the url's port is not a number from 0 to 65535") from None
        return value

    @field_validator("cluster_nodes")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The message leaves the address out: a mistaken one may hold a
        # password (user:pw@host:port).
        for number, address in enumerate(value, 1):
            try:
                node_address(address)
            except ValueError as exc:
                raise ValueError(f"item {number}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_scheme(self) -> Self:
        if self.tls is not None and urlsplit(self.url).scheme != "rediss":
            raise ValueError("tls needs a rediss:// url")
        return self

    @model_validator(mode="after")
    def _nodes_of_a_cluster(self) -> Self:
        if self.cluster_nodes and not self.cluster:
            raise ValueError("cluster_nodes needs cluster: true")
        return self


def node_address(address: str) -> tuple[str, int]:
    """`host:port` (an IPv6 host in brackets) as its host and port."""
    parts = urlsplit(f"//{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port or not parts.hostname or parts.netloc != address or "@" in address:
        raise ValueError("give host:port, with a port from 1 to 65535")
    return parts.hostname, port


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
        "Kafka transaction: read_committed consumers see every output once",
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


class Logging(Frozen):
    """Log lines on stderr: `text` for people, `json` (one object a line) for tools."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


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


def default_config_path() -> Path:
    return Path(str(resources.files("scorer") / "default.yaml"))


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Read a config file (or the packaged default), apply overrides, validate.

    Precedence, lowest first: the file, environment variables, `overrides`
    (the command line's flags). ``SCORER_KAFKA__BOOTSTRAP_SERVERS=h:9092``
    sets ``kafka.bootstrap_servers`` (``__`` separates levels; the value is
    read as YAML), and ``SCORER_RDKAFKA_SASL_MECHANISM=PLAIN`` sets the
    librdkafka setting ``sasl.mechanism`` (``_`` stands for ``.``).
    `overrides` maps dotted paths to YAML values:
    ``{"kafka.settings.socket.timeout.ms": "5000"}``.
    """
    raw = _read_yaml(path or default_config_path())
    environ = os.environ if environ is None else environ
    for name in unread_variables(environ):
        log.warning(
            "environment variable %s is not read: a section and its field are "
            "separated by __ (%s)",
            name,
            with_double_underscore(name),
        )
    sources = apply_environment(raw, environ)
    for dotted, value in (overrides or {}).items():
        keys = split_dotted(dotted)
        set_path(raw, keys, environment_value(keys, value))
        sources[".".join(keys)] = "the command line"
    _refuse_list_items(sources)
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise _with_sources(exc, sources) from exc.__cause__


def _refuse_list_items(sources: Mapping[str, str]) -> None:
    """A path through a list (`topics.events.0.format`) sets nothing.

    It would become a mapping keyed "0" in place of the list, refused as
    "Input should be a valid tuple", which does not say what to do instead.
    """
    for dotted, source in sources.items():
        if dotted.startswith("kafka."):
            continue  # librdkafka names are dotted, and never a bare number
        keys = dotted.split(".")
        at = next((i for i, key in enumerate(keys) if key.isdigit()), None)
        if at is None:
            continue
        whole = ".".join(keys[:at])
        message = (
            f"a list item has no path of its own; set the whole list {whole} "
            f"as YAML (from {source})"
        )
        raise ConfigError(dotted, message)


def _with_sources(exc: ConfigError, sources: Mapping[str, str]) -> ConfigError:
    """Say which variable or flag set a bad value: the file may not hold it."""

    def source_of(field: str) -> str | None:
        for dotted, source in sources.items():
            # Either way round: an unknown section is named by its own
            # name ("mql") although its variable set a field below it.
            if field == dotted or field.startswith(f"{dotted}."):
                return source
            if dotted.startswith(f"{field}."):
                return source
        return None

    def annotate(field: str, message: str) -> str:
        source = source_of(field)
        return f"{message} (from {source})" if source else message

    details = []
    for line in exc.details:
        field, _, message = line.partition(": ")
        details.append(f"{field}: {annotate(field, message)}")
    return ConfigError(exc.field, annotate(exc.field, exc.message), details)


def split_dotted(dotted: str) -> list[str]:
    """`kafka.settings.socket.timeout.ms` as a path: librdkafka names keep dots."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(dotted, "not a dotted path such as kafka.group_id")
    if len(parts) > 2 and tuple(parts[:2]) in FREE_FORM_MAPS:
        return [*parts[:2], ".".join(parts[2:])]
    return parts


def parse_config(raw: Mapping[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise first_error(exc) from exc


def describe_errors(exc: ValidationError) -> list[str]:
    """Every problem of a failed validation as 'dotted.field: message'."""
    return [": ".join(_where_and_what(err)) for err in _errors(exc)]


def first_error(exc: ValidationError) -> ConfigError:
    where, what = _where_and_what(_errors(exc)[0])
    return ConfigError(where, what, describe_errors(exc))


def _errors(exc: ValidationError) -> list[Any]:
    """The errors, less a list's "too short" caused by its own bad items.

    pydantic counts only the valid items of a list against its minimum, so
    one bad rule also said "Tuple should have at least 1 item ... not 0".
    """
    errors = exc.errors()
    return [
        err
        for err in errors
        if not (err["type"] == "too_short" and _has_items_below(err["loc"], errors))
    ] or errors


def _has_items_below(loc: tuple[Any, ...], errors: list[Any]) -> bool:
    depth = len(loc)
    return any(len(e["loc"]) > depth and e["loc"][:depth] == loc for e in errors)


def _where_and_what(err: Mapping[str, Any]) -> tuple[str, str]:
    """The field and the message; a librdkafka setting's name goes to the field.

    The validators of the free-form maps say 'name: problem', since pydantic
    locates their errors at the map.
    """
    where, what = _location(err["loc"]), _message(err)
    if tuple(str(part) for part in err["loc"]) in FREE_FORM_MAPS and ": " in what:
        name, what = what.split(": ", 1)
        where = f"{where}.{name}"
    return where, what


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("function-after",)]
    return ".".join(parts) or "(top level)"


def _message(err: Mapping[str, Any]) -> str:
    # pydantic speaks of Python's types; a config is written in YAML.
    kind, context = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("tuple_type", "list_type"):
        return "must be a list (YAML: one '- item' per line, or [a, b])"
    if kind in ("model_type", "dict_type"):
        # pydantic would name a class of ours ("instance of MetricsServer").
        # No ": " in it, which would be read as "name: problem" (see above).
        return "must be a mapping of keys to values, not a single value or a list"
    if kind == "too_short" and isinstance(context.get("min_length"), int):
        return f"must hold at least {_items(context['min_length'])}"
    if kind == "too_long" and isinstance(context.get("max_length"), int):
        return f"must hold at most {_items(context['max_length'])}"
    return str(err["msg"]).removeprefix("Value error, ")


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}"
        raise ConfigError("(file)", f"{path} is not UTF-8 text ({where})") from exc
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigError("(file)", f"{path} is not valid YAML: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("(file)", f"{path} must hold a mapping at the top level")
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    Two `mql:` blocks would otherwise be read as the last one alone.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # PyYAML's own check says what is wrong with it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's quote of the line (a secret?)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return type(exc).__name__
    mark = exc.problem_mark
    # A problem may quote a token too ("found undefined alias 'x'").
    problem = _QUOTED.sub("'...'", exc.problem or "syntax error")
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def unread_variables(environ: Mapping[str, str]) -> list[str]:
    """SCORER_ variables that look meant for a section but lack its `__`.

    SCORER_PIPELINE_BATCH_SIZE was ignored without a word: a typo that
    leaves a setting at its default. Only names that start with a section
    count; other SCORER_ variables (SCORER_DATA, those Kubernetes makes of
    a Service's name) are none of the config's business, so this warns
    instead of stopping.
    """
    return [name for name in sorted(environ) if _meant_section(name) is not None]


def _meant_section(name: str) -> str | None:
    """The section a SCORER_ variable without `__` starts with, if any."""
    rest = name.removeprefix(ENV_PREFIX)
    if rest == name or "__" in rest or name.startswith(RDKAFKA_ENV_PREFIX):
        return None
    # Longest first: SCHEMA_REGISTRY_URL is the section SCHEMA_REGISTRY's.
    sections = sorted((n.upper() for n in Config.model_fields), key=len, reverse=True)
    return next((s for s in sections if rest == s or rest.startswith(f"{s}_")), None)


def with_double_underscore(name: str) -> str:
    section = _meant_section(name)
    assert section is not None, "only for the names unread_variables lists"
    rest = name.removeprefix(ENV_PREFIX)
    if rest == section:
        return f"set its fields, e.g. {name}__<FIELD>"
    fields = rest[len(f"{section}_") :]
    model = Config.model_fields[section.lower()].annotation
    path = _field_path(model, fields) or [fields]
    return f"did you mean {ENV_PREFIX}{section}__{'__'.join(path)}?"


def _field_path(model: Any, words: str) -> list[str] | None:
    """`words` (FIELD_SUBFIELD) split into the nested fields of `model`.

    SCORER_SCORING_MQL_THRESHOLD means scoring.mql.threshold, whose
    variable is SCORER_SCORING__MQL__THRESHOLD. None when no split fits.
    """
    # An optional section (`tls: RedisTls | None`) is its model's.
    models = [m for m in (model, *get_args(model)) if _is_model(m)]
    if not models:
        return None
    for name, field in models[0].model_fields.items():
        upper = name.upper()
        if words == upper:
            return [upper]
        if words.startswith(f"{upper}_"):
            rest = _field_path(field.annotation, words[len(upper) + 1 :])
            if rest is not None:
                return [upper, *rest]
    return None


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Set what the environment gives; returns each dotted path's variable."""
    sources: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if name.startswith(RDKAFKA_ENV_PREFIX):
            setting = name.removeprefix(RDKAFKA_ENV_PREFIX).lower().replace("_", ".")
            if not setting.strip("."):
                raise ConfigError(name, "names no librdkafka setting")
            section = "secrets" if is_secret_setting(setting) else "settings"
            path = ["kafka", section, setting]
            set_path(raw, path, value)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = name.removeprefix(ENV_PREFIX).lower().split("__")
            set_path(raw, path, environment_value(path, value))
        else:
            continue
        sources[".".join(path)] = name
    return sources


def environment_value(path: list[str], text: str) -> Any:
    """A variable's value read as YAML; a credential's verbatim."""
    # As YAML, a password such as 0123 would become a number, and *x fail
    # as an unknown alias.
    if path[:2] == ["kafka", "secrets"] or any(map(is_secret_setting, path)):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # validation then names the field if a string is wrong


def set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value
