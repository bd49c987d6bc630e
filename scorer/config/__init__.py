"""The scorer's configuration: scoring rules and service settings.

One YAML file holds both. It is validated by frozen pydantic models; any
invalid value stops start-up with an error naming the field by its dotted
path (``scoring.mql.threshold``). Environment variables override the file
(see `load_config`).
"""

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Hashable, Mapping
from functools import cached_property
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
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
from scorer.errors import ConfigError
from scorer.pattern import compile_pattern

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

# A number, then a unit; without one, seconds. A sign is read so that "-3d" is
# refused as negative, not as unreadable. The number may be text: quoted, or
# an exponent such as 1e6, which YAML 1.1 reads as a string even unquoted.
_DURATION = re.compile(
    r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|m|h|d|w)?\s*$"
)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS["w"] = 7 * _UNIT_MS["d"]


def duration_text(ms: int) -> str:
    """A duration as the config writes it: the largest of d, h, m and s
    that divides it (7d, not 1w; 90s, not 1.5m)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EMPTY_VALUE = "an empty value; give text, or leave the field out"
_DURATION_EXPECTED = (
    "a duration: a number of seconds, quoted or not (90, '90', '1.5', '1e6'), "
    "or a number with a unit ms, s, m, h, d or w, as in '500ms', '30s', '15m', "
    "'12h', '7d' or '2w'"
)
# Far longer than any decay, cap window or horizon a scoring model needs; it
# keeps every duration exact as a double (Lua, JSON) and a 1 ms cap window a
# visible share of any half-life (Scoring.max_engagement divides by it).
MAX_DURATION_MS = 1000 * 365 * 86_400_000
# Points of a rule, either sign: far beyond any scoring model (the default's
# rules give 1 to 30), and small enough that no score can overflow a double.
MAX_POINTS = 1_000_000
# A weight rescales fit against engagement; a thousandfold is plenty. With
# MAX_POINTS, an event adds at most 1e9 to the total, so reaching a double's
# 1.8e308 would take about 1e299 events.
MAX_WEIGHT = 1_000
# Cap windows a lead can hold open at once, over all its rules; each update
# of the lead reads and writes them all (the default rules: 14).
MAX_OPEN_WINDOWS = 1_000
# Far beyond any healthy round trip to Redis or the registry. A call that
# hangs blocks the consume loop, unpolled, for this long: it must stay well
# within metrics.stall_after (1 min) and max.poll.interval.ms (5 min). (Python's
# socket timeouts overflow past about 292 years: 1e300 passed check-config,
# then `scorer run` died in an OverflowError.)
MAX_TIMEOUT_S = 30
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


def _duration_ms(value: Any) -> Any:
    """'500ms', '90s', '15m', '12h', '7d', '2w' or seconds, as milliseconds.

    Seconds are a number, or text that is one ('86400'): the same number
    read either way gives the same duration and meets the same range check.
    """
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_EXPECTED}, not a boolean")
    if isinstance(value, int | float):
        return _whole_ms(value * 1000)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(_DURATION_EXPECTED)
        amount, unit = found.groups()
        return _whole_ms(float(amount) * _UNIT_MS[unit or "s"])
    if value is None:
        return value  # pydantic says "required" or takes it for an optional one
    # A list or a mapping: pydantic would say "a valid integer", which
    # misleads where a duration such as '10d' is wanted.
    raise ValueError(_DURATION_EXPECTED)


def _whole_ms(ms: float) -> int:
    # Checked before int(), whose OverflowError for inf (a duration of 400
    # digits reads as one) pydantic would not turn into a validation error.
    in_range = -MAX_DURATION_MS <= ms <= MAX_DURATION_MS  # False for NaN too
    if not in_range:
        days = MAX_DURATION_MS // _UNIT_MS["d"]
        raise ValueError(f"must be a finite duration of at most {days}d")
    return int(ms)


def _not_boolean(value: Any) -> Any:
    # YAML reads `true` as a boolean, and pydantic would take it as 1.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _within_points_limit(value: float) -> float:
    if abs(value) > MAX_POINTS:
        raise ValueError(f"must be between -{MAX_POINTS:,} and {MAX_POINTS:,}")
    return value


DurationMs = Annotated[int, BeforeValidator(_duration_ms)]
# Every number of the config is one of these: no boolean passes as 0 or 1.
# NaN and infinities are refused by `Frozen` (allow_inf_nan) for every float.
Number = Annotated[float, BeforeValidator(_not_boolean)]
Integer = Annotated[int, BeforeValidator(_not_boolean)]
Points = Annotated[Number, AfterValidator(_within_points_limit)]


EventType = Literal["page_view", "content_download", "webinar"]


class Frozen(BaseModel):
    # No NaN or infinity: an infinite threshold passed the reachability check
    # and then made scores that no JSON output can hold.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Cap(Frozen):
    """At most `points` from one rule per clock-aligned window of `window`."""

    points: Number = Field(gt=0, description="most points the rule adds per window")
    window: DurationMs = Field(
        gt=0,
        description="window length; windows start at its multiples since the "
        "Unix epoch (UTC): a day at midnight, 7 days on a Thursday",
    )


class Match(Frozen):
    """Which activity events a rule scores. Omitted conditions match anything."""

    type: EventType
    url_contains: tuple[str, ...] = Field(
        default=(), description="page view: any of these substrings of the URL"
    )
    url_pattern: str | None = Field(
        default=None,
        description="page view: a regular expression (RE2 syntax) searched in the URL",
    )
    category: tuple[str, ...] = Field(
        default=(),
        description="page view: the page category is one of these (whole value, "
        "case ignored)",
    )
    asset_type: tuple[str, ...] = Field(
        default=(),
        description="content download: the asset type is one of these (whole "
        "value, case ignored)",
    )
    status: Literal["registered", "attended"] | None = Field(
        default=None, description="webinar: registered or attended"
    )
    min_minutes_watched: Number | None = Field(
        default=None, ge=0, description="webinar: watched at least this many minutes"
    )

    @field_validator("url_contains", "category", "asset_type")
    @classmethod
    def _given_choices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_choices(value)

    @field_validator("url_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            # It would be found in every text, like an empty substring.
            raise ValueError(_EMPTY_VALUE)
        compile_pattern(value)
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
    points: Points = Field(
        description="points per event; negative lowers the score; "
        f"at most {MAX_POINTS:,} either way"
    )
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
        if value == 0:
            raise ValueError("must be a number other than 0")
        return value


class Range(Frozen):
    min: Number | None = None
    max: Number | None = None

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
        default=None,
        description="a regular expression (RE2 syntax) searched in the text",
    )
    points: Points = Field(
        description=f"points when the criterion matches; at most {MAX_POINTS:,} "
        "either way"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _rule_name(value)

    @field_validator("any_of")
    @classmethod
    def _given_choices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_choices(value)

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

    fit_weight: Number = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    engagement_weight: Number = Field(default=1.0, ge=0, le=MAX_WEIGHT)


class Mql(Frozen):
    """A lead becomes an MQL at `threshold` and stops below threshold-hysteresis."""

    threshold: Number = Field(gt=0)
    hysteresis: Number = Field(default=10.0, ge=0)
    min_engagement: Number | None = Field(
        default=None,
        ge=0,
        description="engagement a lead needs besides the threshold to become an "
        "MQL, so that fit alone never alerts sales (unset: the threshold alone)",
    )

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
        self._check_open_windows()
        self._check_reachable()
        return self

    def open_windows(self, rule: EngagementRule) -> int:
        """The most cap windows of `rule` a lead can hold open at once.

        A window stays open until `allowed_lateness` past its end: the lead's
        newest event's window, and those ending less than that before it.
        """
        if rule.cap is None:
            return 0
        return -(-self.allowed_lateness // rule.cap.window) + 1

    def _check_open_windows(self) -> None:
        # Every update of a lead reads, sums and writes all its open windows
        # in one script call that blocks Redis: a 1-minute cap with a week
        # of lateness kept 10,081 open, and a call took seconds.
        total = sum(self.open_windows(rule) for rule in self.engagement_rules)
        if total <= MAX_OPEN_WINDOWS:
            return
        worst = max(self.engagement_rules, key=self.open_windows)
        assert worst.cap is not None  # an uncapped rule opens no window
        raise ValueError(
            f"the capped rules can keep {total:,} cap windows open per lead, "
            f"more than {MAX_OPEN_WINDOWS:,}: a window stays open "
            f"allowed_lateness past its end, and {worst.name}'s "
            f"{duration_text(worst.cap.window)} windows "
            f"alone make {self.open_windows(worst):,}; lengthen cap.window "
            "or shorten allowed_lateness"
        )

    def _check_reachable(self) -> None:
        best = self.total.fit_weight * self.max_fit()
        if self.total.engagement_weight > 0:
            best += self.total.engagement_weight * self.max_engagement()
        if best < self.mql.threshold:
            raise ValueError(
                f"mql.threshold {self.mql.threshold:g} cannot be reached: "
                f"the highest possible score is {best:g}"
            )
        least = self.mql.min_engagement
        if least is not None and self.max_engagement() < least:
            raise ValueError(
                f"mql.min_engagement {least:g} cannot be reached: "
                f"the highest possible engagement is {self.max_engagement():g}"
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
        """The ceiling of engagement: a full cap in every window, as late as can be.

        Windows are clock-aligned, so a full cap can be earned at the very end
        of one window and another at the start of the next: at that moment
        the current window and the one before count undecayed, and each
        earlier one a window's decay less than the one after it.
        """
        ceiling = 0.0
        for rule in self.engagement_rules:
            if rule.points <= 0:
                continue
            if rule.cap is None:
                return math.inf
            per_window = 2.0 ** (-rule.cap.window / self.half_life_of(rule))
            ceiling += rule.cap.points * (1.0 + 1.0 / (1.0 - per_window))
        return ceiling


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
    max_future: DurationMs = Field(default=_UNIT_MS["d"], ge=0)
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
            _with_double_underscore(name),
        )
    sources = _apply_environment(raw, environ)
    for dotted, value in (overrides or {}).items():
        keys = split_dotted(dotted)
        _set_path(raw, keys, _environment_value(keys, value))
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
        raise _first_error(exc) from exc


def describe_errors(exc: ValidationError) -> list[str]:
    """Every problem of a failed validation as 'dotted.field: message'."""
    return [": ".join(_where_and_what(err)) for err in _errors(exc)]


def _first_error(exc: ValidationError) -> ConfigError:
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


def _with_double_underscore(name: str) -> str:
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


def _apply_environment(
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
            _set_path(raw, path, value)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = name.removeprefix(ENV_PREFIX).lower().split("__")
            _set_path(raw, path, _environment_value(path, value))
        else:
            continue
        sources[".".join(path)] = name
    return sources


def _environment_value(path: list[str], text: str) -> Any:
    """A variable's value read as YAML; a credential's verbatim."""
    # As YAML, a password such as 0123 would become a number, and *x fail
    # as an unknown alias.
    if path[:2] == ["kafka", "secrets"] or any(map(is_secret_setting, path)):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # validation then names the field if a string is wrong


def _set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _non_empty_choices(value: tuple[str, ...]) -> tuple[str, ...]:
    # Given but empty, a condition would quietly match every event (an empty
    # list reads as "no condition"; "" is a substring of every URL), so that
    # the rule shadows every rule after it.
    if not value:
        raise ValueError("an empty list; give at least one value, or leave it out")
    if any(not item.strip() for item in value):
        raise ValueError(_EMPTY_VALUE)
    return value


def _rule_name(value: str) -> str:
    if not _RULE_NAME.fullmatch(value):
        raise ValueError("use lower-case letters, digits and _ (at most 64)")
    return value
