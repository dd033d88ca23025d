"""Writing events: dedupe ledgers, identity links, person resolution, derived facts and sessions.
Functions take the connection first and never commit: the writer owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.domain.classify import classify
from app.domain.model import PersonHistory
from app.domain.normalize import IncomingEvent, Rejection, as_event
from app.domain.rules import CompiledRuleset
from app.store.locks import lock_all, lock_key
from app.store.persons import RulesetFor, recompute_persons


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: frozenset[str]  # messageIds stored by this call; the others were duplicates


def person_id_of(user_id: str | None, anonymous_id: str | None, links: dict[str, str]) -> str:
    if user_id:
        return f"u:{user_id}"
    assert anonymous_id is not None
    linked = links.get(anonymous_id)
    return f"u:{linked}" if linked else f"a:{anonymous_id}"


async def write_events(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], ruleset_for: RulesetFor
) -> WriteResult:
    unique = list({e.message_id: e for e in reversed(events)}.values())[::-1]  # first copy wins
    ids = {i for e in unique for i in (e.anonymous_id, e.user_id) if i}
    await lock_all(conn, (lock_key("i", site_id, i) for i in ids))
    fresh = await _claim_keys(conn, site_id, unique, ruleset_for(None))
    if not fresh:
        return WriteResult(frozenset())
    anonymous = sorted({e.anonymous_id for e in fresh if e.anonymous_id})
    before = await resolve_links(conn, site_id, anonymous)
    after = before
    if any(e.anonymous_id and e.user_id for e in fresh):  # only then can a link appear or change
        await _upsert_links(conn, site_id, fresh)
        after = await resolve_links(conn, site_id, anonymous)
    moved = {a: after[a] for a in anonymous if after.get(a) != before.get(a) and a in after}
    affected = {person_id_of(e.user_id, e.anonymous_id, after) for e in fresh}
    affected |= {f"u:{before[a]}" if a in before else f"a:{a}" for a in moved}
    await lock_all(conn, (lock_key("p", site_id, p) for p in affected))
    if moved:  # the anonymous events of a newly linked id become the user's, retroactively
        await conn.execute(
            """UPDATE event SET person_id = m.person_id
               FROM unnest($2::text[], $3::text[]) AS m(anonymous_id, person_id)
               WHERE event.site_id = $1 AND event.anonymous_id = m.anonymous_id AND event.user_id IS NULL
                 AND event.person_id <> m.person_id""",
            site_id, list(moved), [f"u:{u}" for u in moved.values()],
        )  # fmt: skip
    arriving = [(person_id_of(e.user_id, e.anonymous_id, after), e) for e in fresh]
    relinked = {f"u:{u}" for u in moved.values()} | {f"u:{before[a]}" if a in before else f"a:{a}" for a in moved}
    await recompute_persons(conn, site_id, sorted(affected), ruleset_for, arriving, frozenset(relinked))
    return WriteResult(frozenset(e.message_id for e in fresh))


async def _claim_keys(
    conn: asyncpg.Connection, site_id: int, events: list[IncomingEvent], ruleset: CompiledRuleset
) -> list[IncomingEvent]:
    """Keep the events whose messageId, and order id if they are orders, were never stored."""
    rows = await conn.fetch(
        """INSERT INTO message_key (site_id, message_id) SELECT $1, unnest($2::text[])
           ON CONFLICT DO NOTHING RETURNING message_id""",
        site_id,
        [e.message_id for e in events],
    )
    claimed = {r["message_id"] for r in rows}
    fresh = [e for e in events if e.message_id in claimed]
    orders = {e.message_id: e.order_id for e in fresh if e.order_id and _is_order(e, ruleset)}
    if not orders:
        return fresh
    rows = await conn.fetch(
        """INSERT INTO order_key (site_id, order_id) SELECT $1, unnest($2::text[])
           ON CONFLICT DO NOTHING RETURNING order_id""",
        site_id,
        sorted(set(orders.values())),
    )
    new_orders = {r["order_id"] for r in rows}
    kept = []
    for e in fresh:
        order_id = orders.get(e.message_id)
        if order_id is not None:
            if order_id not in new_orders:
                continue  # an order id is counted once (DESIGN §2): the first stored copy wins
            new_orders.discard(order_id)
        kept.append(e)
    return kept


def _is_order(event: IncomingEvent, ruleset: CompiledRuleset) -> bool:
    """Would the current rules count this message as an order? (History cannot turn an order
    into a non-order in the shipped rules; both purchase rules carry the order flag.)"""
    return classify(as_event(event), PersonHistory(), ruleset).order


async def resolve_links(conn: asyncpg.Connection, site_id: int, anonymous_ids: Sequence[str]) -> dict[str, str]:
    """anonymousId -> userId by the earliest link in event time (ties: smallest userId)."""
    if not anonymous_ids:
        return {}
    rows = await conn.fetch(
        """SELECT DISTINCT ON (anonymous_id) anonymous_id, user_id FROM identity_link
           WHERE site_id = $1 AND anonymous_id = ANY($2::text[])
           ORDER BY anonymous_id, linked_at, user_id""",
        site_id,
        list(anonymous_ids),
    )
    return {r["anonymous_id"]: r["user_id"] for r in rows}


async def _upsert_links(conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent]) -> None:
    earliest: dict[tuple[str, str], datetime] = {}
    for e in events:
        if e.anonymous_id and e.user_id:
            key = (e.anonymous_id, e.user_id)
            earliest[key] = min(earliest.get(key, e.event_at), e.event_at)
    if not earliest:
        return
    await conn.execute(
        """INSERT INTO identity_link (site_id, anonymous_id, user_id, linked_at)
           SELECT $1, a, u, t FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS x(a, u, t)
           ON CONFLICT (site_id, anonymous_id, user_id)
           DO UPDATE SET linked_at = LEAST(identity_link.linked_at, EXCLUDED.linked_at)""",
        site_id,
        [k[0] for k in earliest],
        [k[1] for k in earliest],
        list(earliest.values()),
    )


async def insert_failed(conn: asyncpg.Connection, site_id: int, failures: Sequence[tuple[Rejection, str]]) -> None:
    if failures:
        await conn.executemany(
            "INSERT INTO failed_event (site_id, code, message, field, raw) VALUES ($1, $2, $3, $4, $5)",
            [(site_id, r.code, r.message, r.field, raw) for r, raw in failures],
        )


async def count_ingest(
    conn: asyncpg.Connection, site_id: int, hour: object, accepted: int, duplicates: int, rejected: int
) -> None:
    """Data-quality counters by hour of receipt, in the flush's transaction."""
    await conn.execute(
        """INSERT INTO ingest_counter (site_id, hour, accepted, duplicates, rejected)
           VALUES ($1, date_trunc('hour', $2::timestamptz), $3, $4, $5)
           ON CONFLICT (site_id, hour) DO UPDATE SET accepted = ingest_counter.accepted + EXCLUDED.accepted,
             duplicates = ingest_counter.duplicates + EXCLUDED.duplicates,
             rejected = ingest_counter.rejected + EXCLUDED.rejected""",
        site_id,
        hour,
        accepted,
        duplicates,
        rejected,
    )


async def bulk_ledgers(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], ruleset: CompiledRuleset
) -> None:
    """The dedupe ledgers and identity links of bulk-loaded events (see persons.bulk_load), by the
    same rule as live ingestion: an order id is claimed by events the rules count as orders."""
    await conn.copy_records_to_table(
        "message_key", columns=["site_id", "message_id"], records=[(site_id, e.message_id) for e in events]
    )
    orders = {e.order_id for e in events if e.order_id and _is_order(e, ruleset)}
    await conn.copy_records_to_table(
        "order_key", columns=["site_id", "order_id"], records=[(site_id, o) for o in orders]
    )
    await _upsert_links(conn, site_id, events)
