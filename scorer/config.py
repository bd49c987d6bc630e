"""The scorer's configuration: scoring rules and service settings.

One YAML file holds both. It is validated by frozen pydantic models; any
invalid value stops start-up with an error naming the field by its dotted
path (``scoring.mql.threshold``). Environment variables override the file
(see `load_config`).
"""

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from scorer.errors import ConfigError

ENV_PREFIX = "SCORER_"
RDKAFKA_ENV_PREFIX = "SCORER_RDKAFKA_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS["w"] = 7 * _UNIT_MS["d"]
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _duration_ms(value: Any) -> Any:
    """'90s', '15m', '12h', '7d', '2w' or a number of seconds, as milliseconds."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return int(value * 1000)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError("a duration such as '30s', '15m', '12h', '7d' or '2w'")
        amount, unit = found.groups()
        return int(float(amount) * _UNIT_MS[unit])
    return value


DurationMs = Annotated[int, BeforeValidator(_duration_ms)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cap(Frozen):
    """At most `points` from one rule per clock-aligned window of `window`."""

    points: float = Field(gt=0, description="most points the rule adds per window")
    window: DurationMs = Field(gt=0, description="window length, aligned to UTC")


class Match(Frozen):
    """Which activity events a rule scores. Omitted conditions match anything."""

    type: Literal["page_view", "content_download", "webinar"]
    url_contains: tuple[str, ...] = Field(
        default=(), description="page view: any of these substrings of the URL"
    )
    url_pattern: str | None = Field(
        default=None, description="page view: a regular expression searched in the URL"
    )
    category: tuple[str, ...] = Field(
        default=(), description="page view: the page category is one of these"
    )
    asset_type: tuple[str, ...] = Field(
        default=(), description="content download: the asset type is one of these"
    )
    status: Literal["registered", "attended"] | None = Field(
        default=None, description="webinar: registered or attended"
    )
    min_minutes_watched: float | None = Field(
        default=None, ge=0, description="webinar: watched at least this many minutes"
    )

    @field_validator("url_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _conditions_fit_type(self) -> Self:
        by_type = {
            "page_view": ("url_contains", "url_pattern", "category"),
            "content_download": ("asset_type",),
            "webinar": ("status", "min_minutes_watched"),
        }
        for kind, fields in by_type.items():
            for name in fields:
                if kind != self.type and getattr(self, name) not in (None, ()):
                    raise ValueError(f"{name} applies only to {kind} events")
        return self


class EngagementRule(Frozen):
    """Points for an activity; the first matching rule in the list fires."""

    name: str
    description: str = ""
    match: Match
    points: float = Field(description="points per event; negative lowers the score")
    cap: Cap | None = None
    half_life: DurationMs | None = Field(
        default=None, gt=0, description="overrides scoring.half_life for this rule"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _rule_name(value)

    @field_validator("points")
    @classmethod
    def _points(cls, value: float) -> float:
        if value == 0 or not math.isfinite(value):
            raise ValueError("must be a finite number other than 0")
        return value


class Range(Frozen):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class FitRule(Frozen):
    """Points for one firmographic criterion; every matching rule adds."""

    name: str
    description: str = ""
    field: Literal["employees", "industry", "title", "country", "company"]
    range: Range | None = Field(default=None, description="employees: min..max")
    any_of: tuple[str, ...] = Field(
        default=(), description="text equals one of these (case and spaces ignored)"
    )
    pattern: str | None = Field(
        default=None, description="a regular expression searched in the text"
    )
    points: float

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _rule_name(value)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return Match._compiles(value)

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        given = [self.range is not None, bool(self.any_of), self.pattern is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of range, any_of, pattern")
        if (self.range is not None) != (self.field == "employees"):
            raise ValueError("range applies to employees, and employees needs range")
        return self


class Total(Frozen):
    """score = fit_weight * fit + engagement_weight * engagement."""

    fit_weight: float = Field(default=1.0, ge=0)
    engagement_weight: float = Field(default=1.0, ge=0)


class Mql(Frozen):
    """A lead becomes an MQL at `threshold` and stops below threshold-hysteresis."""

    threshold: float = Field(gt=0)
    hysteresis: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.hysteresis >= self.threshold:
            raise ValueError("hysteresis must be smaller than threshold")
        return self


class Scoring(Frozen):
    """The scoring model: rules, decay and the MQL threshold."""

    version: str = Field(min_length=1, max_length=64)
    half_life: DurationMs = Field(default=14 * _UNIT_MS["d"], gt=0)
    allowed_lateness: DurationMs = Field(default=_UNIT_MS["d"], ge=0)
    dedupe_horizon: DurationMs = Field(default=30 * _UNIT_MS["d"], gt=0)
    total: Total = Total()
    mql: Mql
    engagement_rules: tuple[EngagementRule, ...] = Field(min_length=1)
    fit_rules: tuple[FitRule, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [r.name for r in self.engagement_rules] + [
            r.name for r in self.fit_rules
        ]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"duplicate rule names: {', '.join(repeated)}")
        if self.dedupe_horizon < self.allowed_lateness:
            raise ValueError("dedupe_horizon must be at least allowed_lateness")
        self._check_reachable()
        return self

    def _check_reachable(self) -> None:
        best = self.total.fit_weight * self.max_fit()
        if self.total.engagement_weight > 0:
            best += self.total.engagement_weight * self.max_engagement()
        if best < self.mql.threshold:
            raise ValueError(
                f"mql.threshold {self.mql.threshold:g} cannot be reached: "
                f"the highest possible score is {best:g}"
            )

    @cached_property
    def rules_version(self) -> str:
        """The configured version plus a digest of the rules' content."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:8]
        return f"{self.version}+{digest}"

    def half_life_of(self, rule: EngagementRule) -> int:
        return rule.half_life if rule.half_life is not None else self.half_life

    def max_fit(self) -> float:
        return sum(max(rule.points, 0.0) for rule in self.fit_rules)

    def max_engagement(self) -> float:
        """The steady-state ceiling of engagement: a full cap in every window."""
        ceiling = 0.0
        for rule in self.engagement_rules:
            if rule.points <= 0:
                continue
            if rule.cap is None:
                return math.inf
            per_window = 2.0 ** (-rule.cap.window / self.half_life_of(rule))
            ceiling += rule.cap.points / (1.0 - per_window)
        return ceiling


class Topic(Frozen):
    name: str = Field(min_length=1, max_length=249)
    format: Literal["avro", "json"] = "avro"


class Topics(Frozen):
    events: tuple[Topic, ...] = Field(min_length=1)
    firmographics: Topic | None = None
    output: Topic
    dead_letter: str = Field(min_length=1, max_length=249)


class Kafka(Frozen):
    bootstrap_servers: str = "127.0.0.1:9092"
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
        description="librdkafka settings kept out of logs (sasl.password, ...)",
    )


class Redis(Frozen):
    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    cluster: bool = False
    key_prefix: str = Field(default="scorer", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    timeout_s: float = Field(default=5.0, gt=0)
    ops_per_call: int = Field(
        default=64, ge=1, le=1000, description="score updates per Lua script call"
    )


class Pipeline(Frozen):
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    batch_timeout_ms: int = Field(default=50, ge=1, le=60_000)
    max_future: DurationMs = Field(default=_UNIT_MS["d"], ge=0)


class Metrics(Frozen):
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"


class Config(Frozen):
    scoring: Scoring
    kafka: Kafka = Kafka()
    redis: Redis = Redis()
    topics: Topics
    pipeline: Pipeline = Pipeline()
    metrics: Metrics = Metrics()


def default_config_path() -> Path:
    return Path(str(resources.files("scorer") / "default.yaml"))


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read a config file (or the packaged default), apply env overrides, validate.

    ``SCORER_KAFKA__BOOTSTRAP_SERVERS=h:9092`` sets ``kafka.bootstrap_servers``
    (``__`` separates levels; the value is read as YAML), and
    ``SCORER_RDKAFKA_SASL_MECHANISM=PLAIN`` sets the librdkafka setting
    ``sasl.mechanism`` (``_`` stands for ``.``).
    """
    raw = _read_yaml(path or default_config_path())
    _apply_environment(raw, os.environ if environ is None else environ)
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc) from exc


def describe_errors(exc: ValidationError) -> list[str]:
    """Every problem of a failed validation as 'dotted.field: message'."""
    return [f"{_location(err['loc'])}: {_message(err)}" for err in exc.errors()]


def _first_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    return ConfigError(_location(first["loc"]), _message(first), describe_errors(exc))


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("function-after",)]
    return ".".join(parts) or "(top level)"


def _message(err: Mapping[str, Any]) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return message


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("(file)", f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("(file)", f"{path} must hold a mapping at the top level")
    return raw


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if name.startswith(RDKAFKA_ENV_PREFIX):
            setting = name.removeprefix(RDKAFKA_ENV_PREFIX).lower().replace("_", ".")
            _set_path(raw, ["kafka", "settings", setting], value)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = name.removeprefix(ENV_PREFIX).lower().split("__")
            _set_path(raw, path, yaml.safe_load(value))


def _set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _rule_name(value: str) -> str:
    if not _RULE_NAME.match(value):
        raise ValueError("use lower-case letters, digits and _ (at most 64)")
    return value
