"""Everything derived from one person's events: classification with history, first-ever flags,
and sessions (DESIGN §3-§4). Pure: no I/O.

The result is a function of the *set* of events, never of their arrival order: events are walked
in event time (ties broken by messageId), so a late-arriving earlier event changes what follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.channels import peso_of
from app.domain.classify import classify
from app.domain.model import Event, PersonHistory, Stage
from app.domain.rules import CompiledRuleset, as_number, lookup

SESSION_GAP = timedelta(minutes=30)
PAGE_TYPES = frozenset({"page", "screen"})
NPS_GOAL = "nps"


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
    """ruleset_for(version) gives the ruleset an event was classified under (None: the current one);
    stored events keep their version until a reclassification (DESIGN §3)."""
    ordered = sorted(events, key=event_order)
    humans = [e for e in ordered if not e.is_bot]
    sessions, session_of = _sessions(person_id, humans)
    facts: list[EventFacts] = []
    history = PersonHistory(first_seen_at=humans[0].event_at if humans else None)
    first_event_id = humans[0].event_id if humans else None
    for event in ordered:
        got = classify(event, history, ruleset_for(event.ruleset_version))
        is_order = got.order and not event.is_bot
        facts.append(
            EventFacts(
                event_id=event.event_id,
                stage=got.stage,
                goal=got.goal,
                value=got.value,
                is_lead=got.lead,
                is_order=got.order,
                is_first_event=event.event_id == first_event_id,
                is_first_order=is_order and history.orders_before == 0,
                is_repeat_order=is_order and history.orders_before > 0,
                session_key=session_of.get(event.event_id),
                nps_score=_nps_score(event) if got.goal == NPS_GOAL else None,
                ruleset_version=got.ruleset_version,
            )
        )
        if not event.is_bot:
            history = PersonHistory(
                orders_before=history.orders_before + got.order,
                revenue_before=history.revenue_before + ((got.value or 0.0) if got.order else 0.0),
                leads_before=history.leads_before + got.lead,
                first_seen_at=history.first_seen_at,
            )
    return facts, sessions


def _nps_score(event: Event) -> float | None:
    score = as_number(lookup(event.properties, ("score",)))
    return score if score is not None and 0 <= score <= 10 else None


def _sessions(person_id: str, humans: Sequence[Event]) -> tuple[list[SessionFacts], dict[int, str]]:
    """Explicit context.sessionId groups first; the rest is cut at gaps over 30 minutes."""
    groups: dict[str, list[Event]] = {}
    previous: Event | None = None
    current_key = ""
    for event in humans:
        if event.session_hint:
            groups.setdefault(f"{person_id}|s|{event.session_hint}", []).append(event)
            continue
        if previous is None or event.event_at - previous.event_at > SESSION_GAP:
            current_key = f"{person_id}|t|{event.message_id}"
        groups.setdefault(current_key, []).append(event)
        previous = event
    sessions = [_session(key, members) for key, members in groups.items()]
    session_of = {e.event_id: key for key, members in groups.items() for e in members}
    return sessions, session_of


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
