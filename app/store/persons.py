"""SQL for persons: their stored events and facts, sessions, person states. The derivation that
decides what to write lives in app/derivation.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app.domain.model import Event
from app.domain.normalize import IncomingEvent
from app.domain.person import EventFacts, PersonState, SessionFacts

_LOAD = """
SELECT event_id, person_id, message_id, type, event_name, name, properties, path, url, referrer,
       campaign, channel, device, session_hint, is_bot, event_at, ruleset_version,
       stage, goal, value, is_lead, is_order, is_first_event, is_first_order, is_repeat_order,
       session_key, nps_score
FROM event WHERE site_id = $1 AND person_id = ANY($2::text[])
"""
FACT_COLUMNS = (
    "stage", "goal", "value", "is_lead", "is_order", "is_first_event", "is_first_order",
    "is_repeat_order", "session_key", "nps_score", "ruleset_version",
)  # fmt: skip
FACT_TYPES = ("text", "text", "float8", "bool", "bool", "bool", "bool", "bool", "text", "float8", "int4")
EVENT_COLUMNS = (
    "site_id", "event_id", "message_id", "type", "event_name", "name", "anonymous_id", "user_id", "person_id",
    "event_at", "received_at", "sent_at", "properties", "traits", "context", "path", "url", "referrer",
    "campaign", "channel", "device", "session_hint", "is_bot", *FACT_COLUMNS,
)  # fmt: skip
STATE_COLUMNS = (
    "last_event_at", "last_message_id", "first_seen_at", "orders", "revenue", "leads", "gap_session_key",
    "gap_last_at",
)  # fmt: skip
STATE_TYPES = ("timestamptz", "text", "timestamptz", "int4", "float8", "int4", "text", "timestamptz")
SESSION_TYPES = ("text", "timestamptz", "timestamptz", "int4", "bool", "text", "text", "text", "text", "text", "text")
SESSION_COLUMNS = (
    "session_key", "started_at", "ended_at", "event_count", "is_bounce", "channel", "peso", "device",
    "campaign_source", "campaign_medium", "campaign_name",
)  # fmt: skip


async def load_person_rows(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> list[Any]:
    """Every stored event of these persons, with the columns derivation needs and its stored facts."""
    rows: list[Any] = await conn.fetch(_LOAD, site_id, list(person_ids))
    return rows


async def write_person_changes(
    conn: asyncpg.Connection, site_id: int, *, inserts: Sequence[tuple[Any, ...]], changed: Sequence[EventFacts],
    full_sessions: tuple[Sequence[str], dict[str, tuple[str, SessionFacts]]] | None,
    session_parts: Sequence[tuple[str, SessionFacts]], states: dict[str, PersonState | None],
) -> None:  # fmt: skip
    """New events with their facts, changed facts, sessions (replaced for fully derived persons,
    extended for appended ones) and person states, in the caller's transaction."""
    if inserts:
        await conn.copy_records_to_table("event", columns=list(EVENT_COLUMNS), records=inserts)
    if changed:
        await _update_facts(conn, site_id, changed)
    if full_sessions and full_sessions[0]:
        await _sync_sessions(conn, site_id, *full_sessions)
    if session_parts:
        await _extend_sessions(conn, site_id, session_parts)
    await _save_states(conn, site_id, states)


async def load_states(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> dict[str, PersonState]:
    rows = await conn.fetch(
        f"SELECT person_id, {', '.join(STATE_COLUMNS)} FROM person_state WHERE site_id = $1 AND person_id = ANY($2)",
        site_id, list(person_ids),
    )  # fmt: skip
    return {r["person_id"]: PersonState(*(r[c] for c in STATE_COLUMNS)) for r in rows}


async def _save_states(conn: asyncpg.Connection, site_id: int, states: dict[str, PersonState | None]) -> None:
    gone = [p for p, s in states.items() if s is None]
    if gone:
        await conn.execute("DELETE FROM person_state WHERE site_id = $1 AND person_id = ANY($2)", site_id, gone)
    rows = [(p, *_state_values(s)) for p, s in states.items() if s is not None]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in STATE_COLUMNS)
    await _upsert(conn, "person_state", site_id, ("person_id", *STATE_COLUMNS), ("text", *STATE_TYPES), rows,
                  f"(site_id, person_id) DO UPDATE SET {updates}")  # fmt: skip


async def _extend_sessions(conn: asyncpg.Connection, site_id: int, parts: Sequence[tuple[str, SessionFacts]]) -> None:
    """Add the new events' part of each session: a new session as is, or more events (so no bounce)
    and a later end for one that exists."""
    rows = [(person_id, *_session_values(s)) for person_id, s in parts]
    await _upsert(conn, "session", site_id, ("person_id", *SESSION_COLUMNS), ("text", *SESSION_TYPES), rows,
                  """(site_id, session_key) DO UPDATE SET
                       ended_at = GREATEST(session.ended_at, EXCLUDED.ended_at),
                       event_count = session.event_count + EXCLUDED.event_count,
                       is_bounce = false""")  # fmt: skip


async def _upsert(
    conn: asyncpg.Connection, table: str, site_id: int, columns: Sequence[str], types: Sequence[str],
    rows: Sequence[tuple[Any, ...]], on_conflict: str,
) -> None:  # fmt: skip
    """One INSERT ... SELECT FROM unnest(arrays) ON CONFLICT statement for all rows (not executemany)."""
    if not rows:
        return
    arrays = [list(column) for column in zip(*rows, strict=True)]
    params = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    await conn.execute(
        f"INSERT INTO {table} (site_id, {', '.join(columns)}) "
        f"SELECT $1, * FROM unnest({params}) ON CONFLICT {on_conflict}",
        site_id, *arrays,
    )  # fmt: skip


async def next_event_ids(conn: asyncpg.Connection, count: int) -> list[int]:
    if not count:
        return []
    rows = await conn.fetch("SELECT nextval('event_event_id_seq') AS id FROM generate_series(1, $1)", count)
    return [r["id"] for r in rows]


def event_of_row(row: asyncpg.Record) -> Event:
    return Event(
        message_id=row["message_id"], type=row["type"], event_at=row["event_at"], event_name=row["event_name"],
        name=row["name"], properties=row["properties"], path=row["path"], url=row["url"],
        referrer=row["referrer"], campaign=row["campaign"], channel=row["channel"], device=row["device"],
        session_hint=row["session_hint"], is_bot=row["is_bot"], event_id=row["event_id"],
        ruleset_version=row["ruleset_version"],
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


def event_row(site_id: int, f: EventFacts, person_id: str, e: IncomingEvent) -> tuple[Any, ...]:
    return (
        site_id, f.event_id, e.message_id, e.type, e.event_name, e.name, e.anonymous_id, e.user_id, person_id,
        e.event_at, e.received_at, e.sent_at, e.properties, e.traits, e.context, e.path, e.url, e.referrer,
        e.campaign, e.channel, e.device, e.session_hint, e.is_bot, *fact_values(f),
    )  # fmt: skip


async def _update_facts(conn: asyncpg.Connection, site_id: int, facts: Sequence[EventFacts]) -> None:
    columns = list(zip(*(fact_values(f) for f in facts), strict=True))
    params = ", ".join(f"${i + 3}::{t}[]" for i, t in enumerate(FACT_TYPES))
    sets = ", ".join(f"{c} = u.{c}" for c in FACT_COLUMNS)
    await conn.execute(
        f"""UPDATE event SET {sets}
            FROM unnest($2::bigint[], {params}) AS u(event_id, {", ".join(FACT_COLUMNS)})
            WHERE event.site_id = $1 AND event.event_id = u.event_id""",
        site_id, [f.event_id for f in facts], *[list(c) for c in columns],
    )  # fmt: skip


async def _sync_sessions(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str], sessions: dict[str, tuple[str, SessionFacts]]
) -> None:
    """Delete the sessions that no longer exist, upsert the new and the changed ones."""
    rows = await conn.fetch(
        f"SELECT person_id, {', '.join(SESSION_COLUMNS)} FROM session WHERE site_id = $1 AND person_id = ANY($2)",
        site_id, list(person_ids),
    )  # fmt: skip
    current = {r["session_key"]: (r["person_id"], tuple(r[c] for c in SESSION_COLUMNS)) for r in rows}
    gone = [key for key in current if key not in sessions]
    if gone:
        await conn.execute("DELETE FROM session WHERE site_id = $1 AND session_key = ANY($2)", site_id, gone)
    upserts = [
        (person_id, *_session_values(s)) for key, (person_id, s) in sessions.items()
        if current.get(key) != (person_id, _session_values(s))
    ]  # fmt: skip
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ("person_id", *SESSION_COLUMNS) if c != "session_key")
    await _upsert(conn, "session", site_id, ("person_id", *SESSION_COLUMNS), ("text", *SESSION_TYPES), upserts,
                  f"(site_id, session_key) DO UPDATE SET {updates}")  # fmt: skip


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
        """UPDATE event SET ruleset_version = $5
           WHERE site_id = $1 AND person_id = ANY($2::text[]) AND event_at >= $3 AND event_at < $4""",
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
