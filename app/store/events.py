"""Writing events: dedupe ledgers, identity links, person resolution, derived facts and sessions.
Functions take the connection first and never commit: the writer owns the transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from app.domain.classify import classify
from app.domain.model import Event, PersonHistory
from app.domain.normalize import IncomingEvent, Rejection, as_event
from app.domain.person import EventFacts, SessionFacts, derive_person
from app.domain.rules import CompiledRuleset

RulesetFor = Callable[[int | None], CompiledRuleset]


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: frozenset[str]  # messageIds stored by this call; the others were duplicates


def lock_key(namespace: str, site_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"{namespace}:{site_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_all(conn: asyncpg.Connection, keys: Iterable[int]) -> None:
    """Advisory xact locks in one global order, so concurrent writers cannot deadlock."""
    ordered = sorted(set(keys))
    if ordered:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n)",
            ordered,
        )


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
    await _upsert_links(conn, site_id, fresh)
    after = await resolve_links(conn, site_id, anonymous)
    moved = {a: after[a] for a in anonymous if after.get(a) != before.get(a) and a in after}
    affected = {person_id_of(e.user_id, e.anonymous_id, after) for e in fresh}
    affected |= {f"u:{before[a]}" if a in before else f"a:{a}" for a in moved}
    await lock_all(conn, (lock_key("p", site_id, p) for p in affected))
    for anonymous_id, user_id in moved.items():
        await conn.execute(
            """UPDATE event SET person_id = $3
               WHERE site_id = $1 AND anonymous_id = $2 AND user_id IS NULL AND person_id <> $3""",
            site_id,
            anonymous_id,
            f"u:{user_id}",
        )
    current = ruleset_for(None).version
    await _insert_events(conn, site_id, fresh, after, current)
    await recompute_persons(conn, site_id, sorted(affected), ruleset_for)
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
    earliest: dict[tuple[str, str], object] = {}
    for e in events:
        if e.anonymous_id and e.user_id:
            key = (e.anonymous_id, e.user_id)
            earliest[key] = min(earliest.get(key, e.event_at), e.event_at)  # type: ignore[type-var]
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


EVENT_COLUMNS = (
    "site_id",
    "message_id",
    "type",
    "event_name",
    "name",
    "anonymous_id",
    "user_id",
    "person_id",
    "event_at",
    "received_at",
    "sent_at",
    "properties",
    "traits",
    "context",
    "path",
    "url",
    "referrer",
    "campaign",
    "channel",
    "device",
    "session_hint",
    "is_bot",
    "ruleset_version",
)


async def _insert_events(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], links: dict[str, str], version: int
) -> None:
    await conn.executemany(
        f"INSERT INTO event ({', '.join(EVENT_COLUMNS)}) "
        f"VALUES ({', '.join(f'${i + 1}' for i in range(len(EVENT_COLUMNS)))})",
        [
            (
                site_id,
                e.message_id,
                e.type,
                e.event_name,
                e.name,
                e.anonymous_id,
                e.user_id,
                person_id_of(e.user_id, e.anonymous_id, links),
                e.event_at,
                e.received_at,
                e.sent_at,
                e.properties,
                e.traits,
                e.context,
                e.path,
                e.url,
                e.referrer,
                e.campaign,
                e.channel,
                e.device,
                e.session_hint,
                e.is_bot,
                version,
            )
            for e in events
        ],
    )


_LOAD_PERSONS = """
SELECT event_id, person_id, message_id, type, event_name, name, properties, path, url, referrer,
       campaign, channel, device, session_hint, is_bot, event_at, ruleset_version,
       stage, goal, value, is_lead, is_order, is_first_event, is_first_order, is_repeat_order,
       session_key, nps_score
FROM event WHERE site_id = $1 AND person_id = ANY($2::text[])
"""

_FACT_COLUMNS = (
    "stage",
    "goal",
    "value",
    "is_lead",
    "is_order",
    "is_first_event",
    "is_first_order",
    "is_repeat_order",
    "session_key",
    "nps_score",
    "ruleset_version",
)
_FACT_TYPES = ("text", "text", "float8", "bool", "bool", "bool", "bool", "bool", "text", "float8", "int4")


async def recompute_persons(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str], ruleset_for: RulesetFor
) -> None:
    """Re-derive every fact of these persons from their stored events; write only what changed."""
    rows = await conn.fetch(_LOAD_PERSONS, site_id, list(person_ids))
    by_person: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_person.setdefault(row["person_id"], []).append(row)
    changed: list[EventFacts] = []
    sessions: list[tuple[str, SessionFacts]] = []
    for person_id, person_rows in by_person.items():
        stored = {r["event_id"]: r for r in person_rows}
        facts, person_sessions = derive_person(person_id, map(_event, person_rows), ruleset_for)
        changed.extend(f for f in facts if _differs(f, stored[f.event_id]))
        sessions.extend((person_id, s) for s in person_sessions)
    if changed:
        await _update_facts(conn, site_id, changed)
    await _replace_sessions(conn, site_id, person_ids, sessions)


def _event(row: asyncpg.Record) -> Event:
    return Event(
        message_id=row["message_id"],
        type=row["type"],
        event_at=row["event_at"],
        event_name=row["event_name"],
        name=row["name"],
        properties=row["properties"],
        path=row["path"],
        url=row["url"],
        referrer=row["referrer"],
        campaign=row["campaign"],
        channel=row["channel"],
        device=row["device"],
        session_hint=row["session_hint"],
        is_bot=row["is_bot"],
        event_id=row["event_id"],
        ruleset_version=row["ruleset_version"],
    )


def _fact_values(f: EventFacts) -> tuple[object, ...]:
    return (
        f.stage.value,
        f.goal,
        f.value,
        f.is_lead,
        f.is_order,
        f.is_first_event,
        f.is_first_order,
        f.is_repeat_order,
        f.session_key,
        f.nps_score,
        f.ruleset_version,
    )


def _differs(facts: EventFacts, row: asyncpg.Record) -> bool:
    return _fact_values(facts) != tuple(row[c] for c in _FACT_COLUMNS)


async def _update_facts(conn: asyncpg.Connection, site_id: int, facts: Sequence[EventFacts]) -> None:
    columns = list(zip(*(_fact_values(f) for f in facts), strict=True))
    params = ", ".join(f"${i + 3}::{t}[]" for i, t in enumerate(_FACT_TYPES))
    sets = ", ".join(f"{c} = u.{c}" for c in _FACT_COLUMNS)
    await conn.execute(
        f"""UPDATE event SET {sets}
            FROM unnest($2::bigint[], {params}) AS u(event_id, {", ".join(_FACT_COLUMNS)})
            WHERE event.site_id = $1 AND event.event_id = u.event_id""",
        site_id,
        [f.event_id for f in facts],
        *[list(c) for c in columns],
    )


async def _replace_sessions(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str], sessions: Sequence[tuple[str, SessionFacts]]
) -> None:
    await conn.execute(
        "DELETE FROM session WHERE site_id = $1 AND person_id = ANY($2::text[])", site_id, list(person_ids)
    )
    if not sessions:
        return
    await conn.copy_records_to_table(
        "session",
        columns=[
            "site_id",
            "session_key",
            "person_id",
            "started_at",
            "ended_at",
            "event_count",
            "is_bounce",
            "channel",
            "peso",
            "device",
            "campaign_source",
            "campaign_medium",
            "campaign_name",
        ],
        records=[
            (
                site_id,
                s.session_key,
                person_id,
                s.started_at,
                s.ended_at,
                s.event_count,
                s.is_bounce,
                s.channel,
                s.peso,
                s.device,
                s.campaign_source,
                s.campaign_medium,
                s.campaign_name,
            )
            for person_id, s in sessions
        ],
    )


async def insert_failed(conn: asyncpg.Connection, site_id: int, failures: Sequence[tuple[Rejection, str]]) -> None:
    if failures:
        await conn.executemany(
            "INSERT INTO failed_event (site_id, code, message, field, raw) VALUES ($1, $2, $3, $4, $5)",
            [(site_id, r.code, r.message, r.field, raw) for r, raw in failures],
        )


async def persons_between(conn: asyncpg.Connection, site_id: int, start: object, end: object) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT person_id FROM event WHERE site_id = $1 AND event_at >= $2 AND event_at < $3",
        site_id,
        start,
        end,
    )
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
        site_id,
        persons,
        start,
        end,
        ruleset_for(None).version,
    )
    await recompute_persons(conn, site_id, persons, ruleset_for)
    return len(persons)


async def load_person_events(
    conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]
) -> dict[str, list[Event]]:
    by_person: dict[str, list[Event]] = {}
    for row in await conn.fetch(_LOAD_PERSONS, site_id, list(person_ids)):
        by_person.setdefault(row["person_id"], []).append(_event(row))
    return by_person


async def stage_goal_counts(conn: asyncpg.Connection, site_id: int, start: object, end: object) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT stage, goal, count(*) AS events FROM event
           WHERE site_id = $1 AND NOT is_bot AND event_at >= $2 AND event_at < $3 GROUP BY 1, 2""",
        site_id,
        start,
        end,
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
