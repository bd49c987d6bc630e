"""Validation errors as messages that name the field by its dotted path
(``scoring.mql.threshold``) and speak of YAML, not of Python's types.
"""

import difflib
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from scorer.config.kafka import FREE_FORM_MAPS
from scorer.errors import ConfigError


def describe_errors(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> list[str]:
    """Every problem of a failed validation as 'dotted.field: message'.

    With the model validated, an unknown field names the known one it is
    probably a misspelling of.
    """
    return [": ".join(_where_and_what(err)) for err in _errors(exc, model)]


def first_error(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> ConfigError:
    where, what = _where_and_what(_errors(exc, model)[0])
    return ConfigError(where, what, describe_errors(exc, model))


def _errors(exc: ValidationError, model: type[BaseModel] | None) -> list[Any]:
    """The errors, less a list's "too short" caused by its own bad items,
    and less a missing field that an unknown one misspells.

    pydantic counts only the valid items of a list against its minimum, so
    one bad rule also said "Tuple should have at least 1 item ... not 0".
    A misspelt required field ("treshold") said both "threshold: Field
    required" and "treshold: unknown field"; the second now says it all.
    """
    errors = [_with_suggestion(err, model) for err in exc.errors()]
    misspelt = {
        (*err["loc"][:-1], err["ctx"]["suggestion"])
        for err in errors
        if err["type"] == "extra_forbidden" and "suggestion" in err.get("ctx", {})
    }
    return [
        err
        for err in errors
        if not (err["type"] == "too_short" and _has_items_below(err["loc"], errors))
        and not (err["type"] == "missing" and tuple(err["loc"]) in misspelt)
    ] or errors


def _with_suggestion(err: Any, model: type[BaseModel] | None) -> Any:
    if err["type"] != "extra_forbidden" or model is None:
        return err
    *parent, name = err["loc"]
    known = _field_names(model, parent)
    close = difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.8)
    if not close:
        return err
    return {**err, "ctx": {**(err.get("ctx") or {}), "suggestion": close[0]}}


def _field_names(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The fields a mapping at loc may hold, following the model's types."""
    kinds: list[Any] = [model]
    for part in loc:
        kinds = [inner for kind in kinds for inner in _below(kind, part)]
    # The last step's type unwrapped too: an optional section (`cap`,
    # `schema_registry`) is `Model | None`.
    models = [one for kind in kinds for one in _alternatives(kind) if _is_model(one)]
    return sorted({name for model in models for name in model.model_fields})


def _below(kind: Any, part: int | str) -> list[Any]:
    """The types a value of `kind` holds at key or index `part`."""
    found = []
    for one in _alternatives(kind):
        if isinstance(part, str) and _is_model(one) and part in one.model_fields:
            found.append(one.model_fields[part].annotation)
        elif isinstance(part, int) and get_origin(one) in (tuple, list):
            found.extend(arg for arg in get_args(one) if arg is not Ellipsis)
    return found


def _alternatives(kind: Any) -> list[Any]:
    """A union's members and an Annotated's type, unwrapped."""
    origin = get_origin(kind)
    if origin is Annotated:
        return _alternatives(get_args(kind)[0])
    if origin is Union or origin is types.UnionType:
        return [one for arg in get_args(kind) for one in _alternatives(arg)]
    return [kind]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


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
    if kind == "extra_forbidden" and "suggestion" in context:
        return f"unknown field; did you mean {context['suggestion']}?"
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
