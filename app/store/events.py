"""SQL for writing events: dedupe ledgers, identity links, failed events, ingestion counters.
Functions take the connection first and never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import asyncpg

from app.domain.normalize import Rejection
from app.store import report_counters
from app.store.batch import each_key, rows_of_keys


async def claim_message_ids(conn: asyncpg.Connection, site_id: int, message_ids: Sequence[str]) -> set[str]:
    """Record these messageIds; return the ones never seen before (the others are duplicates)."""
    rows = await conn.fetch(
        """INSERT INTO message_key (site_id, message_id) SELECT $1, unnest($2::text[])
           ON CONFLICT DO NOTHING RETURNING message_id""",
        site_id, sorted(message_ids),  # one order for every writer: concurrent claims cannot deadlock
    )  # fmt: skip
    return {r["message_id"] for r in rows}


async def order_winners(
    conn: asyncpg.Connection, site_id: int, order_ids: Sequence[str]
) -> dict[str, tuple[datetime | None, str | None, int | None]]:
    """The counted copy of each of these order ids: (event time, messageId, event id); None values
    for ids counted before copies were ranked (the first stored copy stays)."""
    rows = await conn.fetch(
        each_key(2, "text", "order_key", "order_id", "order_id, event_at, message_id, event_id"),
        site_id, list(order_ids),
    )  # fmt: skip
    return {r["order_id"]: (r["event_at"], r["message_id"], r["event_id"]) for r in rows}


async def set_order_winners(
    conn: asyncpg.Connection, site_id: int, winners: Sequence[tuple[str, datetime, str, int]]
) -> None:
    """(order id, event time, messageId, event id) of each order's counted copy."""
    if winners:
        await conn.execute(
            """INSERT INTO order_key (site_id, order_id, event_at, message_id, event_id)
               SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::int8[])
               ON CONFLICT (site_id, order_id) DO UPDATE SET event_at = EXCLUDED.event_at,
                 message_id = EXCLUDED.message_id, event_id = EXCLUDED.event_id""",
            site_id, *[list(c) for c in zip(*winners, strict=True)],
        )  # fmt: skip


async def demote_orders(conn: asyncpg.Connection, site_id: int, losers: dict[int, str]) -> None:
    """Stored copies (event id -> order id) that an earlier copy displaced leave `event` (and the
    quality counts; their persons are derived again, which recounts their orders)."""
    if losers:
        await conn.execute(
            f"""WITH gone AS (DELETE FROM event WHERE {rows_of_keys(2, "int8", "event", "event_id")} RETURNING *),
               q AS ({report_counters.quality_add(f"(SELECT {report_counters.QUALITY_COLUMNS} FROM gone)", "-")})
               INSERT INTO duplicate_order (site_id, event_id, order_id, message_id, event_at, received_at,
                                            anonymous_id, user_id, properties)
               SELECT g.site_id, g.event_id, l.order_id, g.message_id, g.event_at, g.received_at, g.anonymous_id,
                      g.user_id, g.properties
               FROM gone g JOIN unnest($2::int8[], $3::text[]) AS l(event_id, order_id) ON l.event_id = g.event_id""",
            site_id, list(losers), list(losers.values()),
        )  # fmt: skip


async def persons_of_events(conn: asyncpg.Connection, site_id: int, event_ids: Sequence[int]) -> dict[int, str]:
    rows = await conn.fetch(
        each_key(2, "int8", "event", "event_id", "event_id, person_id"),
        site_id, list(event_ids),
    )  # fmt: skip
    return {r["event_id"]: r["person_id"] for r in rows}


async def relink_anonymous(conn: asyncpg.Connection, site_id: int, moved: dict[str, str]) -> None:
    """The stored anonymous-only events of these anonymousIds now belong to these persons."""
    await conn.execute(
        # a lookup per anonymousId, then each row by its ctid: no plan that scans the site's events
        """WITH t AS (
             SELECT e.tid, m.person_id FROM unnest($2::text[], $3::text[]) AS m(anonymous_id, person_id)
             CROSS JOIN LATERAL (
               SELECT ctid AS tid FROM event
               WHERE site_id = $1 AND anonymous_id = m.anonymous_id AND user_id IS NULL AND person_id <> m.person_id
               OFFSET 0) e)
           UPDATE event SET person_id = t.person_id FROM t
           WHERE event.ctid = t.tid AND event.ctid = ANY(ARRAY(SELECT tid FROM t))""",
        site_id, list(moved), list(moved.values()),
    )  # fmt: skip


async def resolve_links(conn: asyncpg.Connection, site_id: int, anonymous_ids: Sequence[str]) -> dict[str, str]:
    """anonymousId -> userId by the earliest link in event time (ties: smallest userId)."""
    if not anonymous_ids:
        return {}
    rows = await conn.fetch(
        """SELECT k.key AS anonymous_id, t.user_id FROM (SELECT DISTINCT unnest($2::text[])) AS k(key)
           CROSS JOIN LATERAL (SELECT user_id FROM identity_link WHERE site_id = $1 AND anonymous_id = k.key
                               ORDER BY linked_at, user_id LIMIT 1) AS t""",
        site_id,
        list(anonymous_ids),
    )
    return {r["anonymous_id"]: r["user_id"] for r in rows}


async def upsert_links(conn: asyncpg.Connection, site_id: int, links: Iterable[tuple[str, str, datetime]]) -> None:
    """(anonymousId, userId, event time) of events that carry both: each pair's earliest is kept."""
    earliest: dict[tuple[str, str], datetime] = {}
    for anonymous_id, user_id, at in links:
        key = (anonymous_id, user_id)
        earliest[key] = min(earliest.get(key, at), at)
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
    conn: asyncpg.Connection, site_id: int, shard: int, hour: object, accepted: int, duplicates: int, rejected: int
) -> None:
    """Data-quality counters by hour of receipt, in the flush's transaction; each writer has its own
    shard (row), so concurrent flushes never wait on each other here."""
    await conn.execute(
        """INSERT INTO ingest_counter (site_id, hour, shard, accepted, duplicates, rejected)
           VALUES ($1, date_trunc('hour', $2::timestamptz), $6, $3, $4, $5)
           ON CONFLICT (site_id, hour, shard) DO UPDATE SET accepted = ingest_counter.accepted + EXCLUDED.accepted,
             duplicates = ingest_counter.duplicates + EXCLUDED.duplicates,
             rejected = ingest_counter.rejected + EXCLUDED.rejected""",
        site_id,
        hour,
        accepted,
        duplicates,
        rejected,
        shard,
    )


async def count_accepted(conn: asyncpg.Connection, site_id: int, shard: int, by_hour: Mapping[datetime, int]) -> None:
    """`count_ingest` of accepted events for many hours at once (a bulk load's counters)."""
    await conn.execute(
        """INSERT INTO ingest_counter AS c (site_id, hour, shard, accepted, duplicates, rejected)
           SELECT $1, date_trunc('hour', h.at), $2, sum(h.accepted), 0, 0
           FROM unnest($3::timestamptz[], $4::int8[]) AS h(at, accepted) GROUP BY 2
           ON CONFLICT (site_id, hour, shard) DO UPDATE SET accepted = c.accepted + EXCLUDED.accepted""",
        site_id, shard, list(by_hour), list(by_hour.values()),
    )  # fmt: skip
