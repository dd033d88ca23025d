"""Everything derived from one person's events: classification with history, first-ever flags,
and sessions (DESIGN §3-§4). Pure: no I/O.

The result is a function of the *set* of events, never of their arrival order: events are walked
in event time (ties broken by messageId), so a late-arriving earlier event changes what follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.channels import peso_of
from app.domain.classify import classify
from app.domain.model import Event, PersonHistory, Stage
from app.domain.rules import CompiledRuleset, as_number, lookup

SESSION_GAP = timedelta(minutes=30)
PAGE_TYPES = frozenset({"page", "screen"})
NPS_GOAL = "nps"


@dataclass(slots=True)  # not frozen, never changed: see Event
class EventFacts:
    event_id: int
    stage: Stage
    goal: str | None
    value: float | None
    is_lead: bool
    is_order: bool
    is_first_event: bool
    is_first_order: bool
    is_repeat_order: bool
    session_key: str | None
    nps_score: float | None
    ruleset_version: int


@dataclass(slots=True)  # not frozen, never changed: see Event
class SessionFacts:
    session_key: str
    started_at: datetime
    ended_at: datetime
    event_count: int
    is_bounce: bool
    channel: str
    peso: str
    device: str
    campaign_source: str | None
    campaign_medium: str | None
    campaign_name: str | None


def event_order(event: Event) -> tuple[datetime, str]:
    return (event.event_at, event.message_id)


def derive_person(
    person_id: str, events: Iterable[Event], ruleset_for: Callable[[int | None], CompiledRuleset]
) -> tuple[list[EventFacts], list[SessionFacts]]:
    """Every fact of a person from all of their events. ruleset_for(version) gives the ruleset an
    event was classified under (None: the current one); stored events keep their version until a
    reclassification (DESIGN §3)."""
    facts, sessions, _ = derive_person_state(person_id, events, ruleset_for)
    return facts, sessions


def derive_person_state(
    person_id: str,
    events: Iterable[Event],
    ruleset_for: Callable[[int | None], CompiledRuleset],
    currency: str | None = None,
) -> tuple[list[EventFacts], list[SessionFacts], PersonState]:
    """derive_person, and the state after the last event: extending an empty past is deriving."""
    derived = extend_person(person_id, PersonState(), events, ruleset_for, currency)
    assert derived is not None  # an empty past comes before any event
    return derived


def _nps_score(event: Event) -> float | None:
    score = as_number(lookup(event.properties, ("score",)))
    return score if score is not None and 0 <= score <= 10 else None


def _session(key: str, members: Sequence[Event]) -> SessionFacts:
    first, last = members[0], members[-1]
    return SessionFacts(
        session_key=key,
        started_at=first.event_at,
        ended_at=last.event_at,
        event_count=len(members),
        is_bounce=len(members) == 1 and first.type in PAGE_TYPES,
        channel=first.channel,
        peso=peso_of(first.channel),
        device=first.device,
        campaign_source=first.campaign.get("source"),
        campaign_medium=first.campaign.get("medium"),
        campaign_name=first.campaign.get("name"),
    )


@dataclass(slots=True)  # not frozen, never changed: see Event
class PersonState:
    """Enough of a person's past to extend it with later events without reading them again."""

    last_event_at: datetime | None = None  # the latest event (bots included), for the append check
    last_message_id: str | None = None
    first_seen_at: datetime | None = None  # the first human event
    orders: int = 0
    revenue: float = 0.0
    leads: int = 0
    gap_session_key: str | None = None  # the session of the last human event without a sessionId
    gap_last_at: datetime | None = None


def extend_person(
    person_id: str,
    state: PersonState,
    new_events: Iterable[Event],
    ruleset_for: Callable[[int | None], CompiledRuleset],
    currency: str | None = None,
) -> tuple[list[EventFacts], list[SessionFacts], PersonState] | None:
    """Facts of events that all come after the person's stored ones, from the state alone; the
    sessions returned are the new events' parts (the store adds them to existing sessions).
    None when an event is not after the stored ones: then derive_person over everything."""
    ordered = sorted(new_events, key=event_order)
    if (
        state.last_event_at is not None
        and ordered
        and event_order(ordered[0]) <= (state.last_event_at, state.last_message_id or "")
    ):
        return None
    facts: list[EventFacts] = []
    parts: dict[str, list[Event]] = {}
    # as in derive_person: "first seen" is the first human event overall, for every event
    first_seen = state.first_seen_at or next((e.event_at for e in ordered if not e.is_bot), None)
    # the state walked forward in locals (one PersonState at the end, not one per event)
    seen, orders, revenue, leads = state.first_seen_at, state.orders, state.revenue, state.leads
    gap_key, gap_at = state.gap_session_key, state.gap_last_at
    history = PersonHistory(orders, revenue, leads, first_seen)
    for event in ordered:
        if (history.orders_before, history.revenue_before, history.leads_before) != (orders, revenue, leads):
            history = PersonHistory(orders, revenue, leads, first_seen)
        got = classify(event, history, ruleset_for(event.ruleset_version))
        key = None
        if not event.is_bot:
            if event.session_hint:
                key = f"{person_id}|s|{event.session_hint}"
            elif gap_at is not None and event.event_at - gap_at <= SESSION_GAP:
                assert gap_key is not None
                key = gap_key
            else:
                key = f"{person_id}|t|{event.message_id}"
            parts.setdefault(key, []).append(event)
        is_order = got.order and not event.is_bot
        value = order_value(event, got.order, got.value, currency)
        facts.append(EventFacts(
            event_id=event.event_id, stage=got.stage, goal=got.goal, value=value, is_lead=got.lead,
            is_order=got.order, is_first_event=not event.is_bot and seen is None,
            is_first_order=is_order and orders == 0, is_repeat_order=is_order and orders > 0,
            session_key=key, nps_score=_nps_score(event) if got.goal == NPS_GOAL else None,
            ruleset_version=got.ruleset_version,
        ))  # fmt: skip
        if not event.is_bot:
            seen = seen or event.event_at
            if got.order:
                orders += 1
                revenue += value or 0.0
            leads += got.lead
            if not event.session_hint:
                gap_key, gap_at = key, event.event_at
    if ordered:
        last = ordered[-1]
        state = PersonState(last.event_at, last.message_id, seen, orders, revenue, leads, gap_key, gap_at)
    return facts, [_session(key, members) for key, members in parts.items()], state


def order_value(event: Event, is_order: bool, value: float | None, currency: str | None) -> float | None:
    """An order's value counts in the site's currency only (Racetrack converts none): an order sent
    with another `properties.currency` is an order all the same, with no value. No site currency, or
    no currency on the order: the value as sent."""
    if currency and is_order:
        sent = event.properties.get("currency")
        if isinstance(sent, str) and sent.strip() and sent.strip().upper() != currency:
            return None
    return value


def person_id_of(user_id: str | None, anonymous_id: str | None, links: Mapping[str, str]) -> str:
    """An event's person (DESIGN §3): its userId; else the userId its anonymousId is linked to; else
    its anonymousId."""
    if user_id:
        return user_person(user_id)
    assert anonymous_id is not None
    linked = links.get(anonymous_id)
    return user_person(linked) if linked else anonymous_person(anonymous_id)


# A person id is its userId or its anonymousId behind one of these prefixes (the API shows it as is).
USER_PREFIX, ANONYMOUS_PREFIX = "u:", "a:"


def user_person(user_id: str) -> str:
    """The id of the person a userId is."""
    return USER_PREFIX + user_id


def anonymous_person(anonymous_id: str) -> str:
    """The id of an anonymous visitor's own person (before, or without, a link to a userId)."""
    return ANONYMOUS_PREFIX + anonymous_id


def person_ids(person_id: str) -> tuple[str | None, str | None]:
    """The (userId, anonymousId) a person id names, one of them None; (None, None) for text without
    either prefix."""
    if person_id.startswith(USER_PREFIX):
        return person_id.removeprefix(USER_PREFIX), None
    if person_id.startswith(ANONYMOUS_PREFIX):
        return None, person_id.removeprefix(ANONYMOUS_PREFIX)
    return None, None
