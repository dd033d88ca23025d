"""Rule compilation: every operator, any/all/not, person.* history, and RuleError problems."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.domain.classify import classify
from app.domain.model import Event, PersonHistory, Stage
from app.domain.rules import RuleError, compile_ruleset
from tests.factories import T0, make_event, make_rule, make_ruleset, make_track


def matches(when: Any, event: Event, person: PersonHistory | None = None) -> bool:
    rules = make_ruleset(make_rule("g", "act", when))
    return classify(event, person or PersonHistory(), rules).stage is Stage.ACT


def with_props(**properties: Any) -> Event:
    return make_track("E", properties=properties)


MISSING = make_track("E", properties={})

# (field, matcher spec, event, expected)
PROPERTY_TABLE = [
    # eq (scalar shorthand and explicit), strings and numbers
    ("properties.plan", "pro", with_props(plan="pro"), True),
    ("properties.plan", "pro", with_props(plan="free"), False),
    ("properties.plan", {"eq": "pro"}, with_props(plan="pro"), True),
    ("properties.plan", {"eq": "pro"}, MISSING, False),
    ("properties.qty", {"eq": 2}, with_props(qty=2), True),
    ("properties.qty", {"eq": 2}, with_props(qty=2.0), True),
    ("properties.qty", {"eq": 2}, with_props(qty="2"), True),  # string numbers compare as numbers
    ("properties.qty", {"eq": 2}, with_props(qty=3), False),
    ("properties.qty", {"eq": 1}, with_props(qty=True), False),  # a boolean is not the number 1
    ("properties.gift", {"eq": True}, with_props(gift=True), True),
    ("properties.gift", {"eq": True}, with_props(gift=1), False),
    ("properties.gift", {"eq": False}, with_props(gift=False), True),
    ("properties.gift", {"eq": False}, MISSING, False),
    # ne
    ("properties.plan", {"ne": "pro"}, with_props(plan="free"), True),
    ("properties.plan", {"ne": "pro"}, with_props(plan="pro"), False),
    ("properties.plan", {"ne": "pro"}, MISSING, True),
    ("properties.qty", {"ne": 2}, with_props(qty="2"), False),
    # in (list shorthand and explicit)
    ("properties.plan", ["pro", "team"], with_props(plan="team"), True),
    ("properties.plan", ["pro", "team"], with_props(plan="free"), False),
    ("properties.plan", {"in": ["pro", "team"]}, with_props(plan="pro"), True),
    ("properties.plan", {"in": ["pro", "team"]}, MISSING, False),
    ("properties.qty", {"in": [1, 2]}, with_props(qty="2"), True),
    # gt / gte / lt / lte, with string numbers and non-numbers
    ("properties.total", {"gt": 5}, with_props(total=10), True),
    ("properties.total", {"gt": 5}, with_props(total=5), False),
    ("properties.total", {"gt": 5}, with_props(total="10.5"), True),
    ("properties.total", {"gt": 5}, with_props(total="lots"), False),
    ("properties.total", {"gt": 5}, with_props(total=True), False),
    ("properties.total", {"gt": 5}, MISSING, False),
    ("properties.total", {"gt": "5"}, with_props(total=6), True),  # numeric string bound
    ("properties.total", {"gte": 5}, with_props(total=5), True),
    ("properties.total", {"gte": 5}, with_props(total=4.99), False),
    ("properties.total", {"lt": 5}, with_props(total=4.99), True),
    ("properties.total", {"lt": 5}, with_props(total=5), False),
    ("properties.total", {"lt": 5}, MISSING, False),
    ("properties.total", {"lte": 5}, with_props(total=5), True),
    ("properties.total", {"lte": 5}, with_props(total=5.01), False),
    ("properties.total", {"gte": 1, "lt": 5}, with_props(total=3), True),  # several ops: all must hold
    ("properties.total", {"gte": 1, "lt": 5}, with_props(total=5), False),
    # exists
    ("properties.coupon", {"exists": True}, with_props(coupon="X"), True),
    ("properties.coupon", {"exists": True}, with_props(coupon=""), True),
    ("properties.coupon", {"exists": True}, with_props(coupon=None), False),
    ("properties.coupon", {"exists": True}, MISSING, False),
    ("properties.coupon", {"exists": False}, MISSING, True),
    ("properties.coupon", {"exists": False}, with_props(coupon="X"), False),
    # contains: substring of a string, member of a list
    ("properties.title", {"contains": "plan"}, with_props(title="premium plan"), True),
    ("properties.title", {"contains": "plan"}, with_props(title="premium"), False),
    ("properties.tags", {"contains": "sale"}, with_props(tags=["new", "sale"]), True),
    ("properties.tags", {"contains": "sale"}, with_props(tags=["new", "sales"]), False),
    ("properties.tags", {"contains": "5"}, with_props(tags=5), False),
    ("properties.tags", {"contains": "sale"}, MISSING, False),
    # regex: search (unanchored unless anchored), strings only
    ("properties.sku", {"regex": r"^SKU-\d+$"}, with_props(sku="SKU-12"), True),
    ("properties.sku", {"regex": r"^SKU-\d+$"}, with_props(sku="xSKU-12"), False),
    ("properties.sku", {"regex": r"SKU"}, with_props(sku="the-SKU-thing"), True),
    ("properties.sku", {"regex": r"\d+"}, with_props(sku=12), False),
    ("properties.sku", {"regex": r".*"}, MISSING, False),
    # glob: whole-string match
    ("properties.file", {"glob": "*.pdf"}, with_props(file="report.pdf"), True),
    ("properties.file", {"glob": "*.pdf"}, with_props(file="report.pdf.exe"), False),
    ("properties.file", {"glob": "report-?.pdf"}, with_props(file="report-7.pdf"), True),
    ("properties.file", {"glob": "report-?.pdf"}, with_props(file="old-report-7.pdf"), False),
    ("properties.file", {"glob": "*"}, MISSING, False),
    # prefix
    ("properties.path", {"prefix": "/blog"}, with_props(path="/blog/post"), True),
    ("properties.path", {"prefix": "/blog"}, with_props(path="/blo"), False),
    ("properties.path", {"prefix": "/blog"}, with_props(path=["/blog"]), False),
    # nested paths
    ("properties.address.city", "Paris", with_props(address={"city": "Paris"}), True),
    ("properties.address.city", "Paris", with_props(address="Paris"), False),
    ("properties.address.city", {"exists": True}, with_props(address={}), False),
]


@pytest.mark.parametrize(("field", "spec", "event", "expected"), PROPERTY_TABLE)
def test_property_operators(field: str, spec: Any, event: Event, expected: bool) -> None:
    assert matches({field: spec}, event) is expected


PAGE = make_event(
    type="page",
    name="Pricing",
    path="/pricing/teams",
    url="https://shop.example.com/pricing/teams?x=1",
    referrer="https://www.google.com/search?q=shop",
    channel="Organic Search",
    campaign={"source": "newsletter", "medium": "email", "name": "spring-sale"},
)

TEXT_TABLE = [
    ("type", "page", True),
    ("type", {"ne": "page"}, False),
    ("type", ["page", "screen"], True),
    ("name", "Pricing", True),
    ("name", {"exists": True}, True),
    ("event", {"exists": False}, True),  # a page has no event name
    ("event", {"exists": True}, False),
    ("path", {"prefix": "/pricing"}, True),
    ("path", {"prefix": "/blog"}, False),
    ("path", {"glob": "/pricing/*"}, True),
    ("path", {"glob": "/pricing"}, False),
    ("path", {"regex": "^/pricing/(teams|solo)$"}, True),
    ("url", {"contains": "x=1"}, True),
    ("url", {"regex": r"^https://shop\.example\.com/"}, True),
    ("url", {"eq": "https://shop.example.com/pricing/teams"}, False),
    ("referrer", {"contains": "google"}, True),
    ("referrer", {"exists": False}, False),
    ("channel", "Organic Search", True),
    ("channel", {"in": ["Paid Search", "Display"]}, False),
    ("campaign.source", "newsletter", True),
    ("campaign.medium", {"in": ["email", "newsletter"]}, True),
    ("campaign.name", {"glob": "spring-*"}, True),
    ("campaign.term", {"exists": False}, True),
    ("campaign.content", {"exists": True}, False),
]


@pytest.mark.parametrize(("field", "spec", "expected"), TEXT_TABLE)
def test_text_and_campaign_fields(field: str, spec: Any, expected: bool) -> None:
    assert matches({field: spec}, PAGE) is expected


def test_event_name_exact_in_glob_and_regex() -> None:
    cart = make_track("Product Added")
    assert matches({"event": "Product Added"}, cart)
    assert not matches({"event": "Product"}, cart)
    assert matches({"event": {"in": ["x", "Product Added"]}}, cart)
    assert matches({"event": {"glob": "Product *"}}, cart)
    assert not matches({"event": {"glob": "product *"}}, cart)  # case-sensitive
    assert matches({"event": {"regex": "(?i)^product"}}, cart)


HISTORY = PersonHistory(orders_before=2, revenue_before=150.0, leads_before=1, first_seen_at=T0 - timedelta(days=10))

PERSON_TABLE = [
    ("person.orders_before", {"gte": 2}, True),
    ("person.orders_before", {"gt": 2}, False),
    ("person.orders_before", 2, True),
    ("person.orders_before", {"in": [0, 1]}, False),
    ("person.orders_before", {"ne": 0}, True),
    ("person.revenue_before", {"gt": 100}, True),
    ("person.revenue_before", {"lte": 149.99}, False),
    ("person.leads_before", {"eq": 1}, True),
    ("person.leads_before", {"lt": 1}, False),
    ("person.days_since_first_seen", {"gte": 10}, True),
    ("person.days_since_first_seen", {"gt": 10}, False),
    ("person.days_since_first_seen", {"lt": 10.5}, True),
]


@pytest.mark.parametrize(("field", "spec", "expected"), PERSON_TABLE)
def test_person_history_conditions(field: str, spec: Any, expected: bool) -> None:
    assert matches({field: spec}, make_track("E", event_at=T0), HISTORY) is expected


def test_days_since_first_seen_is_fractional_and_zero_without_history() -> None:
    half_day = PersonHistory(first_seen_at=T0 - timedelta(hours=12))
    event = make_track("E", event_at=T0)
    assert matches({"person.days_since_first_seen": {"eq": 0.5}}, event, half_day)
    assert matches({"person.days_since_first_seen": {"eq": 0}}, event, PersonHistory())
    assert not matches({"person.days_since_first_seen": {"gt": 0}}, event, PersonHistory())


# ---- any / all / not ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "event", "expected"),
    [
        ({"any": [{"event": "a"}, {"event": "b"}]}, make_track("a"), True),
        ({"any": [{"event": "a"}, {"event": "b"}]}, make_track("b"), True),
        ({"any": [{"event": "a"}, {"event": "b"}]}, make_track("c"), False),
        ({"all": [{"properties.x": {"gt": 1}}, {"properties.x": {"lt": 5}}]}, with_props(x=3), True),
        ({"all": [{"properties.x": {"gt": 1}}, {"properties.x": {"lt": 5}}]}, with_props(x=7), False),
        ({"not": {"event": "a"}}, make_track("a"), False),
        ({"not": {"event": "a"}}, make_track("b"), True),
        # not negates the conjunction of its entries
        ({"not": {"event": "E", "properties.x": 1}}, with_props(x=1), False),
        ({"not": {"event": "E", "properties.x": 1}}, with_props(x=2), True),
        # an any-group holds only when all of its own entries hold
        ({"any": [{"event": "E", "properties.x": 1}, {"event": "zzz"}]}, with_props(x=2), False),
        ({"any": [{"event": "E", "properties.x": 1}, {"event": "zzz"}]}, with_props(x=1), True),
        # nesting, and entries beside a combinator are ANDed with it
        ({"type": "track", "not": {"any": [{"event": "a"}, {"event": "b"}]}}, make_track("c"), True),
        ({"type": "track", "not": {"any": [{"event": "a"}, {"event": "b"}]}}, make_track("b"), False),
        ({"type": "page", "not": {"any": [{"event": "a"}, {"event": "b"}]}}, make_track("c"), False),
        ({}, make_event(type="identify"), True),  # no conditions: always holds
    ],
)
def test_combinators(when: dict[str, Any], event: Event, expected: bool) -> None:
    assert matches(when, event) is expected


def test_missing_when_matches_everything() -> None:
    rules = make_ruleset({"goal": "all", "stage": "reach"})
    assert classify(make_event(type="alias"), PersonHistory(), rules).goal == "all"


def test_compile_accepts_a_bare_list_and_keeps_source_and_version() -> None:
    doc = [make_rule("a", "act", {"event": "a"}), make_rule("b", "engage", {"event": "b"}, lead=True)]
    rules = compile_ruleset(doc, version=5)
    assert rules.version == 5
    assert [r.goal for r in rules.rules] == ["a", "b"]
    assert [r.stage for r in rules.rules] == [Stage.ACT, Stage.ENGAGE]
    assert rules.rules[1].lead is True
    assert rules.source == tuple(doc)


# ---- compile errors -----------------------------------------------------------------------------


def rule_error(doc: Any) -> RuleError:
    with pytest.raises(RuleError) as caught:
        compile_ruleset(doc)
    assert isinstance(caught.value, ValueError)
    return caught.value


# (rules, rule index, goal, field, words in the message)
ERROR_TABLE = [
    pytest.param(
        [make_rule("g", "act", {"properties.sku": {"regex": "("}})],
        0,
        "g",
        "when.properties.sku.regex",
        "invalid regex",
        id="bad-regex",
    ),
    pytest.param(
        [make_rule("ok", "act"), make_rule("g", "act", {"path": {"regex": "[a-"}})],
        1,
        "g",
        "when.path.regex",
        "invalid regex",
        id="bad-regex-second-rule",
    ),
    pytest.param(
        [make_rule("g", "act", {"colour": "red"})], 0, "g", "when.colour", "unknown field", id="unknown-field"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties": 1})], 0, "g", "when.properties", "unknown field", id="bare-props"
    ),
    pytest.param(
        [make_rule("g", "act", {"person.age": {"gt": 1}})], 0, "g", "when.person.age", "unknown field", id="pf"
    ),
    pytest.param([make_rule("g", "act", {"campaign.foo": "x"})], 0, "g", "when.campaign.foo", "unknown field", id="cf"),
    pytest.param(
        [make_rule("g", "act", {"any": [{"event": "a"}, {"colour": "x"}]})],
        0,
        "g",
        "when.any[1].colour",
        "unknown field",
        id="unknown-field-nested",
    ),
    pytest.param([make_rule("g", "act", colour="red")], 0, "g", "colour", "unknown field", id="unknown-rule-key"),
    pytest.param(
        [make_rule("g", "act", {"event": {"gt": 1}})], 0, "g", "when.event.gt", "unknown operator", id="text-gt"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"between": [1, 2]}})],
        0,
        "g",
        "when.properties.x.between",
        "unknown operator",
        id="unknown-op",
    ),
    pytest.param(
        [make_rule("g", "act", {"person.orders_before": {"exists": True}})],
        0,
        "g",
        "when.person.orders_before.exists",
        "unknown operator",
        id="person-exists",
    ),
    pytest.param(
        [make_rule("g", "act", {"person.orders_before": {"regex": "1"}})],
        0,
        "g",
        "when.person.orders_before.regex",
        "unknown operator",
        id="person-regex",
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"gt": "abc"}})], 0, "g", "when.properties.x.gt", "number", id="gt-str"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"lte": True}})], 0, "g", "when.properties.x.lte", "number", id="lte-b"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"in": "abc"}})], 0, "g", "when.properties.x.in", "list", id="in-str"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"in": []}})], 0, "g", "when.properties.x.in", "list", id="in0"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"exists": "yes"}})],
        0,
        "g",
        "when.properties.x.exists",
        "true or false",
        id="exists-str",
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"eq": [1]}})], 0, "g", "when.properties.x.eq", "scalar", id="eq-list"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"ne": {"a": 1}}})], 0, "g", "when.properties.x.ne", "scalar", id="ne-d"
    ),
    pytest.param(
        [make_rule("g", "act", {"properties.x": {"regex": 5}})], 0, "g", "when.properties.x.regex", "string", id="re-5"
    ),
    pytest.param([make_rule("g", "act", {"path": {"glob": None}})], 0, "g", "when.path.glob", "string", id="glob-none"),
    pytest.param(
        [make_rule("g", "act", {"url": {"contains": 1}})], 0, "g", "when.url.contains", "string", id="contains-int"
    ),
    pytest.param([make_rule("g", "act", lead="yes")], 0, "g", "lead", "true or false", id="lead-str"),
    pytest.param([make_rule("g", "act", order=1)], 0, "g", "order", "true or false", id="order-int"),
    pytest.param([make_rule("g", "act", value="revenue")], 0, "g", "value", "properties.", id="value-path"),
    pytest.param([make_rule("g", "act", value=5)], 0, "g", "value", "properties.", id="value-int"),
    pytest.param([make_rule("g", "act", when=["event"])], 0, "g", "when", "mapping", id="when-list"),
    pytest.param([make_rule("g", "act", {"any": []})], 0, "g", "when.any", "non-empty list", id="any-empty"),
    pytest.param([make_rule("g", "act", {"all": {"event": "x"}})], 0, "g", "when.all", "non-empty list", id="all-d"),
    pytest.param([make_rule("g", "act", {"not": ["x"]})], 0, "g", "when.not", "mapping", id="not-list"),
    pytest.param([make_rule("g", "act", {"any": [1]})], 0, "g", "when.any[0]", "mapping", id="any-item"),
    pytest.param([make_rule("g", "act"), make_rule("g", "engage")], 1, "g", "goal", "duplicate goal", id="dup-goal"),
    pytest.param([make_rule("g", "awareness")], 0, "g", "stage", "reach, act, convert, engage", id="unknown-stage"),
    pytest.param([make_rule("g", "none")], 0, "g", "stage", "reach, act, convert, engage", id="stage-none"),
    pytest.param([make_rule("g", "ACT")], 0, "g", "stage", "reach, act, convert, engage", id="stage-case"),
    pytest.param([{"goal": "g"}], 0, "g", "stage", "reach, act, convert, engage", id="stage-missing"),
    pytest.param([{"stage": "act"}], 0, None, "goal", "non-empty string", id="goal-missing"),
    pytest.param([make_rule("", "act")], 0, "", "goal", "non-empty string", id="goal-empty"),
    pytest.param([make_rule(5, "act")], 0, 5, "goal", "non-empty string", id="goal-int"),  # type: ignore[arg-type]
    pytest.param(["purchase"], 0, None, "rule", "mapping", id="rule-not-mapping"),
]


@pytest.mark.parametrize(("doc", "index", "goal", "field", "words"), ERROR_TABLE)
def test_compile_errors_name_rule_goal_and_field(doc: Any, index: int, goal: Any, field: str, words: str) -> None:
    problems = rule_error({"rules": doc}).problems
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem["rule"], problem["goal"], problem["field"]) == (index, goal, field)
    assert words in problem["message"]
    assert problem["message"].startswith(f"rule {index}")
    assert field in problem["message"]
    if goal:
        assert f"({goal})" in problem["message"]


@pytest.mark.parametrize("doc", [[], {"rules": []}, {}, None, "rules", {"rules": "x"}, {"rules": {"goal": "g"}}])
def test_empty_or_missing_rules_are_refused(doc: Any) -> None:
    problems = rule_error(doc).problems
    assert problems == [
        {"rule": None, "goal": None, "field": "rules", "message": "ruleset: rules: rules must be a non-empty list"}
    ]


def test_every_broken_rule_is_reported_not_only_the_first() -> None:
    doc = [
        make_rule("a", "act", {"colour": "red"}),
        make_rule("b", "act", {"event": "b"}),
        make_rule("c", "sideways", {"properties.x": {"regex": "("}}),
    ]
    error = rule_error(doc)
    assert {(p["rule"], p["goal"], p["field"]) for p in error.problems} == {
        (0, "a", "when.colour"),
        (2, "c", "stage"),
        (2, "c", "when.properties.x.regex"),
    }
    assert "rule 0 (a): when.colour: unknown field" in str(error)
    assert "rule 2 (c): stage:" in str(error)


def test_a_rule_with_several_problems_reports_each() -> None:
    error = rule_error([{"goal": "g", "stage": "x", "lead": "no", "order": "no", "colour": 1}])
    assert sorted(p["field"] for p in error.problems) == ["colour", "lead", "order", "stage"]
    assert all(p["rule"] == 0 and p["goal"] == "g" for p in error.problems)


@pytest.mark.parametrize("stage", [["act"], {"name": "act"}])
def test_unhashable_stage_is_a_rule_error(stage: Any) -> None:
    problems = rule_error([make_rule("g", stage)]).problems
    assert [(p["rule"], p["goal"], p["field"]) for p in problems] == [(0, "g", "stage")]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"goal": "a", "stage": "act", "when": {"event": {}}}, "when.event"),
        ({"goal": "a", "stage": "act", "value": "properties."}, "value"),
    ],
)
def test_empty_matcher_and_empty_value_path_are_refused(rule: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_ruleset({"rules": [rule]})
    assert [p["field"] for p in caught.value.problems] == [field]
