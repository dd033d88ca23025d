"""Bounds on a ruleset document, checked before it is compiled: YAML without alias bombs, a cap on
rules, conditions, nesting and pattern length. Pure: no I/O. (README "Security".)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

MAX_RULES = 200
MAX_CONDITIONS = 50  # field matchers in one rule, nested any/all/not included
MAX_DEPTH = 12  # nesting of mappings and lists inside one rule
MAX_NODES = 5_000  # values in one rule once YAML aliases are expanded
MAX_PATTERN = 500  # characters of a regex, glob, prefix or compared string
MAX_LIST = 1_000  # options of an `in`
MAX_ALIASES = 50  # YAML aliases in a whole document


class DocumentError(ValueError):
    """A document over a bound; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases: a few bytes of nested anchors can stand for millions of
    values, so more than MAX_ALIASES are refused (and size is bounded again after loading)."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise DocumentError("rules", f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def load_yaml(text: str | bytes) -> Any:
    """Parse YAML safely (plain data only, aliases bounded). Raises yaml.YAMLError or DocumentError.
    With libyaml (PyYAML's wheels carry it) both passes run in C: the aliases are counted over the
    parser's events, then the document is loaded; a refused alias bomb costs a fraction of a
    millisecond instead of the pure-Python composer's few."""
    if not yaml.__with_libyaml__:
        loader = _BoundedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise DocumentError("rules", f"more than {MAX_ALIASES} YAML aliases")
    return yaml.load(text, Loader=yaml.CSafeLoader)  # CSafeLoader: the safe loader, in C


def check_rule_size(rule: Any) -> None:
    """Raise DocumentError if one rule is too big, too deep or holds a NUL; visits at most MAX_NODES values."""
    stack: list[tuple[Any, int, str]] = [(rule, 0, "rule")]
    seen = 0
    while stack:
        value, depth, where = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise DocumentError("rule", f"more than {MAX_NODES} values (YAML aliases count once per use)")
        if depth > MAX_DEPTH:
            raise DocumentError(where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            if "\x00" in value:
                raise DocumentError(where, "contains a NUL character")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    raise DocumentError(where, "a key contains a NUL character")
                stack.append((item, depth + 1, f"{where}.{key}" if where != "rule" else str(key)))
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                raise DocumentError(where, f"more than {MAX_LIST} items")
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))


def condition_count(when: Any) -> int:
    """Field matchers in a `when` (any/all/not included); call after check_rule_size (bounded depth)."""
    if not isinstance(when, Mapping):
        return 0
    total = 0
    for key, spec in when.items():
        if key in ("any", "all") and isinstance(spec, list):
            total += sum(condition_count(item) for item in spec)
        elif key == "not":
            total += condition_count(spec)
        else:
            total += len(spec) if isinstance(spec, Mapping) else 1
    return total
