"""SQL for persons: their stored events and facts, sessions, person states. The derivation that
decides what to write lives in app/derivation.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import asyncpg

from app.domain.model import Event
from app.domain.person import EventFacts, PersonState, SessionFacts
from app.store import tables
from app.store.batch import each_key, json_rows, rows_of_keys

# what derivation reads of a stored event: as of an inbox row, with its person and facts
_LOAD = each_key(
    2, "text", "event", "person_id",
    ", ".join(tables.columns(tables.event, "site_id", "received_at", "sent_at", "traits", "context")),
)  # fmt: skip
# the domain's records name their columns, in the order they are built from a row
FACT_COLUMNS = tuple(f.name for f in fields(EventFacts) if f.name != "event_id")  # fact_values' order
FACT_TYPES = tables.sql_types(tables.event, FACT_COLUMNS)
STATE_COLUMNS = tuple(f.name for f in fields(PersonState))
STATE_TYPES = tables.sql_types(tables.person_state, STATE_COLUMNS)
SESSION_COLUMNS = tuple(f.name for f in fields(SessionFacts))
SESSION_TYPES = tables.sql_types(tables.session, SESSION_COLUMNS)


async def load_person_rows(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> list[Any]:
    """Every stored event of these persons, with the columns derivation needs and its stored facts."""
    rows: list[Any] = await conn.fetch(_LOAD, site_id, list(person_ids))
    return rows


async def write_person_changes(
    conn: asyncpg.Connection, site_id: int, *, changed: Sequence[EventFacts],
    sessions: Sequence[tuple[str, SessionFacts]], gone_sessions: Sequence[str], states: dict[str, PersonState | None],
) -> None:  # fmt: skip
    """Changed facts of stored events, sessions (new or changed rows, and the keys that no longer
    exist) and person states, in the caller's transaction."""
    if changed:
        await _update_facts(conn, site_id, changed)
    if gone_sessions:
        await conn.execute(
            f"DELETE FROM session WHERE {rows_of_keys(2, 'text', 'session', 'session_key')}",
            site_id, list(gone_sessions),
        )  # fmt: skip
    rows = [(person_id, *_session_values(s)) for person_id, s in sessions]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ("person_id", *SESSION_COLUMNS) if c != "session_key")
    await _upsert(conn, "session", site_id, ("person_id", *SESSION_COLUMNS), ("text", *SESSION_TYPES), rows,
                  f"(site_id, session_key) DO UPDATE SET {updates}")  # fmt: skip
    await _save_states(conn, site_id, states)


async def sessions_of_persons(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]
) -> list[tuple[str, SessionFacts]]:
    rows = await conn.fetch(
        each_key(2, "text", "session", "person_id", f"person_id, {', '.join(SESSION_COLUMNS)}"),
        site_id, list(person_ids),
    )  # fmt: skip
    return [(r["person_id"], SessionFacts(*(r[c] for c in SESSION_COLUMNS))) for r in rows]


async def sessions_by_key(conn: asyncpg.Connection, site_id: int, keys: Sequence[str]) -> dict[str, SessionFacts]:
    if not keys:
        return {}
    rows = await conn.fetch(
        each_key(2, "text", "session", "session_key", ", ".join(SESSION_COLUMNS)),
        site_id, list(keys),
    )  # fmt: skip
    return {r["session_key"]: SessionFacts(*(r[c] for c in SESSION_COLUMNS)) for r in rows}


async def person_numbers(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> dict[str, int]:
    """Each person's dense per-site number (for the rollups' person sets); the ones without one get
    the next numbers. Under the site's derivation lock: one numberer per site."""
    rows = await conn.fetch(
        each_key(2, "text", "person_number", "person_id", "person_id, number"),
        site_id, list(person_ids),
    )  # fmt: skip
    numbers = {r["person_id"]: r["number"] for r in rows}
    missing = sorted(set(person_ids) - set(numbers))
    if missing:
        top = int(await conn.fetchval("SELECT COALESCE(max(number), 0) FROM person_number WHERE site_id = $1", site_id))
        fresh = {p: top + i for i, p in enumerate(missing, start=1)}
        await conn.copy_records_to_table(
            "person_number", columns=["site_id", "person_id", "number"],
            records=[(site_id, p, n) for p, n in fresh.items()],
        )  # fmt: skip
        numbers.update(fresh)
    return numbers


async def load_states(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> dict[str, PersonState]:
    rows = await conn.fetch(
        each_key(2, "text", "person_state", "person_id", f"person_id, {', '.join(STATE_COLUMNS)}"),
        site_id, list(person_ids),
    )  # fmt: skip
    return {r["person_id"]: PersonState(*(r[c] for c in STATE_COLUMNS)) for r in rows}


async def _save_states(conn: asyncpg.Connection, site_id: int, states: dict[str, PersonState | None]) -> None:
    gone = [p for p, s in states.items() if s is None]
    if gone:
        await conn.execute(
            f"DELETE FROM person_state WHERE {rows_of_keys(2, 'text', 'person_state', 'person_id')}", site_id, gone
        )
    rows = [(p, *_state_values(s)) for p, s in states.items() if s is not None]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in STATE_COLUMNS)
    await _upsert(conn, "person_state", site_id, ("person_id", *STATE_COLUMNS), ("text", *STATE_TYPES), rows,
                  f"(site_id, person_id) DO UPDATE SET {updates}")  # fmt: skip


async def _upsert(
    conn: asyncpg.Connection, table: str, site_id: int, columns: Sequence[str], types: Sequence[str],
    rows: Sequence[tuple[Any, ...]], on_conflict: str,
) -> None:  # fmt: skip
    """One INSERT ... SELECT ... ON CONFLICT statement for all rows (not executemany)."""
    if not rows:
        return
    await conn.execute(
        f"INSERT INTO {table} (site_id, {', '.join(columns)}) "
        f"SELECT $1, * FROM ({json_rows(2, columns, types)}) AS r ON CONFLICT {on_conflict}",
        site_id, list(rows),
    )  # fmt: skip


def event_of_row(row: asyncpg.Record, event_id: int | None = None, ruleset_version: int | None = None) -> Event:
    """A stored event (or an inbox row: its inbox_id as event_id, not classified yet) as the domain sees it."""
    return Event(
        message_id=row["message_id"], type=row["type"], event_at=row["event_at"], event_name=row["event_name"],
        name=row["name"], properties=row["properties"], path=row["path"], url=row["url"],
        referrer=row["referrer"], campaign=row["campaign"], channel=row["channel"], device=row["device"],
        session_hint=row["session_hint"], is_bot=row["is_bot"],
        event_id=row["event_id"] if event_id is None else event_id,
        ruleset_version=row["ruleset_version"] if event_id is None else ruleset_version,
    )  # fmt: skip


def _state_values(s: PersonState) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in STATE_COLUMNS)  # not dataclasses.astuple: it deep-copies


def _session_values(s: SessionFacts) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in SESSION_COLUMNS)


def fact_values(f: EventFacts) -> tuple[object, ...]:
    return (
        f.stage.value, f.goal, f.value, f.is_lead, f.is_order, f.is_first_event, f.is_first_order,
        f.is_repeat_order, f.session_key, f.nps_score, f.ruleset_version,
    )  # fmt: skip


async def _update_facts(conn: asyncpg.Connection, site_id: int, facts: Sequence[EventFacts]) -> None:
    sets = ", ".join(f"{c} = u.{c}" for c in FACT_COLUMNS)
    rows = json_rows(2, ("event_id", *FACT_COLUMNS), ("int8", *FACT_TYPES))
    await conn.execute(
        # the rows by ctid (a join on event_id was planned as a scan of the site's events)
        f"""WITH u AS ({rows}), t AS (
              SELECT e.tid, u.* FROM u CROSS JOIN LATERAL (
                SELECT ctid AS tid FROM event WHERE site_id = $1 AND event_id = u.event_id OFFSET 0) e)
            UPDATE event SET {sets.replace("u.", "t.")} FROM t
            WHERE event.ctid = t.tid AND event.ctid = ANY(ARRAY(SELECT tid FROM t))""",
        site_id, [(f.event_id, *fact_values(f)) for f in facts],
    )  # fmt: skip


async def persons_between(conn: asyncpg.Connection, site_id: int, start: object, end: object) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT person_id FROM event WHERE site_id = $1 AND event_at >= $2 AND event_at < $3",
        site_id, start, end,
    )  # fmt: skip
    return [r["person_id"] for r in rows]


async def set_ruleset_version(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str], start: object, end: object, version: int
) -> None:
    """Put these persons' events of [start, end) under a ruleset version (reclassification)."""
    await conn.execute(
        f"""UPDATE event SET ruleset_version = $5
            WHERE {rows_of_keys(2, "text", "event", "person_id", "AND event_at >= $3 AND event_at < $4")}""",
        site_id, list(person_ids), start, end, version,
    )  # fmt: skip


async def load_person_events(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]
) -> dict[str, list[Event]]:
    by_person: dict[str, list[Event]] = {}
    for row in await conn.fetch(_LOAD, site_id, list(person_ids)):
        by_person.setdefault(row["person_id"], []).append(event_of_row(row))
    return by_person


async def stage_goal_counts(conn: asyncpg.Connection, site_id: int, start: object, end: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        """SELECT stage, goal, count(*) AS events FROM event
           WHERE site_id = $1 AND NOT is_bot AND event_at >= $2 AND event_at < $3 GROUP BY 1, 2""",
        site_id, start, end,
    )  # fmt: skip
    return rows
