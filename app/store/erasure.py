"""SQL of one person's erasure and export: everything stored about them, and its removal.
Functions take the connection first and never commit: app.pipeline.erasure owns the transaction.

A person's rows: events and sessions by person_id; person_state and person_number by person_id;
identity links by their userId; not-yet-derived inbox rows and losing order copies by their ids
(the userId, or no userId and one of the person's anonymousIds); rejected messages by what
app.domain.erasure.Identifiers.carries decides over the raw body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from app.domain.erasure import CONTACT_KEYS, Identifiers, PersonRef, identifiers_of
from app.domain.person import anonymous_person
from app.store import persons as person_store
from app.store import tables

# a row that carries the person's ids: their userId, or no userId and one of their anonymousIds
_THEIRS = "(user_id = $2 OR (user_id IS NULL AND anonymous_id = ANY($3::text[])))"
# a stored event's message columns (an inbox row's, with its event id) and what derivation decided of it
EVENT_COLUMNS = ("event_id", *tables.columns(tables.inbox, "inbox_id", "site_id"))
EVENT_FACTS = person_store.FACT_COLUMNS
PENDING_COLUMNS = tuple(c if c != "event_id" else "inbox_id" for c in EVENT_COLUMNS)


async def person_identifiers(conn: asyncpg.Connection, site_id: int, person: PersonRef) -> Identifiers:
    """A `u:` person's anonymousIds are those whose anonymous events are theirs; an `a:` person's,
    their own. Contact points: what their stored and pending events sent."""
    anonymous: set[str] = set()
    if person.user_id is not None:
        anonymous.update(await owned_anonymous_ids(conn, site_id, person.user_id))
        anonymous.update(await anonymous_ids_of_events(conn, site_id, person.person_id))
        anonymous.update(await pending_anonymous_ids(conn, site_id, person.user_id))
    elif person.anonymous_id is not None:
        anonymous.add(person.anonymous_id)
    contacts = await contact_values(conn, site_id, person.person_id, person.user_id, sorted(anonymous))
    return identifiers_of(person, anonymous, contacts)


async def owned_anonymous_ids(conn: asyncpg.Connection, site_id: int, user_id: str) -> list[str]:
    """AnonymousIds whose anonymous events belong to this user: their earliest link is to them."""
    rows = await conn.fetch(
        """SELECT anonymous_id FROM (
             SELECT DISTINCT ON (anonymous_id) anonymous_id, user_id FROM identity_link
             WHERE site_id = $1 AND anonymous_id IN (SELECT anonymous_id FROM identity_link
                                                    WHERE site_id = $1 AND user_id = $2)
             ORDER BY anonymous_id, linked_at, user_id) first_link
           WHERE user_id = $2""",
        site_id, user_id,
    )  # fmt: skip
    return [r["anonymous_id"] for r in rows]


async def pending_anonymous_ids(conn: asyncpg.Connection, site_id: int, user_id: str) -> list[str]:
    """AnonymousIds that rows not derived yet link to this user, unless a stored link gives them to
    someone else (derivation decides the rest: app.pipeline.erasure derives the inbox first)."""
    rows = await conn.fetch(
        """SELECT DISTINCT i.anonymous_id FROM inbox i
           WHERE i.site_id = $1 AND i.user_id = $2 AND i.anonymous_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM identity_link l
                             WHERE l.site_id = $1 AND l.anonymous_id = i.anonymous_id AND l.user_id <> $2)""",
        site_id, user_id,
    )  # fmt: skip
    return [r["anonymous_id"] for r in rows]


async def anonymous_ids_of_events(conn: asyncpg.Connection, site_id: int, person_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT DISTINCT anonymous_id FROM event
           WHERE site_id = $1 AND person_id = $2 AND user_id IS NULL AND anonymous_id IS NOT NULL""",
        site_id, person_id,
    )  # fmt: skip
    return [r["anonymous_id"] for r in rows]


async def contact_values(
    conn: asyncpg.Connection, site_id: int, person_id: str, user_id: str | None, anonymous_ids: Sequence[str]
) -> list[tuple[str, Any]]:
    """(key, value) of every e-mail and phone the person's events and pending rows sent (in traits,
    context.traits or properties)."""
    values = ", ".join(f"('{k}', r.{s}->'{k}')" for k in CONTACT_KEYS for s in ("traits", "properties"))
    values += ", " + ", ".join(f"('{k}', r.context->'traits'->'{k}')" for k in CONTACT_KEYS)
    rows = await conn.fetch(
        f"""SELECT DISTINCT x.k, x.v FROM (
              SELECT traits, properties, context FROM event WHERE site_id = $1 AND person_id = $4
              UNION ALL
              SELECT traits, properties, context FROM inbox WHERE site_id = $1 AND {_THEIRS}) r,
            LATERAL (VALUES {values}) AS x(k, v)
            WHERE x.v IS NOT NULL AND jsonb_typeof(x.v) IN ('string', 'number')""",
        site_id, user_id, list(anonymous_ids), person_id,
    )  # fmt: skip
    return [(r["k"], r["v"]) for r in rows]


async def person_events(conn: asyncpg.Connection, site_id: int, person_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {", ".join((*EVENT_COLUMNS, *EVENT_FACTS))} FROM event
            WHERE site_id = $1 AND person_id = $2 ORDER BY event_at, message_id LIMIT $3""",
        site_id, person_id, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def pending_events(
    conn: asyncpg.Connection, site_id: int, user_id: str | None, anonymous_ids: Sequence[str]
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {', '.join(PENDING_COLUMNS)} FROM inbox WHERE site_id = $1 AND {_THEIRS} ORDER BY inbox_id",
        site_id, user_id, list(anonymous_ids),
    )  # fmt: skip
    return [dict(r) for r in rows]


async def person_sessions(conn: asyncpg.Connection, site_id: int, person_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT session_key, started_at, ended_at, event_count, is_bounce, channel, peso, device,
                  campaign_source, campaign_medium, campaign_name
           FROM session WHERE site_id = $1 AND person_id = $2 ORDER BY started_at, session_key""",
        site_id, person_id,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def person_links(conn: asyncpg.Connection, site_id: int, user_id: str | None) -> list[dict[str, Any]]:
    if user_id is None:
        return []
    rows = await conn.fetch(
        """SELECT anonymous_id, user_id, linked_at FROM identity_link
           WHERE site_id = $1 AND user_id = $2 ORDER BY linked_at, anonymous_id""",
        site_id, user_id,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def person_state(conn: asyncpg.Connection, site_id: int, person_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT first_seen_at, last_event_at, orders, revenue, leads FROM person_state
           WHERE site_id = $1 AND person_id = $2""",
        site_id, person_id,
    )  # fmt: skip
    return dict(row) if row else None


async def duplicate_orders(
    conn: asyncpg.Connection, site_id: int, user_id: str | None, anonymous_ids: Sequence[str]
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT event_id, order_id, message_id, event_at, received_at, anonymous_id, user_id, properties
            FROM duplicate_order WHERE site_id = $1 AND {_THEIRS} ORDER BY event_at, message_id""",
        site_id, user_id, list(anonymous_ids),
    )  # fmt: skip
    return [dict(r) for r in rows]


async def rejected_messages(conn: asyncpg.Connection, site_id: int, ids: Identifiers) -> list[dict[str, Any]]:
    """Kept rejected messages that carry the person's identifiers (a text prefilter in SQL, then
    the decoded body decides), oldest first."""
    needles = ids.needles()
    if not needles:
        return []
    rows = await conn.fetch(
        """SELECT failed_id, received_at, code, message, field, raw, replayed_at FROM failed_event f
           WHERE site_id = $1 AND EXISTS (SELECT 1 FROM unnest($2::text[]) AS n(t) WHERE strpos(lower(f.raw), n.t) > 0)
           ORDER BY failed_id""",
        site_id, needles,
    )  # fmt: skip
    found = []
    for r in rows:
        try:
            raw = orjson.loads(r["raw"])
        except orjson.JSONDecodeError:
            continue
        if ids.carries(raw):
            found.append({**dict(r), "raw": raw})
    return found


async def person_number(conn: asyncpg.Connection, site_id: int, person_id: str) -> int | None:
    value: int | None = await conn.fetchval(
        "SELECT number FROM person_number WHERE site_id = $1 AND person_id = $2", site_id, person_id
    )
    return value


# --- removal ------------------------------------------------------------------------------------


async def _count(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    status: str = await conn.execute(sql, *args)
    return int(status.rsplit(" ", 1)[-1])


async def delete_person_rows(
    conn: asyncpg.Connection, site_id: int, person_id: str, anonymous_ids: Sequence[str]
) -> dict[str, int]:
    """The person's events, sessions and state. Their number stays taken (under a name that is no
    one's), so the rollups' person sets never see it again; so do the numbers their anonymousIds
    had as persons of their own, before a link made them theirs."""
    events = await _count(conn, "DELETE FROM event WHERE site_id = $1 AND person_id = $2", site_id, person_id)
    sessions = await _count(conn, "DELETE FROM session WHERE site_id = $1 AND person_id = $2", site_id, person_id)
    state = await _count(conn, "DELETE FROM person_state WHERE site_id = $1 AND person_id = $2", site_id, person_id)
    await conn.execute(
        """UPDATE person_number SET person_id = 'erased:' || number
           WHERE site_id = $1 AND (person_id = $2 OR person_id = ANY($3::text[]))""",
        site_id, person_id, [p for p in map(anonymous_person, anonymous_ids) if p != person_id],
    )  # fmt: skip
    return {"events": events, "sessions": sessions, "person_state": state}


async def delete_links(conn: asyncpg.Connection, site_id: int, user_id: str | None) -> int:
    if user_id is None:
        return 0
    return await _count(conn, "DELETE FROM identity_link WHERE site_id = $1 AND user_id = $2", site_id, user_id)


async def delete_order_keys(
    conn: asyncpg.Connection, site_id: int, event_ids: Sequence[int], order_ids: Sequence[str]
) -> list[str]:
    """The order ids whose counted copy was one of these events (or, for ids counted before copies
    were ranked, one of these order ids): their claim goes, so the id is free again."""
    rows = await conn.fetch(
        """DELETE FROM order_key WHERE site_id = $1
             AND (event_id = ANY($2::int8[]) OR (event_id IS NULL AND order_id = ANY($3::text[])))
           RETURNING order_id""",
        site_id, list(event_ids), list(order_ids),
    )  # fmt: skip
    return [r["order_id"] for r in rows]


async def delete_duplicate_orders(
    conn: asyncpg.Connection, site_id: int, user_id: str | None, anonymous_ids: Sequence[str], order_ids: Sequence[str]
) -> int:
    """The person's losing order copies, and every copy of the orders they held."""
    return await _count(
        conn,
        f"DELETE FROM duplicate_order WHERE site_id = $1 AND ({_THEIRS} OR order_id = ANY($4::text[]))",
        site_id, user_id, list(anonymous_ids), list(order_ids),
    )  # fmt: skip


async def delete_pending(
    conn: asyncpg.Connection, site_id: int, user_id: str | None, anonymous_ids: Sequence[str]
) -> int:
    return await _count(
        conn, f"DELETE FROM inbox WHERE site_id = $1 AND {_THEIRS}", site_id, user_id, list(anonymous_ids)
    )


async def delete_failed(conn: asyncpg.Connection, site_id: int, failed_ids: Sequence[int]) -> int:
    if not failed_ids:
        return 0
    return await _count(
        conn, "DELETE FROM failed_event WHERE site_id = $1 AND failed_id = ANY($2::int8[])", site_id, list(failed_ids)
    )
