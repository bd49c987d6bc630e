"""How one version of the scoring rules differs from another.

`scorer check-config NEW --against OLD` prints these lines, so whoever
recalibrates sees what a new rules version changes before it goes live:
rules by name (a renamed rule is one removed and one added), settings by
dotted path, durations as they are written in YAML.
"""

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from scorer.config import Scoring, duration_text
from scorer.reference import is_duration

# The lists of named rules in Scoring, and what their order means.
RULE_LISTS = {
    "engagement_rules": "the first match fires",
    "fit_rules": "as outputs list them",
}


def changes(old: Scoring, new: Scoring) -> list[str]:
    """One line per setting or rule that differs, then the rule order."""
    before, after = _by_rule(old), _by_rule(new)
    lines = []
    for rule in sorted(before.keys() | after.keys(), key=_rules_last):
        if rule not in after:
            lines.append(f"{rule}: removed")
        elif rule not in before:
            lines.append(f"{rule}: added")
        else:
            lines.extend(_setting_changes(before[rule], after[rule]))

    lines.extend(_order_change(old, new))
    return lines


def _by_rule(scoring: Scoring) -> dict[str, dict[str, str]]:
    """The settings grouped by rule (`scoring.fit_rules[senior_title]`);
    those outside any rule under the key ``scoring``."""
    groups = {"scoring": dict(_settings(scoring, "scoring"))}
    for name in RULE_LISTS:
        for rule in getattr(scoring, name):
            key = f"scoring.{name}[{rule.name}]"
            groups[key] = dict(_settings(rule, key))
    return groups


def _setting_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, "null"), after.get(path, "null")
        if old != new:
            lines.append(f"{path}: {old} -> {new}")
    return lines


def _rules_last(key: str) -> tuple[bool, str]:
    # The general settings first, then rule by rule.
    return (key != "scoring", key)


def _settings(model: BaseModel, prefix: str) -> Iterator[tuple[str, str]]:
    """(dotted path, value as text) of every leaf but the rules (`_by_rule`)."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}.{name}"
        if name in RULE_LISTS:
            continue
        if isinstance(value, BaseModel):
            yield from _settings(value, path)
        elif is_duration(info) and isinstance(value, int):
            yield path, duration_text(value)
        else:
            yield path, _text(value)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    if isinstance(value, float):
        # The shortest text that reads back the same: 20.000001 is another
        # rules version than 20, which six digits would not show.
        text = repr(value)
        return text.removesuffix(".0")
    return str(value)


def _order_change(old: Scoring, new: Scoring) -> Iterator[str]:
    """A moved rule: the first engagement rule that matches fires, and fit
    rules are listed in their order in every output's reason."""
    for name, meaning in RULE_LISTS.items():
        before = [rule.name for rule in getattr(old, name)]
        after = [rule.name for rule in getattr(new, name)]
        kept = set(before) & set(after)
        before = [rule for rule in before if rule in kept]
        after = [rule for rule in after if rule in kept]
        if before != after:
            yield (
                f"scoring.{name} order ({meaning}): "
                f"{', '.join(before)} -> {', '.join(after)}"
            )
