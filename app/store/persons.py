"""A person's derived facts and sessions: load their events, derive (app/domain/person.py), and write
only what changed; new events are inserted with their facts in the same pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from app.domain.model import Event
from app.domain.normalize import IncomingEvent, as_event
from app.domain.person import EventFacts, PersonState, SessionFacts, derive_person_state, extend_person
from app.domain.rules import CompiledRuleset
from app.store.locks import lock_all, lock_key

RulesetFor = Callable[[int | None], CompiledRuleset]

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
    new_ids = await _event_ids(conn, len(arriving))
    incoming: dict[int, tuple[str, IncomingEvent]] = {}
    new_by_person: dict[str, list[Event]] = {p: [] for p in person_ids}
    for event_id, (person_id, event) in zip(new_ids, arriving, strict=True):
        incoming[event_id] = (person_id, event)
        new_by_person[person_id].append(_new_event(event, event_id))
    states = await _load_states(conn, site_id, person_ids)
    forced = full if full is not None else (frozenset(person_ids) if not arriving else frozenset())
    out = _Pending(site_id, incoming)
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
        out.add_facts(facts, {})
        out.session_parts.extend((person_id, s) for s in parts)
        out.states[person_id] = final
    if slow:
        await _derive_fully(conn, site_id, slow, new_by_person, ruleset_for, out)
    await out.write(conn)


class _Pending:
    """What one recompute writes: new events with facts, changed facts, sessions, person states."""

    def __init__(self, site_id: int, incoming: dict[int, tuple[str, IncomingEvent]]) -> None:
        self.site_id = site_id
        self.incoming = incoming
        self.inserts: list[tuple[Any, ...]] = []
        self.changed: list[EventFacts] = []
        self.session_parts: list[tuple[str, SessionFacts]] = []  # added to existing sessions
        self.sessions: dict[str, tuple[str, SessionFacts]] = {}  # replace the persons' sessions
        self.slow_persons: list[str] = []
        self.states: dict[str, PersonState | None] = {}

    def add_facts(self, facts: Sequence[EventFacts], stored: dict[int, asyncpg.Record]) -> None:
        for f in facts:
            if f.event_id in self.incoming:
                self.inserts.append(_insert_row(self.site_id, f, *self.incoming[f.event_id]))
            elif _fact_values(f) != tuple(stored[f.event_id][c] for c in FACT_COLUMNS):
                self.changed.append(f)

    async def write(self, conn: asyncpg.Connection) -> None:
        if self.inserts:
            await conn.copy_records_to_table("event", columns=list(EVENT_COLUMNS), records=self.inserts)
        if self.changed:
            await _update_facts(conn, self.site_id, self.changed)
        if self.slow_persons:
            await _sync_sessions(conn, self.site_id, self.slow_persons, self.sessions)
        if self.session_parts:
            await _extend_sessions(conn, self.site_id, self.session_parts)
        await _save_states(conn, self.site_id, self.states)


async def _derive_fully(
    conn: asyncpg.Connection, site_id: int, person_ids: list[str], new_by_person: dict[str, list[Event]],
    ruleset_for: RulesetFor, out: _Pending,
) -> None:  # fmt: skip
    rows = await conn.fetch(_LOAD, site_id, person_ids)
    stored = {r["event_id"]: r for r in rows}
    by_person: dict[str, list[Event]] = {p: list(new_by_person.get(p, ())) for p in person_ids}
    for row in rows:
        by_person[row["person_id"]].append(_event(row))
    out.slow_persons.extend(person_ids)
    for person_id, events in by_person.items():
        facts, sessions, state = derive_person_state(person_id, events, ruleset_for)
        out.add_facts(facts, stored)
        out.sessions.update((s.session_key, (person_id, s)) for s in sessions)
        out.states[person_id] = state if events else None


async def _load_states(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> dict[str, PersonState]:
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


async def _event_ids(conn: asyncpg.Connection, count: int) -> list[int]:
    if not count:
        return []
    rows = await conn.fetch("SELECT nextval('event_event_id_seq') AS id FROM generate_series(1, $1)", count)
    return [r["id"] for r in rows]


def _event(row: asyncpg.Record) -> Event:
    return Event(
        message_id=row["message_id"], type=row["type"], event_at=row["event_at"], event_name=row["event_name"],
        name=row["name"], properties=row["properties"], path=row["path"], url=row["url"],
        referrer=row["referrer"], campaign=row["campaign"], channel=row["channel"], device=row["device"],
        session_hint=row["session_hint"], is_bot=row["is_bot"], event_id=row["event_id"],
        ruleset_version=row["ruleset_version"],
    )  # fmt: skip


def _new_event(incoming: IncomingEvent, event_id: int) -> Event:
    event = as_event(incoming)
    return Event(**{**{f: getattr(event, f) for f in Event.__slots__}, "event_id": event_id})


def _state_values(s: PersonState) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in STATE_COLUMNS)  # not dataclasses.astuple: it deep-copies


def _session_values(s: SessionFacts) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in SESSION_COLUMNS)


def _fact_values(f: EventFacts) -> tuple[object, ...]:
    return (
        f.stage.value, f.goal, f.value, f.is_lead, f.is_order, f.is_first_event, f.is_first_order,
        f.is_repeat_order, f.session_key, f.nps_score, f.ruleset_version,
    )  # fmt: skip


def _insert_row(site_id: int, f: EventFacts, person_id: str, e: IncomingEvent) -> tuple[Any, ...]:
    return (
        site_id, f.event_id, e.message_id, e.type, e.event_name, e.name, e.anonymous_id, e.user_id, person_id,
        e.event_at, e.received_at, e.sent_at, e.properties, e.traits, e.context, e.path, e.url, e.referrer,
        e.campaign, e.channel, e.device, e.session_hint, e.is_bot, *_fact_values(f),
    )  # fmt: skip


async def _update_facts(conn: asyncpg.Connection, site_id: int, facts: Sequence[EventFacts]) -> None:
    columns = list(zip(*(_fact_values(f) for f in facts), strict=True))
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


async def reclassify_persons_between(
    conn: asyncpg.Connection, site_id: int, start: object, end: object, ruleset_for: RulesetFor
) -> int:
    """Put the events of [start, end) under the current ruleset and re-derive their persons, in the
    caller's transaction (one day per transaction: a KPI query never sees half a day)."""
    persons = await persons_between(conn, site_id, start, end)
    if not persons:
        return 0
    await lock_all(conn, (lock_key("p", site_id, p) for p in persons))
    await conn.execute(
        """UPDATE event SET ruleset_version = $5
           WHERE site_id = $1 AND person_id = ANY($2::text[]) AND event_at >= $3 AND event_at < $4""",
        site_id, persons, start, end, ruleset_for(None).version,
    )  # fmt: skip
    await recompute_persons(conn, site_id, persons, ruleset_for)
    return len(persons)


async def load_person_events(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]
) -> dict[str, list[Event]]:
    by_person: dict[str, list[Event]] = {}
    for row in await conn.fetch(_LOAD, site_id, list(person_ids)):
        by_person.setdefault(row["person_id"], []).append(_event(row))
    return by_person


async def stage_goal_counts(conn: asyncpg.Connection, site_id: int, start: object, end: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        """SELECT stage, goal, count(*) AS events FROM event
           WHERE site_id = $1 AND NOT is_bot AND event_at >= $2 AND event_at < $3 GROUP BY 1, 2""",
        site_id, start, end,
    )  # fmt: skip
    return rows


async def bulk_load(
    conn: asyncpg.Connection, site_id: int, visitors: Sequence[tuple[str, list[IncomingEvent]]],
    ruleset_for: RulesetFor,
) -> int:  # fmt: skip
    """COPY whole visitors at once (demo data, imports): the same derivation as live ingestion, for
    persons with no stored events yet. Returns the number of events written."""
    ids = iter(await _event_ids(conn, sum(len(events) for _, events in visitors)))
    out = _Pending(site_id, {})
    for person_id, incoming in visitors:
        numbered = {next(ids): e for e in incoming}
        out.incoming.update((event_id, (person_id, e)) for event_id, e in numbered.items())
        events = [_new_event(e, event_id) for event_id, e in numbered.items()]
        facts, sessions, state = derive_person_state(person_id, events, ruleset_for)
        out.add_facts(facts, {})
        out.session_parts.extend((person_id, s) for s in sessions)
        out.states[person_id] = state
    await out.write(conn)
    return len(out.inserts)
