"""SQL for writing events: dedupe ledgers, identity links, failed events, ingestion counters.
Functions take the connection first and never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from app.domain.normalize import IncomingEvent, Rejection


async def claim_message_ids(conn: asyncpg.Connection, site_id: int, message_ids: Sequence[str]) -> set[str]:
    """Record these messageIds; return the ones never seen before (the others are duplicates)."""
    rows = await conn.fetch(
        """INSERT INTO message_key (site_id, message_id) SELECT $1, unnest($2::text[])
           ON CONFLICT DO NOTHING RETURNING message_id""",
        site_id, list(message_ids),
    )  # fmt: skip
    return {r["message_id"] for r in rows}


async def claim_order_ids(conn: asyncpg.Connection, site_id: int, order_ids: Sequence[str]) -> set[str]:
    """Record these order ids; return the ones never seen before."""
    rows = await conn.fetch(
        """INSERT INTO order_key (site_id, order_id) SELECT $1, unnest($2::text[])
           ON CONFLICT DO NOTHING RETURNING order_id""",
        site_id, sorted(set(order_ids)),
    )  # fmt: skip
    return {r["order_id"] for r in rows}


async def relink_anonymous(conn: asyncpg.Connection, site_id: int, moved: dict[str, str]) -> None:
    """The stored anonymous-only events of these anonymousIds now belong to these persons."""
    await conn.execute(
        """UPDATE event SET person_id = m.person_id
           FROM unnest($2::text[], $3::text[]) AS m(anonymous_id, person_id)
           WHERE event.site_id = $1 AND event.anonymous_id = m.anonymous_id AND event.user_id IS NULL
             AND event.person_id <> m.person_id""",
        site_id, list(moved), list(moved.values()),
    )  # fmt: skip


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


async def upsert_links(conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent]) -> None:
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
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], orders: set[str]
) -> None:
    """The dedupe ledgers and identity links of bulk-loaded events (see derivation.bulk_load)."""
    await conn.copy_records_to_table(
        "message_key", columns=["site_id", "message_id"], records=[(site_id, e.message_id) for e in events]
    )
    await conn.copy_records_to_table(
        "order_key", columns=["site_id", "order_id"], records=[(site_id, o) for o in orders]
    )
    await upsert_links(conn, site_id, events)
