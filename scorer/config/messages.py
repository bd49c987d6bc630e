"""Validation errors as messages that name the field by its dotted path
(``scoring.mql.threshold``) and speak of YAML, not of Python's types.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from scorer.config.kafka import FREE_FORM_MAPS
from scorer.errors import ConfigError


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
