"""The shipped default ruleset (DESIGN §3 table) and the value path, through classify()."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.classify import classify, explain, value_of
from app.domain.model import PersonHistory, Stage
from app.pipeline.rulesets import default_document, default_ruleset
from tests.factories import make_event, make_history, make_rule, make_ruleset, make_track

RULES = default_ruleset()

EXPECTED_GOAL_ORDER = [
    "repeat_purchase",
    "purchase",
    "signup",
    "newsletter",
    "add_to_cart",
    "product_view",
    "social",
    "review",
    "nps",
    "page_view",
]


def test_default_ruleset_has_the_documented_goals_in_order() -> None:
    assert [r.goal for r in RULES.rules] == EXPECTED_GOAL_ORDER
    assert RULES.version == 0
    assert len(RULES.source) == len(default_document()["rules"])


# (event name, goal, stage, lead, order) — Segment e-commerce names and snake_case aliases
TRACK_TABLE = [
    ("Order Completed", "purchase", Stage.CONVERT, False, True),
    ("purchase", "purchase", Stage.CONVERT, False, True),
    ("Signed Up", "signup", Stage.ACT, True, False),
    ("signup", "signup", Stage.ACT, True, False),
    ("Newsletter Subscribed", "newsletter", Stage.ACT, True, False),
    ("newsletter_signup", "newsletter", Stage.ACT, True, False),
    ("Product Added", "add_to_cart", Stage.ACT, False, False),
    ("add_to_cart", "add_to_cart", Stage.ACT, False, False),
    ("Product Viewed", "product_view", Stage.ACT, False, False),
    ("product_view", "product_view", Stage.ACT, False, False),
    ("Product Shared", "social", Stage.ACT, False, False),
    ("Comment Posted", "social", Stage.ACT, False, False),
    ("Content Liked", "social", Stage.ACT, False, False),
    ("product_shared", "social", Stage.ACT, False, False),
    ("comment_posted", "social", Stage.ACT, False, False),
    ("content_liked", "social", Stage.ACT, False, False),
    ("share", "social", Stage.ACT, False, False),
    ("comment", "social", Stage.ACT, False, False),
    ("like", "social", Stage.ACT, False, False),
    ("Product Reviewed", "review", Stage.ENGAGE, False, False),
    ("review", "review", Stage.ENGAGE, False, False),
]


@pytest.mark.parametrize(("event_name", "goal", "stage", "lead", "order"), TRACK_TABLE)
def test_default_track_rules(event_name: str, goal: str, stage: Stage, lead: bool, order: bool) -> None:
    got = classify(make_track(event_name), PersonHistory(), RULES)
    assert (got.goal, got.stage, got.lead, got.order) == (goal, stage, lead, order)
    assert got.ruleset_version == 0


@pytest.mark.parametrize("event_name", ["Order Completed", "purchase"])
def test_first_purchase_converts_a_repeat_engages(event_name: str) -> None:
    first = classify(make_track(event_name), PersonHistory(orders_before=0), RULES)
    assert (first.goal, first.stage, first.order) == ("purchase", Stage.CONVERT, True)
    repeat = classify(make_track(event_name), PersonHistory(orders_before=1), RULES)
    assert (repeat.goal, repeat.stage, repeat.order, repeat.lead) == ("repeat_purchase", Stage.ENGAGE, True, False)
    many = classify(make_track(event_name), PersonHistory(orders_before=7), RULES)
    assert many.goal == "repeat_purchase"


def test_earlier_revenue_or_leads_alone_do_not_make_a_repeat() -> None:
    history = PersonHistory(orders_before=0, revenue_before=500.0, leads_before=3)
    assert classify(make_track("Order Completed"), history, RULES).goal == "purchase"


@pytest.mark.parametrize(
    ("event_name", "properties", "goal", "stage"),
    [
        ("Survey Answered", {"score": 9}, "nps", Stage.ENGAGE),
        ("survey_answered", {"score": 3}, "nps", Stage.ENGAGE),
        ("Survey Answered", {"score": 0}, "nps", Stage.ENGAGE),  # 0 is a score, not "missing"
        ("Survey Answered", {"score": "8"}, "nps", Stage.ENGAGE),
        ("Survey Answered", {}, None, Stage.NONE),
        ("Survey Answered", {"score": None}, None, Stage.NONE),
        ("Survey Answered", {"rating": 9}, None, Stage.NONE),
    ],
)
def test_nps_requires_properties_score(
    event_name: str, properties: dict[str, Any], goal: str | None, stage: Stage
) -> None:
    got = classify(make_track(event_name, properties=properties), PersonHistory(), RULES)
    assert (got.goal, got.stage) == (goal, stage)


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_are_reach(kind: str) -> None:
    got = classify(make_event(type=kind, name="Home"), PersonHistory(), RULES)
    assert (got.goal, got.stage, got.lead, got.order) == ("page_view", Stage.REACH, False, False)


@pytest.mark.parametrize(
    ("kind", "event_name"),
    [
        ("identify", None),
        ("alias", None),
        ("group", None),
        ("identify", "Signed Up"),  # only track messages reach the named-event rules
        ("track", "Something Custom"),
        ("track", "order completed"),  # event names are exact
        ("track", "Order Completed "),
    ],
)
def test_unmatched_events_get_stage_none(kind: str, event_name: str | None) -> None:
    got = classify(make_event(type=kind, event_name=event_name), PersonHistory(), RULES)
    assert got.stage is Stage.NONE
    assert (got.goal, got.value, got.lead, got.order) == (None, None, False, False)
    assert got.ruleset_version == 0


def test_a_page_carrying_a_purchase_event_name_is_still_a_page_view() -> None:
    got = classify(make_event(type="page", event_name="Order Completed"), PersonHistory(), RULES)
    assert got.goal == "page_view"


# ---- value path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        ({"revenue": 10, "total": 20, "value": 30}, 10.0),
        ({"total": 20, "value": 30}, 20.0),
        ({"value": 30}, 30.0),
        ({"revenue": "12.50"}, 12.5),
        ({"revenue": "abc", "total": "7"}, 7.0),
        ({"revenue": None, "value": 4}, 4.0),
        ({"revenue": 0, "total": 5}, 0.0),  # zero is a value; no fall-through
        ({"revenue": True, "total": 3}, 3.0),  # booleans are not numbers
        ({"revenue": [1], "total": {"x": 1}, "value": "9"}, 9.0),
        ({"revenue": "NaN", "total": "inf", "value": -2.5}, -2.5),
        ({}, None),
        ({"price": 99}, None),
    ],
)
def test_default_value_path_order(properties: dict[str, Any], value: float | None) -> None:
    got = classify(make_track("Order Completed", properties=properties), PersonHistory(), RULES)
    assert got.value == value


def test_explicit_value_path_replaces_the_defaults() -> None:
    rules = make_ruleset(make_rule("order", "convert", {"event": "Order"}, value="properties.amount.gross", order=True))
    nested = make_track("Order", properties={"amount": {"gross": "19.90"}, "revenue": 5})
    assert classify(nested, PersonHistory(), rules).value == pytest.approx(19.9)
    no_amount = make_track("Order", properties={"revenue": 5, "total": 6})
    assert classify(no_amount, PersonHistory(), rules).value is None
    assert value_of(nested, rules.rules[0]) == pytest.approx(19.9)


def test_first_matching_rule_decides_and_carries_its_version() -> None:
    rules = make_ruleset(
        make_rule("specific", "convert", {"event": "X", "properties.plan": "pro"}),
        make_rule("general", "act", {"event": "X"}),
        version=7,
    )
    pro = classify(make_track("X", properties={"plan": "pro"}), PersonHistory(), rules)
    free = classify(make_track("X", properties={"plan": "free"}), PersonHistory(), rules)
    assert (pro.goal, pro.stage, pro.ruleset_version) == ("specific", Stage.CONVERT, 7)
    assert (free.goal, free.stage, free.ruleset_version) == ("general", Stage.ACT, 7)


def test_flags_default_to_false() -> None:
    rules = make_ruleset(make_rule("g", "act"))
    got = classify(make_track("anything"), PersonHistory(), rules)
    assert (got.lead, got.order) == (False, False)


# ---- explain ------------------------------------------------------------------------------------


def test_explain_first_purchase_stops_at_the_match() -> None:
    steps = explain(make_track("Order Completed"), make_history(orders_before=0), RULES)
    assert steps == [
        {"rule": 0, "goal": "repeat_purchase", "matched": False, "failed": ["person.orders_before gte 1"]},
        {"rule": 1, "goal": "purchase", "matched": True, "failed": []},
    ]


def test_explain_repeat_purchase_matches_rule_zero() -> None:
    steps = explain(make_track("purchase"), make_history(orders_before=2), RULES)
    assert steps == [{"rule": 0, "goal": "repeat_purchase", "matched": True, "failed": []}]


def test_explain_unmatched_event_lists_every_rule_with_its_failures() -> None:
    steps = explain(make_event(type="identify"), PersonHistory(), RULES)
    assert [s["rule"] for s in steps] == list(range(len(RULES.rules)))
    assert not any(s["matched"] for s in steps)
    assert steps[1]["failed"] == ["type eq 'track'", "event in ['Order Completed', 'purchase']"]
    assert steps[-1] == {"rule": 9, "goal": "page_view", "matched": False, "failed": ["type in ['page', 'screen']"]}


def test_explain_page_view_reports_what_failed_above_it() -> None:
    steps = explain(make_event(type="page"), PersonHistory(), RULES)
    assert steps[-1] == {"rule": 9, "goal": "page_view", "matched": True, "failed": []}
    # page fails rule 0 on type, event name and (orders_before 0) history
    assert steps[0]["failed"] == [
        "type eq 'track'",
        "event in ['Order Completed', 'purchase']",
        "person.orders_before gte 1",
    ]


def test_explain_names_combined_conditions() -> None:
    rules = make_ruleset(
        make_rule("a", "act", {"any": [{"event": "x"}, {"event": "y"}]}),
        make_rule("b", "act", {"not": {"event": "z"}}),
    )
    steps = explain(make_track("z"), PersonHistory(), rules)
    assert steps == [
        {"rule": 0, "goal": "a", "matched": False, "failed": ["(event eq 'x') any (event eq 'y')"]},
        {"rule": 1, "goal": "b", "matched": False, "failed": ["not(event eq 'z')"]},
    ]


def test_explain_agrees_with_classify() -> None:
    for event in [make_track("signup"), make_track("review"), make_event(type="screen"), make_track("nope")]:
        steps = explain(event, PersonHistory(), RULES)
        got = classify(event, PersonHistory(), RULES)
        matched = [s["goal"] for s in steps if s["matched"]]
        assert matched == ([got.goal] if got.goal else [])
