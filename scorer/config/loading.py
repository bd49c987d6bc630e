"""Loading the config: the YAML file (or the packaged default), environment
variables and the command line's overrides, then validation.
"""

import logging
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scorer.config.environment import (
    apply_environment,
    environment_value,
    list_item_error,
    set_path,
    unread_variables,
    with_double_underscore,
)
from scorer.config.kafka import FREE_FORM_MAPS
from scorer.config.messages import first_error
from scorer.config.root import Config
from scorer.config.yaml_syntax import ConfigLoader
from scorer.errors import ConfigError

# The package's name, which the log lines carried before the split into
# modules: a filter on the logger "scorer.config" keeps working.
log = logging.getLogger("scorer.config")

# A quoted token of a YAML error; punctuation (',', '\t') is shown, words not.
_QUOTED = re.compile(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"")


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
        set_path(raw, keys, environment_value(keys, value), "the command line")
        sources[".".join(keys)] = "the command line"
    _refuse_list_items(sources)
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise _with_sources(exc, sources) from exc.__cause__


def _refuse_list_items(sources: Mapping[str, str]) -> None:
    """A path through a list (`topics.events.0.format`) sets nothing.

    Where the file holds the list, `set_path` refused it; where it does not,
    the path made a mapping keyed "0", refused as "Input should be a valid
    tuple", which does not say what to do instead.
    """
    for dotted, source in sources.items():
        if dotted.startswith("kafka."):
            continue  # librdkafka names are dotted, and never a bare number
        keys = dotted.split(".")
        at = next((i for i, key in enumerate(keys) if key.isdigit()), None)
        if at is not None:
            raise list_item_error(keys, at, source)


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
        raise first_error(exc, Config) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}"
        raise ConfigError("(file)", f"{path} is not UTF-8 text ({where})") from exc
    try:
        raw = yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigError("(file)", f"{path} is not valid YAML: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("(file)", f"{path} must hold a mapping at the top level")
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's quote of the line (a secret?)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return type(exc).__name__
    mark = exc.problem_mark
    # A problem may quote a token too ("found undefined alias 'x'").
    problem = _QUOTED.sub("'...'", exc.problem or "syntax error")
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
