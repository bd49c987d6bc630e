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
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from scorer.config.fields import (
    MAX_DURATION_MS,
    MAX_POINTS,
    MAX_TIMEOUT_S,
    DurationMs,
    EventType,
    Frozen,
    Integer,
    Number,
    Points,
    duration_text,
)
from scorer.config.kafka import (
    CONSUMER_FIXED,
    FREE_FORM_MAPS,
    PRODUCER_FIXED,
    PRODUCER_RESERVED,
    Kafka,
    is_secret_setting,
)
from scorer.config.redis import (
    REDIS_SCHEMES,
    Redis,
    RedisTls,
    node_address,
)
from scorer.config.rules import (
    Cap,
    EngagementRule,
    FitRule,
    Match,
    Range,
)
from scorer.config.runtime import (
    Logging,
    MetricsServer,
    Pipeline,
)
from scorer.config.schema_registry import (
    MAX_REGISTRY_WAIT_S,
    REGISTRY_FIRST_RETRY_DELAY_S,
    REGISTRY_MAX_RETRY_DELAY_S,
    SchemaRegistry,
)
from scorer.config.scoring import (
    MAX_OPEN_WINDOWS,
    MAX_WEIGHT,
    Mql,
    Scoring,
    Total,
)
from scorer.config.topics import (
    TOPIC_NAME_EXPECTED,
    EventTopic,
    Topic,
    TopicName,
    Topics,
    WireFormat,
    topic_name_problem,
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


# A quoted token of a YAML error; punctuation (',', '\t') is shown, words not.
_QUOTED = re.compile(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"")


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
