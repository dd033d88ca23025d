"""SQL of the inbox: acknowledged events waiting to be derived (migration 0008).

Ingestion COPYs events in; derivation reads a site's oldest rows, and in its own transaction moves
them into `event` with their facts (one INSERT ... SELECT from a DELETE ... RETURNING). The table
is range-partitioned on inbox_id (which becomes the event_id): ids only grow, so a partition
behind every site's pending rows is empty and is dropped whole, whatever vacuum is doing. Functions
take the connection first and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.domain.normalize import IncomingEvent, Rejection
from app.store import persons as person_store
from app.store import report_counters, tables
from app.store.batch import json_rows

PARTITION_SIZE = 1_000_000  # ids per partition (the migration made the first ones)
PARTITIONS_AHEAD = 2
LOCK_TIMEOUT = "100ms"  # partition DDL waits at most this long, and ingestion behind it no longer
COLUMNS = tables.columns(tables.inbox, "inbox_id")  # what ingestion COPYs (the id comes from the default)
# what derivation reads of a row (traits and context go from inbox to event without Python)
DERIVE_COLUMNS = tables.columns(tables.inbox, "site_id", "received_at", "sent_at", "traits", "context")
ARRIVING_FACT_COLUMNS = ("person_id", *person_store.FACT_COLUMNS)  # an arriving event's facts, in fact_values' order
ARRIVING_FACT_TYPES = tables.sql_types(tables.event, ARRIVING_FACT_COLUMNS)


_RECEIVED = COLUMNS[1:]  # without site_id
_FLUSH = f"""
WITH site AS (SELECT site_id FROM site WHERE site_id = $1 FOR KEY SHARE),
rows AS ({json_rows(2, _RECEIVED, tables.sql_types(tables.inbox, _RECEIVED))}),
claimed AS (
  INSERT INTO message_key (site_id, message_id)
  SELECT $1, message_id FROM rows WHERE EXISTS (SELECT FROM site)
  ORDER BY message_id  -- one order for every writer: concurrent claims cannot deadlock
  ON CONFLICT DO NOTHING RETURNING message_id),
stored AS (
  INSERT INTO inbox (site_id, {", ".join(_RECEIVED)})
  SELECT $1, {", ".join(_RECEIVED)} FROM rows WHERE message_id IN (SELECT message_id FROM claimed)
  RETURNING message_id),
failed AS (
  INSERT INTO failed_event (site_id, code, message, field, raw)
  SELECT $1, f->>0, f->>1, f->>2, f->>3 FROM jsonb_array_elements($3::jsonb) AS f WHERE EXISTS (SELECT FROM site)),
counted AS (
  INSERT INTO ingest_counter AS c (site_id, hour, shard, accepted, duplicates, rejected)
  SELECT $1, date_trunc('hour', $4::timestamptz), $5, n.fresh, $6 - n.fresh, jsonb_array_length($3::jsonb)
  FROM site, (SELECT count(*) AS fresh FROM stored) AS n
  ON CONFLICT (site_id, hour, shard) DO UPDATE SET accepted = c.accepted + EXCLUDED.accepted,
    duplicates = c.duplicates + EXCLUDED.duplicates, rejected = c.rejected + EXCLUDED.rejected)
SELECT EXISTS (SELECT FROM site) AS site_ok, ARRAY(SELECT message_id FROM stored) AS fresh"""


async def store_flush(
    conn: asyncpg.Connection,
    site_id: int,
    events: Sequence[IncomingEvent],
    failures: Sequence[tuple[Rejection, str]],
    copies: int,
    shard: int,
    received: datetime,
) -> set[str] | None:
    """A writer's flush in one statement, so in one transaction of one round trip: the site locked
    against a purge, the messageIds claimed (the dedupe ledger), the fresh events appended, the
    rejected messages kept and the counters added to (`copies` events were sent, duplicates
    included). The fresh messageIds, or None when the site is gone (then nothing is written)."""
    found = await conn.fetchrow(
        _FLUSH,
        site_id,
        [_received(e) for e in events],
        [(r.code, r.message, r.field, raw) for r, raw in failures],
        received,
        shard,
        copies,
    )
    return set(found["fresh"]) if found["site_ok"] else None


async def append(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], table: str = tables.inbox.name
) -> None:
    """COPY the events into the inbox (or into a staging table made by `create_staging`)."""
    if events:
        records = [_record(site_id, e) for e in events]
        await conn.copy_records_to_table(table, columns=COLUMNS, records=records)


STAGING = "inbox_staging"  # a bulk load (the demo) gathers its events here before they arrive


async def create_staging(conn: asyncpg.Connection) -> None:
    """An unlogged table with the inbox's columns (no id: the ids are given on release)."""
    await conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
    await conn.execute(f"CREATE UNLOGGED TABLE {STAGING} AS SELECT {', '.join(COLUMNS)} FROM inbox WITH NO DATA")
    await conn.execute(f"CREATE INDEX ON {STAGING} (received_at)")


async def release_staging(conn: asyncpg.Connection, before: datetime | None = None) -> int:
    """The staged events received before `before` (all: None) into the inbox, in the order they
    were received: their ids, so the order derivation takes them in, follow receipt as for live
    traffic. How many."""
    columns = ", ".join(COLUMNS)
    # the sites' rows locked before any id is taken, as a flush does (advance_scan_from relies on it)
    await conn.execute(f"SELECT 1 FROM site WHERE site_id IN (SELECT DISTINCT site_id FROM {STAGING}) FOR KEY SHARE")
    taken = f"DELETE FROM {STAGING} RETURNING {columns}"
    if before is not None:
        taken = f"DELETE FROM {STAGING} WHERE received_at < $1 RETURNING {columns}"
    sql = f"WITH m AS ({taken}) INSERT INTO inbox ({columns}) SELECT {columns} FROM m ORDER BY received_at, message_id"
    status = await (conn.execute(sql) if before is None else conn.execute(sql, before))
    return int(status.split()[-1])


async def drop_staging(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {STAGING}")


def _record(site_id: int, e: IncomingEvent) -> tuple[Any, ...]:
    return (site_id, *_received(e))


def _received(e: IncomingEvent) -> tuple[Any, ...]:
    # written out in COLUMNS' order (tests/unit/test_tables.py checks it): this runs for every event ingested.
    # Times in UTC: a client's offset may be one Python takes and PostgreSQL's text input does not (+16:36).
    return (
        e.message_id, e.type, e.event_name, e.name, e.anonymous_id, e.user_id, e.event_at.astimezone(UTC),
        e.received_at, e.sent_at and e.sent_at.astimezone(UTC), e.properties, e.traits, e.context, e.path, e.url,
        e.referrer, e.campaign, e.channel, e.device, e.session_hint, e.is_bot,
    )  # fmt: skip


# Lookups start at the site's scan_from, not at its first index entry: below it lie the rows
# derivation deleted, dead until vacuum gets to them, which any long transaction in the cluster
# holds back (measured: 711k dead rows made each first-id lookup read 42k buffers, 115-200 ms).
_SCAN_FROM = "COALESCE((SELECT w.scan_from FROM pipeline_watermark w WHERE w.site_id = {site}), 0)"


def _live(site: str) -> str:
    """`inbox_id >= scan_from` of this site (an SQL expression or parameter naming it)."""
    return f"inbox_id >= {_SCAN_FROM.format(site=site)}"


async def pending_sites(conn: asyncpg.Connection) -> list[int]:
    """Sites with rows in the inbox: one index probe per site, from its scan_from."""
    rows = await conn.fetch(
        f"""SELECT s.site_id FROM site s
            WHERE EXISTS (SELECT 1 FROM inbox i WHERE i.site_id = s.site_id AND i.{_live("s.site_id")})
            ORDER BY s.site_id"""
    )
    return [r["site_id"] for r in rows]


async def advance_scan_from(conn: asyncpg.Connection, site_id: int) -> None:
    """In the derivation's transaction: raise the site's scan_from to its first waiting row.

    Safe against late commits: a flush locks the site row (FOR KEY SHARE) before it takes ids
    (store_flush's statement; release_staging), so while this holds the row FOR UPDATE no flush of
    the site is under way and every id handed out so far is committed or rolled back: none of the
    site's rows can appear below the first one visible now. Tried without waiting, in a savepoint
    (the row lock ends with it): a site busy now is advanced on a later batch. Needs the sequence
    uncached (its default), so ids come out in the order they are handed out."""
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        settled = await conn.fetchval(
            """SELECT (SELECT CASE WHEN q.is_called THEN q.last_value ELSE q.last_value - 1 END
                       FROM event_event_id_seq q, pg_sequence p
                       WHERE p.seqrelid = 'event_event_id_seq'::regclass AND p.seqcache = 1)
               FROM site WHERE site_id = $1 FOR UPDATE NOWAIT""",
            site_id,
        )
    except asyncpg.LockNotAvailableError:
        settled = None
    await savepoint.rollback()
    if settled is None:
        return
    await conn.execute(
        f"""INSERT INTO pipeline_watermark AS w (site_id, scan_from)
            SELECT $1, COALESCE((SELECT min(inbox_id) FROM inbox WHERE site_id = $1 AND {_live("$1")}
                                 AND inbox_id <= $2), $2 + 1)
            ON CONFLICT (site_id) DO UPDATE SET scan_from = GREATEST(w.scan_from, EXCLUDED.scan_from)""",
        site_id, settled,
    )  # fmt: skip


async def take(conn: asyncpg.Connection, site_id: int, limit: int) -> list[Any]:
    """The site's oldest rows (as derivation reads them).

    Read by id ranges from the site's first id: every scan is bounded by the range in the primary
    key, whatever the planner believes of the site's size (fresh statistics are never assumed; an
    unbounded `ORDER BY inbox_id LIMIT` was planned as a sort of the site's whole backlog)."""
    first = await conn.fetchval(f"SELECT min(inbox_id) FROM inbox WHERE site_id = $1 AND {_live('$1')}", site_id)
    if first is None:
        return []
    last = await conn.fetchval("SELECT max(inbox_id) FROM inbox WHERE site_id = $1", site_id)
    rows: list[Any] = []
    start, span = first, limit
    while start <= last and len(rows) < limit:
        rows += await conn.fetch(
            f"""SELECT {", ".join(DERIVE_COLUMNS)} FROM inbox
                WHERE site_id = $1 AND inbox_id >= $2 AND inbox_id < $3 ORDER BY inbox_id LIMIT $4""",
            site_id, start, start + span, limit - len(rows),
        )  # fmt: skip
        start, span = start + span, span * 2  # other sites' rows between: widen the next range
    return rows


async def move_to_events(
    conn: asyncpg.Connection, site_id: int, taken: Sequence[int], facts: Sequence[tuple[Any, ...]]
) -> None:
    """Delete the taken rows; the ones with facts (inbox_id, *ARRIVING_FACT_COLUMNS) become events,
    and count in the report counters (app.store.report_counters) in the same statement."""
    if not taken:
        return
    await conn.execute(_MOVE, site_id, list(taken), list(facts), min(taken), max(taken))


def _move_sql() -> str:
    moved = ", ".join(f"m.{c}" for c in COLUMNS)
    facts_sql = json_rows(3, ("inbox_id", *ARRIVING_FACT_COLUMNS), ("int8", *ARRIVING_FACT_TYPES))
    return f"""WITH m AS (DELETE FROM inbox WHERE site_id = $1 AND inbox_id BETWEEN $4 AND $5
                   AND inbox_id = ANY($2::int8[]) RETURNING *),
       e AS (INSERT INTO event (event_id, {", ".join(COLUMNS)}, {", ".join(ARRIVING_FACT_COLUMNS)})
             SELECT m.inbox_id, {moved}, {", ".join(f"f.{c}" for c in ARRIVING_FACT_COLUMNS)}
             FROM m JOIN ({facts_sql}) AS f ON f.inbox_id = m.inbox_id
             RETURNING {report_counters.COUNTED_COLUMNS}),
       q AS ({report_counters.quality_add("e")})
  {report_counters.customers_add("e")}"""


_MOVE = _move_sql()


async def move_to_duplicates(conn: asyncpg.Connection, site_id: int, losers: dict[int, str]) -> None:
    """Copies of an order that lost to an earlier copy (inbox_id -> order id) are kept aside."""
    if losers:
        await conn.execute(
            """INSERT INTO duplicate_order (site_id, event_id, order_id, message_id, event_at, received_at,
                                            anonymous_id, user_id, properties)
               SELECT i.site_id, i.inbox_id, l.order_id, i.message_id, i.event_at, i.received_at, i.anonymous_id,
                      i.user_id, i.properties
               FROM inbox i JOIN unnest($2::int8[], $3::text[]) AS l(inbox_id, order_id) ON l.inbox_id = i.inbox_id
               WHERE i.site_id = $1 AND i.inbox_id BETWEEN $4 AND $5 AND i.inbox_id = ANY($2::int8[])""",
            site_id, list(losers), list(losers.values()), min(losers), max(losers),
        )  # fmt: skip


# --- how far behind -----------------------------------------------------------------------------


async def newest_id(conn: asyncpg.Connection, site_id: int) -> int | None:
    value: int | None = await conn.fetchval("SELECT max(inbox_id) FROM inbox WHERE site_id = $1", site_id)
    return value


async def read_state(conn: asyncpg.Connection, site_id: int) -> tuple[int | None, datetime | None, datetime | None]:
    """What a read starts from, in one round trip: the site's newest inbox id, when its oldest
    waiting row was received (None: nothing waits), and when its last derivation committed."""
    row = await conn.fetchrow(
        f"""SELECT (SELECT max(inbox_id) FROM inbox WHERE site_id = $1) AS newest,
                   (SELECT received_at FROM inbox WHERE site_id = $1 AND {_live("$1")}
                    ORDER BY inbox_id LIMIT 1) AS oldest,
                   (SELECT derived_at FROM pipeline_watermark WHERE site_id = $1) AS derived""",
        site_id,
    )
    return row["newest"], row["oldest"], row["derived"]


async def pending_through(conn: asyncpg.Connection, site_id: int, inbox_id: int) -> bool:
    """Is any row up to this id still waiting?"""
    return bool(
        await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM inbox WHERE site_id = $1 AND {_live('$1')} AND inbox_id <= $2)",
            site_id,
            inbox_id,
        )
    )


async def oldest_received(conn: asyncpg.Connection, site_id: int | None = None) -> datetime | None:
    """When the oldest waiting row (of a site, or of any) was received: one index probe per site."""
    sites = [site_id] if site_id is not None else await pending_sites(conn)
    value: datetime | None = await conn.fetchval(
        f"""SELECT min(o.received_at) FROM unnest($1::int8[]) AS s(site_id),
             LATERAL (SELECT received_at FROM inbox i WHERE i.site_id = s.site_id AND i.{_live("s.site_id")}
                      ORDER BY inbox_id LIMIT 1) o""",
        sites,
    )
    return value


async def advance_watermark(conn: asyncpg.Connection, site_id: int, derived: int, through: int) -> None:
    """In the derivation's transaction: `derived` more events, every inbox id up to `through` done."""
    await conn.execute(
        """INSERT INTO pipeline_watermark AS w (site_id, derived_events, derived_through, derived_at)
           VALUES ($1, $2, $3, now())
           ON CONFLICT (site_id) DO UPDATE SET derived_events = w.derived_events + EXCLUDED.derived_events,
             derived_through = GREATEST(w.derived_through, EXCLUDED.derived_through), derived_at = now()""",
        site_id, derived, through,
    )  # fmt: skip


async def last_derived(conn: asyncpg.Connection, site_id: int) -> datetime | None:
    """When the site's last derivation committed (its watermark row)."""
    value: datetime | None = await conn.fetchval(
        "SELECT derived_at FROM pipeline_watermark WHERE site_id = $1", site_id
    )
    return value


async def backlog(conn: asyncpg.Connection, site_id: int | None, cap: int) -> int:
    """Waiting rows (of a site, or of all), counted up to cap."""
    if site_id is None:
        sql = f"""SELECT count(*) FROM (SELECT 1 FROM site s JOIN LATERAL (
                    SELECT 1 FROM inbox i WHERE i.site_id = s.site_id AND i.{_live("s.site_id")} LIMIT $1) i ON true
                  LIMIT $1) b"""
        return int(await conn.fetchval(sql, cap))
    sql = f"SELECT count(*) FROM (SELECT 1 FROM inbox WHERE site_id = $1 AND {_live('$1')} LIMIT $2) b"
    return int(await conn.fetchval(sql, site_id, cap))


# --- partitions (app.pipeline.partitions decides; each call runs in the caller's transaction) -----


async def current_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT last_value FROM event_event_id_seq"))


async def partitions(conn: asyncpg.Connection) -> dict[str, int]:
    """The inbox's id-range partitions: name -> first id."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'inbox'::regclass AND c.relname LIKE 'inbox\\_p%'"""
    )
    return {r["relname"]: int(r["relname"].removeprefix("inbox_p")) * PARTITION_SIZE for r in rows}


async def create_partition(conn: asyncpg.Connection, index: int) -> None:
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS inbox_p{index} PARTITION OF inbox "
        f"FOR VALUES FROM ({index * PARTITION_SIZE}) TO ({(index + 1) * PARTITION_SIZE})"
    )


async def drop_partition_if_empty(conn: asyncpg.Connection, name: str) -> bool:
    """Drop a partition no insert can reach any more, if it holds no row (locked first, so no
    insert is in flight in it)."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
    if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name})"):
        return False
    await conn.execute(f"DROP TABLE {name}")
    return True
