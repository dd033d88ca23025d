"""Goal rules: the YAML/JSON schema, validation, and compilation into plain callables. Pure: no I/O.

A ruleset is an ordered list of rules; the first whose `when` holds decides (see classify.py).
`when` maps a field to a matcher, every entry must hold; `any`, `all` and `not` combine.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from app.domain.model import Event, PersonHistory, Stage
from app.domain.rule_limits import (
    MAX_CONDITIONS,
    MAX_PATTERN,
    MAX_RULES,
    DocumentError,
    check_rule_size,
    condition_count,
)

Predicate = Callable[[Event, PersonHistory], bool]

TEXT_FIELDS = ("type", "event", "name", "path", "url", "referrer", "channel")
CAMPAIGN_FIELDS = ("source", "medium", "name", "term", "content")
PERSON_FIELDS = ("orders_before", "revenue_before", "leads_before", "days_since_first_seen")
TEXT_OPS = frozenset({"eq", "ne", "in", "glob", "regex", "prefix", "exists", "contains"})
PROPERTY_OPS = frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "contains", "regex", "glob", "prefix"})
NUMBER_OPS = frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte"})
DEFAULT_VALUE_PATHS = (("revenue",), ("total",), ("value",))


class RuleError(ValueError):
    """A ruleset that cannot be compiled; `problems` name rule index, goal and field."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Condition:
    source: str  # e.g. "event in ['Order Completed', 'purchase']", for explanations
    test: Predicate

    def __call__(self, event: Event, person: PersonHistory) -> bool:
        return self.test(event, person)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    goal: str
    stage: Stage
    conditions: tuple[Condition, ...]
    value_paths: tuple[tuple[str, ...], ...]
    lead: bool
    order: bool

    @property
    def test(self) -> Predicate:
        return conjunction(tuple(c.test for c in self.conditions))


def conjunction(tests: tuple[Predicate, ...]) -> Predicate:
    """One callable for all of a rule's conditions (a flat `and`, no generator per event)."""
    if not tests:
        return lambda e, p: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda e, p: a(e, p) and b(e, p)
    head, rest = tests[0], conjunction(tests[1:])
    return lambda e, p: head(e, p) and rest(e, p)


@dataclass(frozen=True, slots=True)
class CompiledRuleset:
    version: int
    rules: tuple[CompiledRule, ...]
    source: tuple[dict[str, Any], ...]
    compiled: tuple[tuple[CompiledRule, Predicate], ...] = ()

    def __post_init__(self) -> None:
        # the hot loop of classify() calls one plain predicate per rule, not Condition objects
        object.__setattr__(self, "compiled", tuple((r, r.test) for r in self.rules))


def compile_ruleset(raw: Any, version: int = 0) -> CompiledRuleset:
    """Validate and compile a ruleset document (`{"rules": [...]}` or a bare list)."""
    rules_raw = raw.get("rules") if isinstance(raw, Mapping) else raw
    if not isinstance(rules_raw, list) or not rules_raw:
        raise RuleError([_problem(None, None, "rules", "rules must be a non-empty list")])
    if len(rules_raw) > MAX_RULES:
        raise RuleError([_problem(None, None, "rules", f"at most {MAX_RULES} rules")])
    problems: list[dict[str, Any]] = []
    compiled: list[CompiledRule] = []
    seen_goals: set[str] = set()
    for index, rule in enumerate(rules_raw):
        try:
            compiled.append(_compile_rule(index, rule, seen_goals))
        except RuleError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return CompiledRuleset(version=version, rules=tuple(compiled), source=tuple(rules_raw))


def _problem(index: int | None, goal: Any, fld: str, message: str) -> dict[str, Any]:
    where = f"rule {index}" + (f" ({goal})" if goal else "") if index is not None else "ruleset"
    return {"rule": index, "goal": goal, "field": fld, "message": f"{where}: {fld}: {message}"}


def _compile_rule(index: int, rule: Any, seen_goals: set[str]) -> CompiledRule:
    if not isinstance(rule, Mapping):
        raise RuleError([_problem(index, None, "rule", "must be a mapping")])
    goal = rule.get("goal")
    try:
        check_rule_size(rule)
    except DocumentError as exc:
        raise RuleError([_problem(index, goal if isinstance(goal, str) else None, exc.field, exc.message)]) from None
    if condition_count(rule.get("when")) > MAX_CONDITIONS:
        raise RuleError([_problem(index, goal, "when", f"at most {MAX_CONDITIONS} conditions in a rule")])
    known = {"goal", "stage", "when", "value", "lead", "order", "description"}
    problems = [_problem(index, goal, k, "unknown field") for k in rule if k not in known]
    if not isinstance(goal, str) or not goal:
        problems.append(_problem(index, goal, "goal", "must be a non-empty string"))
    elif goal in seen_goals:
        problems.append(_problem(index, goal, "goal", "duplicate goal"))
    stage = rule.get("stage")
    if not isinstance(stage, str) or stage not in {s.value for s in Stage if s is not Stage.NONE}:
        problems.append(_problem(index, goal, "stage", "must be one of reach, act, convert, engage"))
    for flag in ("lead", "order"):
        if not isinstance(rule.get(flag, False), bool):
            problems.append(_problem(index, goal, flag, "must be true or false"))
    value = rule.get("value")
    if value is not None and not (isinstance(value, str) and value.startswith("properties.") and value[11:]):
        problems.append(_problem(index, goal, "value", "must be a properties.* path"))
    conditions: list[Condition] = []
    try:
        conditions = _compile_when(rule.get("when", {}), "when")
    except _FieldError as exc:
        problems.append(_problem(index, goal, exc.field, exc.message))
    if problems:
        raise RuleError(problems)
    assert isinstance(goal, str) and isinstance(stage, str)  # checked above
    seen_goals.add(goal)
    value_paths = (tuple(value.split(".")[1:]),) if value else DEFAULT_VALUE_PATHS
    return CompiledRule(
        goal=goal,
        stage=Stage(stage),
        conditions=tuple(conditions),
        value_paths=value_paths,
        lead=rule.get("lead", False),
        order=rule.get("order", False),
    )


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _compile_when(when: Any, where: str) -> list[Condition]:
    if not isinstance(when, Mapping):
        raise _FieldError(where, "must be a mapping of field to matcher")
    out: list[Condition] = []
    for key, spec in when.items():
        path = f"{where}.{key}"
        if key in ("any", "all"):
            out.append(_combine(key, spec, path))
        elif key == "not":
            inner = _compile_when(spec, path)
            out.append(Condition(f"not({_sources(inner)})", _not(inner)))
        else:
            out.extend(_compile_field(str(key), spec, path))
    return out


def _combine(kind: str, spec: Any, path: str) -> Condition:
    if not isinstance(spec, list) or not spec:
        raise _FieldError(path, "must be a non-empty list of conditions")
    groups = [_compile_when(item, f"{path}[{i}]") for i, item in enumerate(spec)]
    joined = f" {kind} ".join(f"({_sources(g)})" for g in groups)
    if kind == "any":
        return Condition(joined, lambda e, p: any(all(c(e, p) for c in g) for g in groups))
    return Condition(joined, lambda e, p: all(all(c(e, p) for c in g) for g in groups))


def _not(inner: list[Condition]) -> Predicate:
    return lambda e, p: not all(c(e, p) for c in inner)


def _sources(conditions: Sequence[Condition]) -> str:
    return " and ".join(c.source for c in conditions) or "true"


def _compile_field(key: str, spec: Any, path: str) -> list[Condition]:
    getter, ops = _getter(key, path)
    matchers = spec if isinstance(spec, Mapping) else {"in" if isinstance(spec, list) else "eq": spec}
    if not matchers:
        raise _FieldError(path, "needs at least one operator")
    out = []
    for op, arg in matchers.items():
        if op not in ops:
            raise _FieldError(f"{path}.{op}", f"unknown operator for {key} (allowed: {sorted(ops)})")
        out.append(Condition(f"{key} {op} {arg!r}", _operator(op, arg, getter, f"{path}.{op}")))
    return out


def _getter(key: str, path: str) -> tuple[Callable[[Event, PersonHistory], Any], frozenset[str]]:
    if key in TEXT_FIELDS:
        attr = operator.attrgetter("event_name" if key == "event" else key)
        return (lambda e, p: attr(e)), TEXT_OPS
    head, _, rest = key.partition(".")
    if head == "campaign" and rest in CAMPAIGN_FIELDS:
        return (lambda e, p: e.campaign.get(rest)), TEXT_OPS
    if head == "properties" and rest:
        parts = tuple(rest.split("."))
        return (lambda e, p: lookup(e.properties, parts)), PROPERTY_OPS
    if head == "person" and rest in PERSON_FIELDS:
        return _person_getter(rest), NUMBER_OPS
    raise _FieldError(path, "unknown field")


def _person_getter(name: str) -> Callable[[Event, PersonHistory], Any]:
    if name == "days_since_first_seen":

        def days(e: Event, p: PersonHistory) -> float:
            first = p.first_seen_at or e.event_at
            return (e.event_at - first).total_seconds() / 86400

        return days
    return lambda e, p: getattr(p, name)


def lookup(properties: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    value: Any = properties
    for part in parts:
        if type(value) is not dict and not isinstance(value, Mapping):  # dict first: no ABC check per event
            return None
        value = value.get(part)
    return value


def as_number(value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:  # the common cases first (bool is not int here: type(), not isinstance)
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _operator(op: str, arg: Any, get: Callable[[Event, PersonHistory], Any], path: str) -> Predicate:
    if op == "exists":
        if not isinstance(arg, bool):
            raise _FieldError(path, "must be true or false")
        return lambda e, p: (get(e, p) is not None) == arg
    if op in ("eq", "ne"):
        if isinstance(arg, list | dict):
            raise _FieldError(path, "must be a scalar")
        if isinstance(arg, str) and len(arg) > MAX_PATTERN:
            raise _FieldError(path, f"at most {MAX_PATTERN} characters")
        if op == "eq" and isinstance(arg, str):  # the common case, kept cheap
            return lambda e, p: get(e, p) == arg
        want = op == "eq"
        return lambda e, p: _equal(get(e, p), arg) == want
    if op == "in":
        if not isinstance(arg, list) or not arg:
            raise _FieldError(path, "must be a non-empty list")
        if any(isinstance(o, str) and len(o) > MAX_PATTERN for o in arg):
            raise _FieldError(path, f"options of at most {MAX_PATTERN} characters")
        if all(isinstance(o, str) for o in arg):
            names = frozenset(arg)
            return lambda e, p: isinstance(v := get(e, p), str) and v in names
        options = tuple(arg)
        return lambda e, p: any(_equal(get(e, p), o) for o in options)
    if op in ("gt", "gte", "lt", "lte"):
        bound = as_number(arg)
        if bound is None:
            raise _FieldError(path, "must be a number")
        compare = _COMPARATORS[op]
        return lambda e, p: (v := as_number(get(e, p))) is not None and compare(v, bound)
    return _text_operator(op, arg, get, path)


_COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the user's 422, not a line on stderr
    options.max_mem = 1 << 20  # bytes for the compiled automaton: bounds what a pattern may cost
    return options


RE2_OPTIONS = _re2_options()


def _text_operator(op: str, arg: Any, get: Callable[[Event, PersonHistory], Any], path: str) -> Predicate:
    if not isinstance(arg, str):
        raise _FieldError(path, "must be a string")
    if len(arg) > MAX_PATTERN:
        raise _FieldError(path, f"at most {MAX_PATTERN} characters")
    if op == "regex":
        # RE2 runs in time linear in the text: no pattern can backtrack catastrophically on every event.
        # Its syntax is Python's minus backreferences and lookaround (refused here).
        try:
            pattern = re2.compile(arg, RE2_OPTIONS)
        except re2.error as exc:
            message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise _FieldError(path, f"invalid regex (RE2 syntax): {message}") from None
        return lambda e, p: isinstance(v := get(e, p), str) and pattern.search(v) is not None
    if op == "glob":
        globbed = re.compile(fnmatch.translate(arg))
        return lambda e, p: isinstance(v := get(e, p), str) and globbed.match(v) is not None
    if op == "prefix":
        return lambda e, p: isinstance(v := get(e, p), str) and v.startswith(arg)
    # contains: substring of a string, or member of a list
    return lambda e, p: (v := get(e, p)) is not None and isinstance(v, str | list) and arg in v


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, int | float):
        number = as_number(value)
        return number is not None and number == expected
    return bool(value == expected)
