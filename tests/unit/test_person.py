"""derive_person(): classification with history, first-ever flags, sessions — a function of the set."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from app.domain.model import Event, Stage
from app.domain.person import (
    EventFacts,
    SessionFacts,
    anonymous_person,
    derive_person,
    person_id_of,
    person_ids,
    user_person,
)
from app.domain.rules import CompiledRuleset
from app.pipeline.rulesets import default_ruleset
from tests.factories import T0, make_event, make_page, make_purchase, make_rule, make_ruleset, make_track

PERSON = "p1"
MIN = timedelta(minutes=1)


def current(_version: int | None) -> CompiledRuleset:
    return default_ruleset()


def derive(
    events: Iterable[Event], ruleset: CompiledRuleset | None = None
) -> tuple[dict[int, EventFacts], list[SessionFacts]]:
    rules = ruleset or default_ruleset()
    facts, sessions = derive_person(PERSON, list(events), lambda _v: rules)
    return {f.event_id: f for f in facts}, sessions


def snapshot(events: list[Event]) -> tuple[list[EventFacts], list[SessionFacts]]:
    facts, sessions = derive_person(PERSON, events, current)
    return sorted(facts, key=lambda f: f.event_id), sorted(sessions, key=lambda s: s.session_key)


def journey() -> list[Event]:
    """A week of one person: browsing, signup, two purchases, a review, a bot hit, explicit sessions."""
    return [
        make_page(at=timedelta(0), channel="Organic Search", device="mobile"),
        make_track("Product Viewed", at=5 * MIN),
        make_track("Signed Up", at=12 * MIN),
        make_purchase(30.0, at=timedelta(hours=3)),
        make_page(at=timedelta(hours=3, minutes=-1), channel="Email"),
        make_page(at=timedelta(days=1), session_hint="s-abc"),
        make_track("Product Added", at=timedelta(days=1, hours=2), session_hint="s-abc"),
        make_purchase(70.0, at=timedelta(days=2)),
        make_track("Product Reviewed", at=timedelta(days=3)),
        make_track("Survey Answered", at=timedelta(days=3, minutes=1), properties={"score": 10}),
        make_page(at=timedelta(minutes=-30), is_bot=True, device="bot"),
        make_purchase(999.0, at=timedelta(minutes=-20), is_bot=True),
        make_page(at=timedelta(days=3, minutes=1), message_id="zz-tie"),
        make_page(at=timedelta(days=3, minutes=1), message_id="aa-tie"),
    ]


@pytest.mark.parametrize("seed", range(12))
def test_facts_are_the_same_whatever_the_input_order(seed: int) -> None:
    events = journey()
    expected = snapshot(events)
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    assert snapshot(shuffled) == expected
    assert snapshot(list(reversed(events))) == expected


def test_journey_facts() -> None:
    events = journey()
    facts, sessions = derive(events)
    by_index = [facts[e.event_id] for e in events]
    assert [f.goal for f in by_index] == [
        "page_view",
        "product_view",
        "signup",
        "purchase",
        "page_view",
        "page_view",
        "add_to_cart",
        "repeat_purchase",
        "review",
        "nps",
        "page_view",
        "purchase",  # the bot's purchase: classified, but not counted in the person's history
        "page_view",
        "page_view",
    ]
    assert [f.is_first_event for f in by_index].count(True) == 1
    assert by_index[0].is_first_event
    assert by_index[3].is_first_order and not by_index[3].is_repeat_order
    assert by_index[7].is_repeat_order and not by_index[7].is_first_order
    assert by_index[7].stage is Stage.ENGAGE
    assert not by_index[11].is_first_order and not by_index[11].is_repeat_order
    assert by_index[2].is_lead
    assert by_index[9].nps_score == 10.0
    assert all(f.ruleset_version == 0 for f in by_index)
    # time-cut: [0, 5, 12 min], [2h59, 3h], [day 2], [day 3 x4]; plus the explicit s-abc session
    assert len(sessions) == 5
    assert sum(1 for s in sessions if s.session_key == f"{PERSON}|s|s-abc") == 1
    first_session = next(s for s in sessions if s.started_at == T0)
    assert (first_session.event_count, first_session.channel, first_session.device) == (3, "Organic Search", "mobile")


def test_late_arriving_earlier_purchase_turns_the_later_one_into_a_repeat() -> None:
    later = make_purchase(50.0, at=timedelta(days=2))
    alone, _ = derive([later])
    assert (alone[later.event_id].goal, alone[later.event_id].stage) == ("purchase", Stage.CONVERT)
    assert alone[later.event_id].is_first_order

    earlier = make_purchase(20.0, at=timedelta(days=1))  # arrives after `later`
    both, _ = derive([later, earlier])
    assert (both[earlier.event_id].goal, both[earlier.event_id].stage) == ("purchase", Stage.CONVERT)
    assert both[earlier.event_id].is_first_order and not both[earlier.event_id].is_repeat_order
    assert (both[later.event_id].goal, both[later.event_id].stage) == ("repeat_purchase", Stage.ENGAGE)
    assert both[later.event_id].is_repeat_order and not both[later.event_id].is_first_order
    assert both[later.event_id].is_order and both[later.event_id].value == 50.0


def test_simultaneous_first_purchases_exactly_one_converts_tie_broken_by_message_id() -> None:
    b = make_purchase(10.0, at=timedelta(0), message_id="b")
    a = make_purchase(10.0, at=timedelta(0), message_id="a")
    for order in ([a, b], [b, a]):
        facts, _ = derive(order)
        assert facts[a.event_id].goal == "purchase" and facts[a.event_id].is_first_order
        assert facts[b.event_id].goal == "repeat_purchase" and facts[b.event_id].is_repeat_order


def test_first_event_is_the_earliest_by_event_time_not_by_arrival() -> None:
    late = make_page(at=timedelta(hours=5))
    early = make_track("Product Viewed", at=timedelta(hours=1))
    facts, _ = derive([late, early])
    assert facts[early.event_id].is_first_event
    assert not facts[late.event_id].is_first_event


def test_first_order_is_not_the_first_event() -> None:
    visit = make_page(at=timedelta(0))
    order = make_purchase(5.0, at=10 * MIN)
    facts, _ = derive([order, visit])
    assert facts[visit.event_id].is_first_event and not facts[visit.event_id].is_first_order
    assert facts[order.event_id].is_first_order and not facts[order.event_id].is_first_event


def test_non_order_events_carry_no_order_flags() -> None:
    facts, _ = derive([make_page(), make_track("Signed Up", at=MIN)])
    for f in facts.values():
        assert not (f.is_order or f.is_first_order or f.is_repeat_order)


# ---- bots ---------------------------------------------------------------------------------------


def test_bot_events_are_never_first_and_have_no_session() -> None:
    bot = make_page(at=timedelta(0), is_bot=True, device="bot")
    human = make_page(at=timedelta(hours=1))
    facts, sessions = derive([bot, human])
    assert not facts[bot.event_id].is_first_event
    assert facts[human.event_id].is_first_event
    assert facts[bot.event_id].session_key is None
    assert [s.event_count for s in sessions] == [1]
    assert sessions[0].device != "bot"


def test_a_bot_purchase_is_not_a_first_order_and_does_not_make_the_human_one_a_repeat() -> None:
    bot_order = make_purchase(500.0, at=timedelta(0), is_bot=True)
    human_order = make_purchase(20.0, at=timedelta(hours=1))
    facts, _ = derive([bot_order, human_order])
    assert not facts[bot_order.event_id].is_first_order
    assert not facts[bot_order.event_id].is_repeat_order
    assert facts[human_order.event_id].goal == "purchase"
    assert facts[human_order.event_id].is_first_order


def test_a_bot_purchase_after_a_human_one_is_not_a_repeat_order() -> None:
    human_order = make_purchase(20.0, at=timedelta(0))
    bot_order = make_purchase(500.0, at=timedelta(hours=1), is_bot=True)
    facts, _ = derive([bot_order, human_order])
    assert facts[human_order.event_id].is_first_order
    assert not facts[bot_order.event_id].is_first_order
    assert not facts[bot_order.event_id].is_repeat_order


def test_bots_do_not_feed_the_history_rules_see() -> None:
    rules = make_ruleset(
        make_rule("big_spender", "engage", {"event": "check", "person.revenue_before": {"gte": 100}}),
        make_rule("loyal", "engage", {"event": "check", "person.days_since_first_seen": {"gte": 7}}),
        make_rule("known_lead", "engage", {"event": "check", "person.leads_before": {"gte": 1}}),
        make_rule("order", "convert", {"event": "buy"}, order=True),
        make_rule("lead", "act", {"event": "lead"}, lead=True),
        make_rule("other", "reach"),
    )
    bot_first = make_page(at=-timedelta(days=30), is_bot=True)
    bot_buy = make_track("buy", at=timedelta(0), properties={"revenue": 1000}, is_bot=True)
    bot_lead = make_track("lead", at=timedelta(0), is_bot=True)
    check = make_track("check", at=timedelta(days=1))
    visit = make_page(at=timedelta(0))
    facts, _ = derive([bot_first, bot_buy, bot_lead, visit, check], rules)
    assert facts[check.event_id].goal == "other"


def test_history_accumulates_revenue_leads_and_first_seen() -> None:
    rules = make_ruleset(
        make_rule("big_spender", "engage", {"event": "check", "person.revenue_before": {"gte": 100}}),
        make_rule("known_lead", "engage", {"event": "check", "person.leads_before": {"gte": 2}}),
        make_rule("loyal", "engage", {"event": "check", "person.days_since_first_seen": {"gte": 7}}),
        make_rule("order", "convert", {"event": "buy"}, order=True),
        make_rule("lead", "act", {"event": "lead"}, lead=True),
        make_rule("other", "reach"),
    )
    events = {
        "visit": make_page(at=timedelta(0)),
        "buy1": make_track("buy", at=timedelta(hours=1), properties={"revenue": 60}),
        "check1": make_track("check", at=timedelta(hours=2)),
        "buy2": make_track("buy", at=timedelta(hours=3), properties={"total": "50"}),
        "check2": make_track("check", at=timedelta(hours=4)),
        "lead1": make_track("lead", at=timedelta(days=8)),
        "lead2": make_track("lead", at=timedelta(days=8, hours=1)),
    }
    facts, _ = derive(events.values(), rules)
    assert facts[events["check1"].event_id].goal == "other"  # 60 earlier
    assert facts[events["check2"].event_id].goal == "big_spender"  # 110 earlier

    # a later check: revenue no longer first, two leads earlier wins over loyalty
    rules2 = make_ruleset(*[r for r in rules.source if r["goal"] != "big_spender"])
    late = make_track("check", at=timedelta(days=9))
    mid = make_track("check", at=timedelta(days=8, minutes=30))
    facts2, _ = derive([*events.values(), late, mid], rules2)
    assert facts2[late.event_id].goal == "known_lead"
    assert facts2[mid.event_id].goal == "loyal"  # one lead earlier, 8 days since the first visit


# ---- sessions -----------------------------------------------------------------------------------


def test_events_with_a_session_id_group_together_whatever_the_gap() -> None:
    a = make_page(at=timedelta(0), session_hint="s1")
    b = make_track("Product Added", at=timedelta(hours=5), session_hint="s1")
    c = make_page(at=timedelta(hours=2), session_hint="s2")
    facts, sessions = derive([a, b, c])
    by_key = {s.session_key: s for s in sessions}
    assert set(by_key) == {f"{PERSON}|s|s1", f"{PERSON}|s|s2"}
    s1 = by_key[f"{PERSON}|s|s1"]
    assert (s1.started_at, s1.ended_at, s1.event_count, s1.is_bounce) == (a.event_at, b.event_at, 2, False)
    assert facts[a.event_id].session_key == facts[b.event_id].session_key == s1.session_key
    assert facts[c.event_id].session_key == f"{PERSON}|s|s2"
    assert by_key[f"{PERSON}|s|s2"].is_bounce


@pytest.mark.parametrize(
    ("gap", "sessions"),
    [
        (timedelta(minutes=29, seconds=59), 1),
        (timedelta(minutes=30), 1),  # exactly 30 minutes stays one session
        (timedelta(minutes=30, seconds=1), 2),  # more than 30 minutes cuts
        (timedelta(hours=6), 2),
    ],
)
def test_thirty_minute_gap_cuts_sessions(gap: timedelta, sessions: int) -> None:
    first = make_page(at=timedelta(0))
    second = make_page(at=gap)
    facts, got = derive([second, first])
    assert len(got) == sessions
    same = facts[first.event_id].session_key == facts[second.event_id].session_key
    assert same is (sessions == 1)


def test_gaps_are_between_consecutive_events_not_from_the_session_start() -> None:
    events = [make_page(at=i * 20 * MIN) for i in range(5)]  # 80 minutes, 20-minute gaps
    facts, sessions = derive(events)
    assert len(sessions) == 1
    assert sessions[0].event_count == 5
    assert sessions[0].ended_at - sessions[0].started_at == 80 * MIN
    assert len({f.session_key for f in facts.values()}) == 1


def test_a_bot_event_does_not_bridge_a_gap() -> None:
    a = make_page(at=timedelta(0))
    bot = make_page(at=20 * MIN, is_bot=True)
    b = make_page(at=40 * MIN)
    facts, sessions = derive([a, bot, b])
    assert len(sessions) == 2
    assert facts[a.event_id].session_key != facts[b.event_id].session_key
    assert sorted(s.event_count for s in sessions) == [1, 1]


def test_every_human_event_has_a_session_that_exists() -> None:
    facts, sessions = derive(journey())
    keys = {s.session_key for s in sessions}
    for f in facts.values():
        assert f.session_key is None or f.session_key in keys
    counted = sum(s.event_count for s in sessions)
    assert counted == sum(1 for f in facts.values() if f.session_key is not None)
    assert counted == sum(1 for e in journey() if not e.is_bot)


@pytest.mark.parametrize(
    ("members", "bounce"),
    [
        ([{"type": "page"}], True),
        ([{"type": "screen"}], True),
        ([{"type": "track", "event_name": "Product Viewed"}], False),
        ([{"type": "identify"}], False),
        ([{"type": "page"}, {"type": "page"}], False),
        ([{"type": "page"}, {"type": "track", "event_name": "Signed Up"}], False),
    ],
)
def test_bounce_is_a_single_page_view_session(members: list[dict[str, Any]], bounce: bool) -> None:
    events = [make_event(at=i * MIN, **fields) for i, fields in enumerate(members)]
    _, sessions = derive(events)
    assert len(sessions) == 1
    assert sessions[0].is_bounce is bounce


def test_session_takes_channel_device_and_campaign_of_its_first_event() -> None:
    first = make_page(
        at=timedelta(0),
        channel="Paid Search",
        device="tablet",
        campaign={"source": "google", "medium": "cpc", "name": "brand"},
    )
    second = make_track("Product Viewed", at=5 * MIN, channel="Direct", device="desktop")
    _, sessions = derive([second, first])
    (session,) = sessions
    assert (session.channel, session.peso, session.device) == ("Paid Search", "Paid", "tablet")
    assert (session.campaign_source, session.campaign_medium, session.campaign_name) == ("google", "cpc", "brand")
    assert session.started_at == first.event_at
    assert session.session_key == f"{PERSON}|t|{first.message_id}"


def test_session_id_session_channel_is_its_earliest_event() -> None:
    later = make_page(at=10 * MIN, session_hint="s", channel="Direct")
    earlier = make_page(at=timedelta(0), session_hint="s", channel="Email")
    _, sessions = derive([later, earlier])
    assert [(s.channel, s.peso, s.started_at) for s in sessions] == [("Email", "Owned", earlier.event_at)]


def test_no_events_no_facts() -> None:
    assert derive_person(PERSON, [], current) == ([], [])


def test_only_bots_no_sessions_no_first_flags() -> None:
    bots = [make_page(at=i * MIN, is_bot=True) for i in range(3)]
    facts, sessions = derive(bots)
    assert sessions == []
    assert not any(f.is_first_event for f in facts.values())


# ---- nps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "score"),
    [
        ({"score": 9}, 9.0),
        ({"score": 0}, 0.0),
        ({"score": 10}, 10.0),
        ({"score": "7"}, 7.0),
        ({"score": 11}, None),
        ({"score": -1}, None),
        ({"score": "great"}, None),
    ],
)
def test_nps_score_extraction(properties: dict[str, Any], score: float | None) -> None:
    answer = make_track("Survey Answered", properties=properties)
    facts, _ = derive([answer])
    assert facts[answer.event_id].goal == "nps"
    assert facts[answer.event_id].nps_score == score


def test_nps_score_only_for_the_nps_goal() -> None:
    review = make_track("Product Reviewed", properties={"score": 9})
    facts, _ = derive([review])
    assert facts[review.event_id].goal == "review"
    assert facts[review.event_id].nps_score is None


def test_each_event_is_classified_under_its_own_ruleset_version() -> None:
    v3 = make_ruleset(make_rule("old_goal", "act"), version=3)
    versions: list[int | None] = []

    def ruleset_for(version: int | None) -> CompiledRuleset:
        versions.append(version)
        return v3 if version == 3 else default_ruleset()

    old = make_page(at=timedelta(0), ruleset_version=3)
    new = make_page(at=MIN)
    facts, _ = derive_person(PERSON, [new, old], ruleset_for)
    got = {f.event_id: f for f in facts}
    assert (got[old.event_id].goal, got[old.event_id].ruleset_version) == ("old_goal", 3)
    assert (got[new.event_id].goal, got[new.event_id].ruleset_version) == ("page_view", 0)
    assert set(versions) == {3, None}


def test_a_person_id_names_its_user_id_or_its_anonymous_id() -> None:
    assert person_id_of("42", "anon", {}) == user_person("42") == "u:42"
    assert person_id_of(None, "anon", {"anon": "42"}) == "u:42"
    assert person_id_of(None, "anon", {}) == anonymous_person("anon") == "a:anon"
    assert person_ids("u:42") == ("42", None)
    assert person_ids("a:anon:1/x") == (None, "anon:1/x")
    assert person_ids("u:") == ("", None)
    for bare in ("42", "U:42", "x:1", ""):
        assert person_ids(bare) == (None, None)
