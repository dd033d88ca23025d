"""Erasure of one person (GDPR art. 17): one transaction, owned here, under the site's derivation
lock (so it never interleaves with a derivation batch, a reclassification or a rebuild).

In that transaction: the site's inbox is derived up to its newest row (so that every event
acknowledged before the erasure belongs to its person, identity links included), then the person's
stored contribution is read — their events' facts with their sessions' groups, and their sessions
— and taken out of the rollups as one appended part (counters subtracted, the person's number
removed from every set it was in: app.domain.rollup_delta.RollupDelta.replace_person with nothing
on the new side), and out of the report counters (app.store.report_counters). Then their rows
go: events, sessions, person state, identity links (by their userId), the order claims of their
counted orders with every copy of those orders, their losing order copies, their rows still in
the inbox, and the rejected messages that carry their ids.

What stays: the claimed messageIds (message_key), so that an SDK's retry of an erased message is
acknowledged as a duplicate and never stored again; the person's rollup number, renamed to no one
('erased:<n>'), so that no set ever counts it for someone else; the ingestion counters (counts,
not data). Other persons' facts depend on a person's events only through identity links and order
copies, both handled above; every other fact is a function of the person's own events.

Most of the backlog is derived before, in ordinary derivation transactions, so that the erasure's
own transaction stays short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app.domain.erasure import PersonRef
from app.domain.person import SessionFacts
from app.domain.rollup_delta import RollupDelta, groups_of
from app.pipeline import rollup
from app.pipeline.derive import derive_batch, derive_site
from app.pipeline.rulesets import RulesetCache
from app.store import erasure as erasure_store
from app.store import inbox, report_counters
from app.store import persons as person_store
from app.store import sites as site_store
from app.store.locks import lock_derivation

PRE_DRAIN_ROUNDS = 100  # derivation batches run before the erasure's own transaction, at most
Audit = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure removed, by kind."""

    events: int
    pending_events: int
    sessions: int
    person_state: int
    identity_links: int
    order_ids: int
    duplicate_orders: int
    rejected_messages: int

    def counts(self) -> dict[str, int]:
        return asdict(self)


async def erase_person(
    pool: asyncpg.Pool, rulesets: RulesetCache, site_id: int, person: PersonRef, batch: int, audit: Audit
) -> Erased | None:
    """Erase a person of a site: what went, or None when nothing was stored about them (the inbox
    is derived all the same). `audit(conn, counts)` records the erasure in its transaction."""
    await _derive_backlog(pool, rulesets, site_id, batch)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")  # a deliberate admin action, bounded by one person
        await lock_derivation(conn, site_id)
        timezone, currency = await site_store.derivation_settings(conn, site_id)
        zone = ZoneInfo(timezone)
        await _derive_rest(conn, rulesets, site_id, zone, currency, batch)
        erased = await erase_locked(conn, site_id, zone, person)
        if erased is not None:
            await audit(conn, erased.counts())
    return erased


async def _derive_backlog(pool: asyncpg.Pool, rulesets: RulesetCache, site_id: int, batch: int) -> None:
    """Ordinary derivation batches first (none when another deriver holds the site: it is at it)."""
    for _ in range(PRE_DRAIN_ROUNDS):
        try:
            if not await derive_site(pool, rulesets, site_id, batch):
                return
        except asyncpg.QueryCanceledError:  # a batch past the request timeout: the erasure derives it
            return


async def _derive_rest(
    conn: asyncpg.Connection, rulesets: RulesetCache, site_id: int, zone: ZoneInfo, currency: str | None, batch: int
) -> None:
    """Derive the site's inbox up to its newest row now, in the caller's transaction (under the lock)."""
    newest = await inbox.newest_id(conn, site_id)
    if newest is None:
        return
    ruleset_for = await rulesets.resolver(conn, site_id)
    while rows := [r for r in await inbox.take(conn, site_id, batch) if r["inbox_id"] <= newest]:
        await derive_batch(conn, site_id, zone, rows, ruleset_for, currency)


def contribution_out(zone: ZoneInfo, number: int, rows: Sequence[Any], sessions: Sequence[SessionFacts]) -> RollupDelta:
    """The rollup part that takes a person's stored contribution out (facts of their non-bot events
    under their sessions' groups, and their sessions)."""
    groups = {s.session_key: groups_of(s) for s in sessions}
    facts = [(r, groups[r["session_key"]]) for r in rows
             if not r["is_bot"] and r["session_key"] in groups]  # fmt: skip
    delta = RollupDelta(zone)
    delta.replace_person([(number, facts, sessions)], [])
    return delta


async def erase_locked(conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, person: PersonRef) -> Erased | None:
    """The erasure's writes, in the caller's transaction under the site's derivation lock (rows
    still in the inbox are removed, not derived: erase_person derives the inbox first)."""
    ids = await erasure_store.person_identifiers(conn, site_id, person)
    anonymous = sorted(ids.anonymous_ids)
    rows = await person_store.load_person_rows(conn, site_id, [person.person_id])
    sessions = [s for _, s in await person_store.sessions_of_persons(conn, site_id, [person.person_id])]
    rejected = await erasure_store.rejected_messages(conn, site_id, ids)
    number = await erasure_store.person_number(conn, site_id, person.person_id)
    if number is not None and (rows or sessions):
        await rollup.append(conn, site_id, contribution_out(zone, number, rows, sessions).changes())
    event_ids = [r["event_id"] for r in rows]
    order_ids = sorted({str(r["properties"]["order_id"]) for r in rows
                        if r["is_order"] and r["properties"].get("order_id") not in (None, "")})  # fmt: skip
    await report_counters.forget_person(conn, site_id, zone.key, person.person_id)
    gone = await erasure_store.delete_person_rows(conn, site_id, person.person_id, anonymous)
    held = await erasure_store.delete_order_keys(conn, site_id, event_ids, order_ids)
    erased = Erased(
        events=gone["events"],
        pending_events=await erasure_store.delete_pending(conn, site_id, person.user_id, anonymous),
        sessions=gone["sessions"],
        person_state=gone["person_state"],
        identity_links=await erasure_store.delete_links(conn, site_id, person.user_id),
        order_ids=len(held),
        duplicate_orders=await erasure_store.delete_duplicate_orders(conn, site_id, person.user_id, anonymous, held),
        rejected_messages=await erasure_store.delete_failed(conn, site_id, [r["failed_id"] for r in rejected]),
    )
    return erased if any(erased.counts().values()) else None
