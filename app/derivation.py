"""Storing events and deriving their persons' facts, inside the caller's transaction: the one place
where the pure domain (classification, persons, sessions) meets the store (SQL).

Locks: identities ("i") first, then persons ("p"), each set in one global order, so concurrent
writers (any number of processes) cannot deadlock and agree on every person's facts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from app.domain.classify import classify
from app.domain.model import Event, PersonHistory
from app.domain.normalize import IncomingEvent, as_event
from app.domain.person import EventFacts, PersonState, SessionFacts, derive_person_state, extend_person
from app.domain.rules import CompiledRuleset
from app.store import events as event_store
from app.store import persons as person_store
from app.store.locks import lock_all, lock_key
from app.store.persons import FACT_COLUMNS

RulesetFor = Callable[[int | None], CompiledRuleset]


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: frozenset[str]  # messageIds stored by this call; the others were duplicates


def person_id_of(user_id: str | None, anonymous_id: str | None, links: dict[str, str]) -> str:
    if user_id:
        return f"u:{user_id}"
    assert anonymous_id is not None
    linked = links.get(anonymous_id)
    return f"u:{linked}" if linked else f"a:{anonymous_id}"


def is_order(event: IncomingEvent, ruleset: CompiledRuleset) -> bool:
    """Would the current rules count this message as an order? (History cannot turn an order
    into a non-order in the shipped rules; both purchase rules carry the order flag.)"""
    return bool(event.order_id) and classify(as_event(event), PersonHistory(), ruleset).order


async def store_events(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], ruleset_for: RulesetFor
) -> WriteResult:
    unique = list({e.message_id: e for e in reversed(events)}.values())[::-1]  # first copy wins
    ids = {i for e in unique for i in (e.anonymous_id, e.user_id) if i}
    await lock_all(conn, (lock_key("i", site_id, i) for i in ids))
    fresh = await _claim(conn, site_id, unique, ruleset_for(None))
    if not fresh:
        return WriteResult(frozenset())
    anonymous = sorted({e.anonymous_id for e in fresh if e.anonymous_id})
    before = await event_store.resolve_links(conn, site_id, anonymous)
    after = before
    if any(e.anonymous_id and e.user_id for e in fresh):  # only then can a link appear or change
        await event_store.upsert_links(conn, site_id, fresh)
        after = await event_store.resolve_links(conn, site_id, anonymous)
    moved = {a: f"u:{after[a]}" for a in anonymous if a in after and after.get(a) != before.get(a)}
    relinked = set(moved.values()) | {f"u:{before[a]}" if a in before else f"a:{a}" for a in moved}
    affected = {person_id_of(e.user_id, e.anonymous_id, after) for e in fresh} | relinked
    await lock_all(conn, (lock_key("p", site_id, p) for p in affected))
    if moved:  # the anonymous events of a newly linked id become the user's, retroactively
        await event_store.relink_anonymous(conn, site_id, moved)
    arriving = [(person_id_of(e.user_id, e.anonymous_id, after), e) for e in fresh]
    await recompute_persons(conn, site_id, sorted(affected), ruleset_for, arriving, frozenset(relinked))
    return WriteResult(frozenset(e.message_id for e in fresh))


async def _claim(
    conn: asyncpg.Connection, site_id: int, events: list[IncomingEvent], ruleset: CompiledRuleset
) -> list[IncomingEvent]:
    """The events whose messageId, and order id if they are orders, were never stored."""
    claimed = await event_store.claim_message_ids(conn, site_id, [e.message_id for e in events])
    fresh = [e for e in events if e.message_id in claimed]
    orders = {e.message_id: e.order_id for e in fresh if is_order(e, ruleset)}
    if not orders:
        return fresh
    new_orders = await event_store.claim_order_ids(conn, site_id, [o for o in orders.values() if o])
    kept = []
    for e in fresh:
        order_id = orders.get(e.message_id)
        if order_id is not None:
            if order_id not in new_orders:
                continue  # an order id is counted once (DESIGN §2): the first stored copy wins
            new_orders.discard(order_id)
        kept.append(e)
    return kept


@dataclass
class _Changes:
    """What one derivation writes: new events with facts, changed facts, sessions, person states."""

    site_id: int
    incoming: dict[int, tuple[str, IncomingEvent]]
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    changed: list[EventFacts] = field(default_factory=list)
    session_parts: list[tuple[str, SessionFacts]] = field(default_factory=list)  # added to existing sessions
    sessions: dict[str, tuple[str, SessionFacts]] = field(default_factory=dict)  # replace the persons' sessions
    fully_derived: list[str] = field(default_factory=list)
    states: dict[str, PersonState | None] = field(default_factory=dict)

    def add_facts(self, facts: Sequence[EventFacts], stored: dict[int, asyncpg.Record]) -> None:
        for f in facts:
            if f.event_id in self.incoming:
                self.inserts.append(person_store.event_row(self.site_id, f, *self.incoming[f.event_id]))
            elif person_store.fact_values(f) != tuple(stored[f.event_id][c] for c in FACT_COLUMNS):
                self.changed.append(f)

    async def write(self, conn: asyncpg.Connection) -> None:
        await person_store.write_person_changes(
            conn, self.site_id, inserts=self.inserts, changed=self.changed,
            full_sessions=(self.fully_derived, self.sessions), session_parts=self.session_parts, states=self.states,
        )  # fmt: skip


async def recompute_persons(
    conn: asyncpg.Connection,
    site_id: int,
    person_ids: Sequence[str],
    ruleset_for: RulesetFor,
    arriving: Sequence[tuple[str, IncomingEvent]] = (),
    full: frozenset[str] | None = None,
) -> None:
    """Derive these persons' facts with `arriving` events (inserted here). A person whose new events
    all come after their stored ones is extended from its person_state; the others (and `full`, or
    everyone when full is None and nothing arrives) are re-derived from all their stored events."""
    new_ids = await person_store.next_event_ids(conn, len(arriving))
    changes = _Changes(site_id, {})
    new_by_person: dict[str, list[Event]] = {p: [] for p in person_ids}
    for event_id, (person_id, event) in zip(new_ids, arriving, strict=True):
        changes.incoming[event_id] = (person_id, event)
        new_by_person[person_id].append(replace(as_event(event), event_id=event_id))
    states = await person_store.load_states(conn, site_id, person_ids)
    forced = full if full is not None else (frozenset(person_ids) if not arriving else frozenset())
    slow = []
    for person_id in person_ids:
        state = states.get(person_id)
        extended = None
        if state is not None and person_id not in forced:
            extended = extend_person(person_id, state, new_by_person[person_id], ruleset_for)
        if extended is None:
            slow.append(person_id)
            continue
        facts, parts, final = extended
        changes.add_facts(facts, {})
        changes.session_parts.extend((person_id, s) for s in parts)
        changes.states[person_id] = final
    if slow:
        await _derive_fully(conn, slow, new_by_person, ruleset_for, changes)
    await changes.write(conn)


async def _derive_fully(
    conn: asyncpg.Connection, person_ids: list[str], new_by_person: dict[str, list[Event]],
    ruleset_for: RulesetFor, changes: _Changes,
) -> None:  # fmt: skip
    rows = await person_store.load_person_rows(conn, changes.site_id, person_ids)
    stored = {r["event_id"]: r for r in rows}
    by_person: dict[str, list[Event]] = {p: list(new_by_person.get(p, ())) for p in person_ids}
    for row in rows:
        by_person[row["person_id"]].append(person_store.event_of_row(row))
    changes.fully_derived.extend(person_ids)
    for person_id, events in by_person.items():
        facts, sessions, state = derive_person_state(person_id, events, ruleset_for)
        changes.add_facts(facts, stored)
        changes.sessions.update((s.session_key, (person_id, s)) for s in sessions)
        changes.states[person_id] = state if events else None


async def reclassify_between(
    conn: asyncpg.Connection, site_id: int, start: object, end: object, ruleset_for: RulesetFor
) -> int:
    """Put the events of [start, end) under the current ruleset and re-derive their persons, in the
    caller's transaction (one day per transaction: a KPI query never sees half a day)."""
    persons: list[str] = []
    while True:  # a link committed meanwhile may have moved events to a person not yet locked
        found = await person_store.persons_between(conn, site_id, start, end)
        if set(found) <= set(persons):
            break
        persons = sorted(set(persons) | set(found))
        await lock_all(conn, (lock_key("p", site_id, p) for p in persons))
    if not persons:
        return 0
    await person_store.set_ruleset_version(conn, site_id, persons, start, end, ruleset_for(None).version)
    await recompute_persons(conn, site_id, persons, ruleset_for)
    return len(persons)


async def bulk_load(
    conn: asyncpg.Connection, site_id: int, visitors: Sequence[tuple[str, list[IncomingEvent]]],
    ruleset_for: RulesetFor,
) -> int:  # fmt: skip
    """COPY whole visitors at once (demo data, imports): the same derivation as live ingestion, for
    persons with no stored events yet. Returns the number of events written."""
    everything = [e for _, events in visitors for e in events]
    ids = iter(await person_store.next_event_ids(conn, len(everything)))
    changes = _Changes(site_id, {})
    for person_id, incoming in visitors:
        numbered = {next(ids): e for e in incoming}
        changes.incoming.update((event_id, (person_id, e)) for event_id, e in numbered.items())
        events = [replace(as_event(e), event_id=event_id) for event_id, e in numbered.items()]
        facts, sessions, state = derive_person_state(person_id, events, ruleset_for)
        changes.add_facts(facts, {})
        changes.session_parts.extend((person_id, s) for s in sessions)
        changes.states[person_id] = state
    await changes.write(conn)
    rules = ruleset_for(None)
    await event_store.bulk_ledgers(conn, site_id, everything, {e.order_id for e in everything
                                                               if e.order_id and is_order(e, rules)})  # fmt: skip
    return len(changes.inserts)
