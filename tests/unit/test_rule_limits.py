"""Ruleset bounds: alias bombs, too many rules or conditions, deep nesting, long patterns, and
regexes that would backtrack are refused naming the rule and field; RE2 matches in linear time."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from app.domain.rule_limits import MAX_ALIASES, MAX_CONDITIONS, MAX_PATTERN, MAX_RULES, DocumentError, load_yaml
from app.domain.rules import RuleError, compile_ruleset
from tests.factories import make_history, make_rule, make_ruleset, make_track


def alias_bomb(levels: int = 7, fan: int = 9) -> str:
    lines = ['a0: &a0 ["x"]']
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(fan))
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append(f"rules: [{{goal: g, stage: act, when: {{event: {{in: *a{levels}}}}}}}]")
    return "\n".join(lines)


@pytest.fixture(params=["libyaml", "python"])
def yaml_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """load_yaml runs on libyaml when PyYAML has it, else on the pure-Python loader: both bounded."""
    if request.param == "python":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    else:
        assert yaml.__with_libyaml__, "PyYAML without libyaml: the C path is not tested"
    return str(request.param)


def refused(document: Any) -> dict[str, Any]:
    with pytest.raises(RuleError) as caught:
        compile_ruleset(document)
    problem: dict[str, Any] = caught.value.problems[0]
    return problem


@pytest.mark.usefixtures("yaml_engine")
def test_the_391_byte_alias_bomb_is_refused_while_loading() -> None:
    text = alias_bomb()
    assert len(text) < 500
    with pytest.raises(DocumentError) as caught:
        load_yaml(text)
    assert str(MAX_ALIASES) in caught.value.message


@pytest.mark.usefixtures("yaml_engine")
def test_few_aliases_that_expand_hugely_are_refused_by_size() -> None:
    document = load_yaml(alias_bomb(levels=4, fan=9))  # 36 aliases, 6561 values once expanded
    problem = refused(document)
    assert (problem["rule"], problem["field"]) == (0, "rule")


@pytest.mark.usefixtures("yaml_engine")
def test_ordinary_aliases_still_work() -> None:
    document = load_yaml(
        "names: &names [Order Completed, purchase]\n"
        "rules:\n  - {goal: buy, stage: convert, order: true, when: {event: {in: *names}}}\n"
    )
    assert compile_ruleset(document).rules[0].goal == "buy"


@pytest.mark.usefixtures("yaml_engine")
def test_python_objects_are_not_constructed() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']")


def test_too_many_rules() -> None:
    problem = refused([make_rule(f"g{i}", "act") for i in range(MAX_RULES + 1)])
    assert (problem["rule"], problem["field"]) == (None, "rules")


def test_too_many_conditions_names_the_rule() -> None:
    when = {"any": [{f"properties.p{i}": {"eq": i}} for i in range(MAX_CONDITIONS + 1)]}
    problem = refused([make_rule("ok", "act"), make_rule("wide", "act", when)])
    assert (problem["rule"], problem["goal"], problem["field"]) == (1, "wide", "when")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    when: dict[str, Any] = {"event": "x"}
    for _ in range(5000):
        when = {"not": when}
    problem = refused([make_rule("deep", "act", when)])
    assert problem["rule"] == 0
    assert "nested deeper" in problem["message"]


@pytest.mark.parametrize("op", ["regex", "glob", "prefix", "eq"])
def test_long_patterns_are_refused(op: str) -> None:
    problem = refused([make_rule("long", "act", {"path": {op: "a" * (MAX_PATTERN + 1)}})])
    assert problem["field"] == f"when.path.{op}"


def test_a_nul_in_a_rule_is_refused() -> None:
    problem = refused([make_rule("nul", "act", {"event": "a\x00b"})])
    assert (problem["rule"], problem["field"]) == (0, "when.event")


@pytest.mark.parametrize("pattern", [r"(a)\1", r"^(?=x)", r"(?<!a)b"])
def test_backreferences_and_lookaround_are_refused(pattern: str) -> None:
    problem = refused([make_rule("re", "act", {"path": {"regex": pattern}})])
    assert problem["field"] == "when.path.regex"
    assert "RE2" in problem["message"]


def test_a_catastrophic_pattern_matches_in_linear_time() -> None:
    # (a+)+$ on "aaaa...b" takes exponential time in a backtracking engine; RE2 answers at once.
    ruleset = make_ruleset(make_rule("evil", "act", {"event": {"regex": r"^(a+)+$"}}))
    event = make_track("a" * 5000 + "b")
    from app.domain.classify import classify

    assert classify(event, make_history(), ruleset).goal is None
    assert classify(make_track("a" * 5000), make_history(), ruleset).goal == "evil"
