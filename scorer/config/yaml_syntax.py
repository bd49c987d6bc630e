"""How the config's YAML is read: the file, environment variables and --set.

PyYAML follows YAML 1.1, whose plain scalars hold traps for a config:
`threshold: 035` is octal, 29; `countries: [NO, SE]` makes Norway the
boolean false; `1:30` is the sexagesimal 90; `version: 2026-12-01` a date.
`ConfigLoader` reads plain scalars as YAML 1.2's core schema does instead
(the default of most other YAML readers): booleans are true and false only,
integers decimal unless written `0o` or `0x`, and no dates or base 60. What
else is plain text stays text, and the field's validation says so where it
wants a number.

It also refuses a key given twice in one mapping: two `mql:` blocks would
otherwise be read as the last one alone.
"""

import re
from collections.abc import Hashable
from typing import Any

import yaml

__all__ = ["ConfigLoader"]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"

_BOOL_TEXT = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_TEXT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_TEXT = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's plain scalars and unique keys."""

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

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        try:
            if text.startswith(("0o", "0x")):
                return int(text, 0)
            # PyYAML's own constructor would read a leading 0 as octal.
            return int(text, 10)
        except ValueError as exc:
            raise _not_a("an integer", node) from exc

    def construct_checked_float(self, node: yaml.ScalarNode) -> float:
        try:
            return float(self.construct_yaml_float(node))
        except (ValueError, IndexError) as exc:
            raise _not_a("a number", node) from exc

    def construct_checked_bool(self, node: yaml.ScalarNode) -> bool:
        try:
            return bool(self.construct_yaml_bool(node))
        except KeyError as exc:
            raise _not_a("true or false", node) from exc


def _not_a(kind: str, node: yaml.ScalarNode) -> yaml.constructor.ConstructorError:
    """A value tagged `!!int` (or float, bool) that is none: a YAML error,
    which the config's reader reports with its place, not a traceback."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return yaml.constructor.ConstructorError(
        None, None, f"a value tagged {tag} is not {kind}", node.start_mark
    )


def _core_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """SafeLoader's implicit resolvers less YAML 1.1's booleans, numbers and dates."""
    dropped = {_BOOL, _INT, _FLOAT, _TIMESTAMP}
    return {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in dropped]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


ConfigLoader.yaml_implicit_resolvers = _core_resolvers()
ConfigLoader.add_implicit_resolver(_BOOL, _BOOL_TEXT, list("tTfF"))
ConfigLoader.add_implicit_resolver(_INT, _INT_TEXT, list("-+0123456789"))
ConfigLoader.add_implicit_resolver(_FLOAT, _FLOAT_TEXT, list("-+.0123456789"))
ConfigLoader.add_constructor(_INT, ConfigLoader.construct_core_int)
ConfigLoader.add_constructor(_FLOAT, ConfigLoader.construct_checked_float)
ConfigLoader.add_constructor(_BOOL, ConfigLoader.construct_checked_bool)
