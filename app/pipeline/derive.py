"""Derivation: acknowledged events from the inbox -> stored events with their facts, identity links,
sessions, person states and rollup deltas, in batches, in any number of processes.

Shape: take a batch -> pure domain (app.domain.person, app.domain.rollup_delta) -> store -> commit.
The owner of the write transaction is `derive_site` (one per batch): it takes the site's derivation
lock (a transaction-scoped advisory lock, tried without waiting, so concurrent derivers spread over
sites), reads the site's oldest inbox rows, derives them, moves them into `event`, appends the
rollup parts and advances the site's watermark. A crash anywhere rolls the whole batch back: the
rows are still in the inbox and are derived once, by whoever comes next.

Every fact is a function of the set of stored events: a person whose new events all come after
their stored ones is extended from their person_state; anyone else (a late event, a relink, an
order copy that displaced an earlier-counted one) is derived again from all of their events, and
their rollup contribution is replaced (old out, new in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app import metrics, rollups
from app.domain.classify import classify
from app.domain.model import Event, PersonHistory
from app.domain.person import (
    EventFacts,
    PersonState,
    SessionFacts,
    anonymous_person,
    derive_person_state,
    extend_person,
    person_id_of,
    user_person,
)
from app.domain.rollup_delta import EventColumns, Groups, RollupDelta, groups_of
from app.domain.rules import CompiledRuleset
from app.errors import DATABASE_DOWN
from app.pipeline import rollup
from app.pipeline.partitions import rotate_partitions
from app.pipeline.rulesets import RulesetCache
from app.store import events as event_store
from app.store import inbox, report_counters
from app.store import persons as person_store
from app.store import sites as site_store
from app.store.locks import lock_derivation, try_lock_derivation
from app.store.persons import FACT_COLUMNS

log = logging.getLogger("racetrack.derive")
RulesetFor = Callable[[int | None], CompiledRuleset]
BACKLOG_METRIC_CAP = 200_000  # the backlog gauge counts waiting rows up to this (a bounded query each second)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One inbox row as derivation sees it (its event_id is its inbox_id)."""

    anonymous_id: str | None
    user_id: str | None
    event: Event

    @property
    def order_id(self) -> str | None:
        order_id = self.event.properties.get("order_id") if self.event.type == "track" else None
        return str(order_id) if order_id not in (None, "") else None


def arrival_of(row: Any) -> Arrival:
    return Arrival(row["anonymous_id"], row["user_id"], person_store.event_of_row(row, event_id=row["inbox_id"]))


def is_order(event: Event, ruleset: CompiledRuleset) -> bool:
    """Would the current rules count this message as an order? (History cannot turn an order
    into a non-order in the shipped rules; both purchase rules carry the order flag.)"""
    return classify(event, PersonHistory(), ruleset).order


def _fact(f: EventFacts, e: Event) -> EventColumns:
    """An event being derived as the rollups read a stored one (its `event` row's columns)."""
    return {"event_at": e.event_at, "type": e.type, "channel": e.channel,
            **dict(zip(FACT_COLUMNS, person_store.fact_values(f), strict=True))}  # fmt: skip


@dataclass
class _Work:
    """What one derivation writes."""

    site_id: int
    delta: RollupDelta
    currency: str | None  # the site's: orders in another one count without their value
    zone: str  # the site's
    arriving: set[int] = field(default_factory=set)  # event ids that come from the inbox
    new_facts: list[tuple[Any, ...]] = field(default_factory=list)  # (inbox_id, person_id, *facts)
    changed: list[EventFacts] = field(default_factory=list)
    sessions: list[tuple[str, SessionFacts]] = field(default_factory=list)
    gone_sessions: list[str] = field(default_factory=list)
    states: dict[str, PersonState | None] = field(default_factory=dict)
    reordered: list[int] = field(default_factory=list)  # changed events that are or were orders: recounted
    customers: set[str] = field(default_factory=set)  # persons derived again with orders, before or after
    buyers: set[str] = field(default_factory=set)  # persons extended with orders

    def add_fact(self, person_id: str, f: EventFacts, stored: Any = None) -> None:
        if f.event_id in self.arriving:
            self.new_facts.append((f.event_id, person_id, *person_store.fact_values(f)))
        elif stored is not None and person_store.fact_values(f) != tuple(stored[c] for c in FACT_COLUMNS):
            self.changed.append(f)
            if f.is_order or stored["is_order"]:
                self.reordered.append(f.event_id)


async def derive_persons(
    conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, ruleset_for: RulesetFor,
    arriving: Sequence[tuple[str, Event]], forced: set[str], demoted: frozenset[int] = frozenset(),
    moved: dict[str, str] | None = None, currency: str | None = None,
) -> _Work:  # fmt: skip
    """Derive the persons of `arriving` (person id, event) and the `forced` ones (derived again from
    all their stored events). `moved`: anonymousIds whose anonymous events now belong to another
    person; `demoted`: stored events that are no longer events (an earlier copy of their order)."""
    moved = moved or {}
    work = _Work(site_id, RollupDelta(zone), currency, zone.key, {e.event_id for _, e in arriving})
    by_person: dict[str, list[Event]] = {}
    for person_id, event in arriving:
        by_person.setdefault(person_id, []).append(event)
    persons = sorted(set(by_person) | forced)
    states = await person_store.load_states(conn, site_id, persons)
    slow = set(forced)
    fast: dict[str, tuple[list[EventFacts], list[SessionFacts], PersonState]] = {}
    for person_id, events in by_person.items():
        if person_id in slow:
            continue
        # no state: a person not seen before (every derived person has one), extended from nothing
        extended = extend_person(person_id, states.get(person_id, PersonState()), events, ruleset_for, currency)
        if extended is None:
            slow.add(person_id)
        else:
            fast[person_id] = extended
    numbers = await person_store.person_numbers(conn, site_id, persons)
    part_keys = [s.session_key for _, parts, _ in fast.values() for s in parts]
    existing = await person_store.sessions_by_key(conn, site_id, part_keys)
    events_of = {e.event_id: e for _, e in arriving}
    for person_id, (facts, parts, final) in fast.items():
        _extend(work, person_id, numbers[person_id], facts, parts, existing, events_of)
        work.states[person_id] = final
    if slow:
        await _derive_again(conn, work, sorted(slow), by_person, numbers, ruleset_for, demoted, moved)
    return work


def _extend(
    work: _Work, person_id: str, number: int, facts: list[EventFacts], parts: list[SessionFacts],
    existing: dict[str, SessionFacts], events_of: dict[int, Event],
) -> None:  # fmt: skip
    """Appended events: their facts, their part of each session, counters and set members added."""
    groups: dict[str, Groups] = {}
    for part in parts:
        old = existing.get(part.session_key)
        if old is None:
            session = part
        else:  # the part continues a stored session: its start and groups stay
            session = replace(old, ended_at=max(old.ended_at, part.ended_at),
                              event_count=old.event_count + part.event_count, is_bounce=False)  # fmt: skip
            work.delta.add_session(old, -1)
        work.delta.add_session(session)
        work.sessions.append((person_id, session))
        groups[part.session_key] = groups_of(session)
    counted = []
    for f in facts:
        work.add_fact(person_id, f)
        event = events_of[f.event_id]
        if not event.is_bot and f.session_key is not None:
            counted.append((_fact(f, event), groups[f.session_key]))
        if f.is_order and not event.is_bot:
            work.buyers.add(person_id)
    work.delta.add_events(number, counted)


async def _derive_again(
    conn: asyncpg.Connection, work: _Work, slow: list[str], by_person: dict[str, list[Event]],
    numbers: dict[str, int], ruleset_for: RulesetFor, demoted: frozenset[int], moved: dict[str, str],
) -> None:  # fmt: skip
    """These persons from all their events: facts compared with the stored ones, sessions synced,
    their rollup contribution replaced."""
    rows = await person_store.load_person_rows(conn, work.site_id, slow)
    old_sessions: dict[str, list[SessionFacts]] = {}
    for person_id, s in await person_store.sessions_of_persons(conn, work.site_id, slow):
        old_sessions.setdefault(person_id, []).append(s)
    old_groups = {s.session_key: groups_of(s) for ss in old_sessions.values() for s in ss}
    stored = {r["event_id"]: r for r in rows}
    old_facts: dict[str, list[tuple[EventColumns, Groups]]] = {p: [] for p in slow}
    events: dict[str, list[Event]] = {p: list(by_person.get(p, ())) for p in slow}
    for row in rows:
        if not row["is_bot"] and row["session_key"] in old_groups:
            old_facts[row["person_id"]].append((row, old_groups[row["session_key"]]))
        if row["is_order"] and not row["is_bot"]:
            work.customers.add(row["person_id"])
        if row["event_id"] in demoted:
            continue
        anonymous = row["anonymous_id"]
        person_id = moved.get(anonymous, row["person_id"]) if row["user_id"] is None and anonymous else row["person_id"]
        events.setdefault(person_id, []).append(person_store.event_of_row(row))
    # every person on the new side is numbered already: a moved history's new person is in `slow`
    new_side = []
    new_keys: set[str] = set()
    for person_id, person_events in events.items():
        facts, sessions, state = derive_person_state(person_id, person_events, ruleset_for, work.currency)
        by_id = {e.event_id: e for e in person_events}
        for f in facts:
            work.add_fact(person_id, f, stored.get(f.event_id))
            if f.is_order and not by_id[f.event_id].is_bot:
                work.customers.add(person_id)
        groups = {s.session_key: groups_of(s) for s in sessions}
        counted = [(_fact(f, by_id[f.event_id]), groups[f.session_key]) for f in facts
                   if not by_id[f.event_id].is_bot and f.session_key is not None]  # fmt: skip
        new_side.append((numbers[person_id], counted, sessions))
        old = {s.session_key: s for s in old_sessions.get(person_id, ())}
        work.sessions.extend((person_id, s) for s in sessions if old.get(s.session_key) != s)
        new_keys.update(s.session_key for s in sessions)
        work.states[person_id] = state if person_events else None
    work.gone_sessions.extend(
        s.session_key for ss in old_sessions.values() for s in ss if s.session_key not in new_keys
    )
    old_side = [(numbers[p], old_facts[p], old_sessions.get(p, [])) for p in slow]
    work.delta.replace_person(old_side, new_side)


async def write(conn: asyncpg.Connection, work: _Work, taken: Sequence[int]) -> None:
    """The derivation's writes: the taken inbox rows moved into `event` (with facts), changed
    facts, sessions, states, rollup parts, report counters (app.store.report_counters)."""
    customers = sorted(work.customers | work.buyers)  # whose customer rows change
    await report_counters.count_cohorts(conn, work.site_id, work.zone, customers, "-")
    await inbox.move_to_events(conn, work.site_id, taken, work.new_facts)
    await report_counters.recount_stored(conn, work.site_id, work.reordered, "-")
    await person_store.write_person_changes(
        conn, work.site_id, changed=work.changed, sessions=work.sessions, gone_sessions=work.gone_sessions,
        states=work.states,
    )  # fmt: skip
    await report_counters.recount_stored(conn, work.site_id, work.reordered, "")
    await report_counters.recount_customers(conn, work.site_id, sorted(work.customers))
    await report_counters.count_cohorts(conn, work.site_id, work.zone, customers, "")
    await rollup.append(conn, work.site_id, work.delta.changes())


# --- one batch ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ranked:
    counted: list[Arrival]
    losers: dict[int, str]  # inbox_id -> order id: copies that an earlier copy beats
    demoted: dict[int, str]  # event_id -> order id: stored copies that an arriving copy beats
    demoted_persons: set[str]


async def rank_orders(
    conn: asyncpg.Connection, site_id: int, arrivals: list[Arrival], rules: CompiledRuleset
) -> Ranked:
    """An order id counts once: the earliest copy by (event time, messageId) wins (DESIGN §2)."""
    copies: dict[str, list[Arrival]] = {}
    for a in arrivals:
        order_id = a.order_id
        if order_id and is_order(a.event, rules):
            copies.setdefault(order_id, []).append(a)
    if not copies:
        return Ranked(arrivals, {}, {}, set())
    stored = await event_store.order_winners(conn, site_id, list(copies))
    losers: dict[int, str] = {}
    demoted: dict[int, str] = {}
    winners = []
    for order_id, found in copies.items():
        best = min(found, key=lambda a: (a.event.event_at, a.event.message_id))
        held = stored.get(order_id)
        if held is not None and (held[0] is None or (held[0], held[1]) <= (best.event.event_at, best.event.message_id)):
            best_id = None  # the stored copy stays (or was counted before copies were ranked)
        else:
            best_id = best.event.event_id
            winners.append((order_id, best.event.event_at, best.event.message_id, best_id))
            if held is not None and held[2] is not None:
                demoted[held[2]] = order_id
        losers.update((a.event.event_id, order_id) for a in found if a.event.event_id != best_id)
    await event_store.set_order_winners(conn, site_id, winners)
    persons = await event_store.persons_of_events(conn, site_id, list(demoted)) if demoted else {}
    demoted = {e: o for e, o in demoted.items() if e in persons}
    counted = [a for a in arrivals if a.event.event_id not in losers]
    return Ranked(counted, losers, demoted, set(persons.values()))


async def derive_batch(
    conn: asyncpg.Connection,
    site_id: int,
    zone: ZoneInfo,
    rows: Sequence[Any],
    ruleset_for: RulesetFor,
    currency: str | None = None,
) -> int:
    """Derive these inbox rows of a site, in the caller's transaction (under the site's lock)."""
    arrivals = [arrival_of(r) for r in rows]
    ranked = await rank_orders(conn, site_id, arrivals, ruleset_for(None))
    await inbox.move_to_duplicates(conn, site_id, ranked.losers)
    counted = ranked.counted
    anonymous = sorted({a.anonymous_id for a in counted if a.anonymous_id})
    before = await event_store.resolve_links(conn, site_id, anonymous)
    after = before
    pairs = [(a.anonymous_id, a.user_id, a.event.event_at) for a in counted if a.anonymous_id and a.user_id]
    if pairs:  # only then can a link appear or change
        await event_store.upsert_links(conn, site_id, pairs)
        after = await event_store.resolve_links(conn, site_id, anonymous)
    moved = {a: user_person(after[a]) for a in anonymous if a in after and after.get(a) != before.get(a)}
    if moved:  # an anonymousId with nothing stored (its events all arrive now) moves no history
        unlinked = [anonymous_person(a) for a in moved if a not in before]
        stored = await person_store.load_states(conn, site_id, unlinked) if unlinked else {}
        moved = {a: p for a, p in moved.items() if a in before or anonymous_person(a) in stored}
    relinked = set(moved.values()) | {user_person(before[a]) if a in before else anonymous_person(a) for a in moved}
    arriving = [(person_id_of(a.user_id, a.anonymous_id, after), a.event) for a in counted]
    work = await derive_persons(conn, site_id, zone, ruleset_for, arriving, relinked | ranked.demoted_persons,
                                frozenset(ranked.demoted), moved, currency)  # fmt: skip
    await event_store.demote_orders(conn, site_id, ranked.demoted)
    if moved:  # the anonymous events of a newly linked id become the user's, retroactively
        await event_store.relink_anonymous(conn, site_id, moved)
    await write(conn, work, [r["inbox_id"] for r in rows])
    await inbox.advance_scan_from(conn, site_id)  # past the rows just taken: later lookups skip them
    await inbox.advance_watermark(conn, site_id, len(rows), max(r["inbox_id"] for r in rows))
    return len(rows)


async def derive_site(pool: asyncpg.Pool, rulesets: RulesetCache, site_id: int, batch: int) -> int | None:
    """One batch of a site in one transaction; how many rows, or None when another deriver holds
    the site."""
    async with pool.acquire() as conn, conn.transaction():
        if not await try_lock_derivation(conn, site_id):
            return None
        rows = await inbox.take(conn, site_id, batch)
        if not rows:
            return 0
        timezone, currency = await site_store.derivation_settings(conn, site_id)
        ruleset_for = await rulesets.resolver(conn, site_id)
        return await derive_batch(conn, site_id, ZoneInfo(timezone), rows, ruleset_for, currency)


async def reclassify_between(
    conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime, ruleset_for: RulesetFor
) -> int:
    """Put the events of [start, end) under the current ruleset and derive their persons again, in
    the caller's transaction (one day per transaction: a KPI query never sees half a day)."""
    await lock_derivation(conn, site_id)
    persons = await person_store.persons_between(conn, site_id, start, end)
    if not persons:
        return 0
    await person_store.set_ruleset_version(conn, site_id, persons, start, end, ruleset_for(None).version)
    timezone, currency = await site_store.derivation_settings(conn, site_id)
    work = await derive_persons(conn, site_id, ZoneInfo(timezone), ruleset_for, [], set(persons), currency=currency)
    await write(conn, work, [])
    return len(persons)


# --- the background stage -----------------------------------------------------------------------


class Deriver:
    """Drains the inbox: in every service process (or a `racetrack derive` process), any number of
    them; each batch claims its site with a lock, so processes spread over sites."""

    def __init__(
        self, pool: asyncpg.Pool, rulesets: RulesetCache, batch: int, idle_seconds: float, gather_seconds: float = 0
    ) -> None:
        self._pool = pool
        self._rulesets = rulesets
        self._batch = batch
        self._idle = idle_seconds
        self._gather = gather_seconds
        self._fullest = 0  # the largest batch of the last round
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_maintenance = 0.0
        self._converting: asyncio.Task[int] | None = None  # rollups being brought to the registry's layout

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="racetrack-deriver")

    def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        """Finish the batch under way, then stop (the rest waits in the inbox for the next start)."""
        self._stopping = True
        self._wakeup.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._converting:  # a conversion resumes from the start in the next process
            self._converting.cancel()
            await asyncio.gather(self._converting, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                done = await self.drain_once()
                if time.monotonic() - self._last_maintenance > 1.0:
                    await self._maintain()
            except DATABASE_DOWN as exc:
                log.warning("derivation: database unavailable: %s", exc)
                done = 0
            except Exception:
                log.exception("derivation failed")
                done = 0
            pause = self._idle if not done else self._gather if self._fullest < self._batch else 0
            if pause and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), pause)
                self._wakeup.clear()

    async def drain_once(self) -> int:
        """One round over the sites with waiting events: up to one batch each; how many rows."""
        async with self._pool.acquire() as conn:
            sites = await inbox.pending_sites(conn)
        done = self._fullest = 0
        for site_id in sites:
            if self._stopping:
                break
            started = time.perf_counter()
            count = await derive_site(self._pool, self._rulesets, site_id, self._batch)
            self._fullest = max(self._fullest, count or 0)
            if count:
                metrics.DERIVE_SECONDS.observe(time.perf_counter() - started)
                metrics.DERIVED_EVENTS.inc(count)
                done += count
        return done

    async def _maintain(self) -> None:
        self._last_maintenance = time.monotonic()
        async with self._pool.acquire() as conn:
            await rotate_partitions(conn)
            metrics.set_pipeline(await inbox.backlog(conn, None, BACKLOG_METRIC_CAP), await inbox.oldest_received(conn))
        if self._converting is None or self._converting.done():
            if self._converting is not None and not self._converting.cancelled() and self._converting.exception():
                log.error("rollup conversion failed", exc_info=self._converting.exception())
            self._converting = asyncio.create_task(rollups.convert_stale(self._pool), name="racetrack-rollup-layout")


async def drain(pool: asyncpg.Pool, rulesets: RulesetCache | None = None, batch: int = 5000) -> int:
    """Derive everything waiting now (tests, the demo loader, `racetrack derive --once`)."""
    deriver = Deriver(pool, rulesets or RulesetCache(), batch, 0)
    total = 0
    while True:
        done = await deriver.drain_once()
        async with pool.acquire() as conn:
            left = await inbox.pending_sites(conn)
        total += done
        if not left:
            return total
        if not done:
            await asyncio.sleep(0.01)  # another process holds a site: wait for its batch
