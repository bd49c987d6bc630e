"""Settings from environment variables: ``SCORER_<SECTION>__<FIELD>`` for any
field, ``SCORER_RDKAFKA_<NAME>`` for a librdkafka setting.
"""

from collections.abc import Mapping
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from scorer.config.kafka import FREE_FORM_MAPS, is_secret_setting
from scorer.config.root import Config
from scorer.config.yaml_syntax import ConfigLoader
from scorer.errors import ConfigError

ENV_PREFIX = "SCORER_"
RDKAFKA_ENV_PREFIX = "SCORER_RDKAFKA_"


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
            setting = _setting_name(name.removeprefix(RDKAFKA_ENV_PREFIX), name)
            section = "secrets" if is_secret_setting(setting) else "settings"
            path = ["kafka", section, setting]
            set_path(raw, path, value, name)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = name.removeprefix(ENV_PREFIX).lower().split("__")
            path = _librdkafka_path(path, name)
            set_path(raw, path, environment_value(path, value), name)
        else:
            continue
        sources[".".join(path)] = name
    return sources


def _librdkafka_path(path: list[str], name: str) -> list[str]:
    """Below a map of librdkafka settings, the rest of a variable's path is
    one setting, each `_` read as `.`, as SCORER_RDKAFKA_ reads it.

    SCORER_KAFKA__CONSUMER_SETTINGS__GROUP_INSTANCE_ID sets one consumer
    setting and keeps the file's others, where a mapping given to
    SCORER_KAFKA__CONSUMER_SETTINGS replaces them all.
    """
    if tuple(path[:2]) not in FREE_FORM_MAPS or len(path) < 3:
        return path
    return [*path[:2], _setting_name(".".join(path[2:]), name)]


def _setting_name(words: str, name: str) -> str:
    """A librdkafka name from a variable's words: lower case, '_' as '.'."""
    setting = words.lower().replace("_", ".")
    if not all(setting.split(".")):
        # Empty, or a dot at an end or twice: librdkafka has no such name.
        raise ConfigError(name, "names no librdkafka setting")
    return setting


def environment_value(path: list[str], text: str) -> Any:
    """A variable's value read as YAML; a credential's verbatim."""
    # As YAML, a password such as 0123 would become a number, and *x fail
    # as an unknown alias.
    if path[:2] == ["kafka", "secrets"] or any(map(is_secret_setting, path)):
        return text
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError:
        return text  # validation then names the field if a string is wrong


def set_path(raw: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    """Set `value` at `path`, making the mappings on the way.

    A list on the way is refused, its items named by position or by a
    rule's name alike: replaced by a mapping, it was refused as "must be a
    list", which does not say what to do.
    """
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if isinstance(child, list):
            raise list_item_error(path, depth + 1, source)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            # Replaced by a mapping, the value given before (a variable's
            # whole map that is no map) would vanish without a word.
            field, rest = ".".join(path[: depth + 1]), ".".join(path[depth + 1 :])
            message = f"must be a mapping to set {rest} in it (from {source})"
            raise ConfigError(field, message)
        node = child
    node[path[-1]] = value


def list_item_error(path: list[str], list_depth: int, source: str) -> ConfigError:
    """The error for a path that goes on into the list at path[:list_depth]."""
    whole = ".".join(path[:list_depth])
    message = (
        f"a list item has no path of its own; set the whole list {whole} "
        f"as YAML (from {source})"
    )
    return ConfigError(".".join(path), message)
