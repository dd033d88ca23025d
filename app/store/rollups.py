"""Rollup rows and person numbers (SQL only; see app.rollups, app.pipeline.rollup and app.domain.rollup).

A key (site, dimension, unit, group) has parts: part 0 is its base, parts > 0 are deltas appended
by derivations in commit order (one part id per derivation, from rollup_part_seq, taken under the
site's derivation lock). A reader folds a key's parts in part order; compaction folds them into the
base. The operators' rebuild recomputes units from the events (quarter_sources).

A row holds its quantities as arrays in the order of its family's layout (the KPI registry's,
app.domain.kpis.registry.Layout; the `goal` dimension's rows have the goal layout): `counters`,
`sets` (person bitmaps) and `removed` (a delta part's persons that left each set). Which layout a
site's rows hold is recorded in `rollup_layout`, per family; readers check it (rollup_layouts) and
never decode rows of another layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pyroaring import BitMap

from app.domain.kpis import REGISTRY
from app.domain.kpis.registry import GOAL_COUNTERS, GOAL_SETS, Layout, Registry
from app.domain.rollup import QUARTER, Rollup, Unit
from app.domain.rollup_delta import GOAL, Change, layout_of_dim
from app.store.kpi_queries import BREAKDOWNS
from app.store.kpi_sql import counter_sql, person_numbers_sql

SLOT = "date_bin('15 minutes', {col}, timestamptz '2000-01-01 00:00:00+00')"
# (dimension, group expression over the session s); '' is the undivided total
DIMENSIONS = [("", "''"), *BREAKDOWNS.items()]
_DIM_VALUES = ", ".join(f"('{dim}', {expr})" for dim, expr in DIMENSIONS)
ALL_DIMS = [*(dim for dim, _ in DIMENSIONS), GOAL]  # the goal dimension: its groups are the events' goals
KeyRow = tuple[str, Unit, str, Rollup]  # (dimension, unit, group, rollup)
COLUMNS = ("site_id", "dim", "level", "slot", "grp", "part", "counters", "sets", "removed")


async def plan_by_index(conn: asyncpg.Connection) -> None:
    """A refresh reads a few slots by index, and looks each event's session and person up by key:
    with statistics that lag growing tables the planner would hash whole tables (measured: 7 s
    instead of 0.3 s for a day of 100k events) or compile with JIT."""
    for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin", "jit"):
        await conn.execute(f"SET LOCAL {setting} = off")
    await conn.execute("SET LOCAL work_mem = '64MB'")  # sorting a day of events x dimensions in memory


# One index range scan per slot: OFFSET 0 keeps the planner from flattening the subquery into a
# join on a range condition, which it plans as a scan of every event of the site.
_EVENTS_OF_SLOT = """SELECT * FROM event e
    WHERE e.site_id = $1 AND NOT e.is_bot AND e.event_at >= q.slot AND e.event_at < q.slot + interval '15 minutes'
    OFFSET 0"""
_SESSIONS_OF_SLOT = """SELECT * FROM session s
    WHERE s.site_id = $1 AND s.started_at >= q.slot AND s.started_at < q.slot + interval '15 minutes'
    OFFSET 0"""


def _numbering_sql(events: str) -> str:
    return f"""INSERT INTO person_number (site_id, person_id, number)
        SELECT $1, p.person_id,
               (SELECT COALESCE(max(number), 0) FROM person_number WHERE site_id = $1)
               + row_number() OVER (ORDER BY p.first_at, p.person_id)
        FROM (SELECT e.person_id, min(e.event_at) AS first_at
              FROM {events}
              WHERE NOT EXISTS (SELECT 1 FROM person_number n WHERE n.site_id = $1 AND n.person_id = e.person_id)
              GROUP BY e.person_id) p"""


async def number_persons(conn: asyncpg.Connection, site_id: int, slots: Sequence[datetime]) -> None:
    """Give every person with an event in these slots a dense per-site number (first seen, first
    numbered), for the bitmaps. Runs under the site's rollup lock: one numberer per site."""
    events = f"unnest($2::timestamptz[]) AS q(slot), LATERAL ({_EVENTS_OF_SLOT}) e"
    await conn.execute(_numbering_sql(events), site_id, list(slots))


def _event_sql(registry: Registry) -> str:
    counters = [f"{counter_sql(c, 'e')} AS {c.name}" for c in registry.event_counters()]
    sets = [f"{person_numbers_sql(p, 'e', 'n.number')} AS {p.name}" for p in registry.person_sets]
    events = f"unnest($2::timestamptz[]) AS q(slot) CROSS JOIN LATERAL ({_EVENTS_OF_SLOT}) e"
    return f"""
SELECT {SLOT.format(col="e.event_at")} AS slot, d.dim, d.grp,
  {", ".join((*counters, *sets))}
FROM {events}
JOIN person_number n ON n.site_id = e.site_id AND n.person_id = e.person_id
LEFT JOIN session s ON s.site_id = e.site_id AND s.session_key = e.session_key
CROSS JOIN LATERAL (VALUES {_DIM_VALUES}) AS d(dim, grp)
WHERE d.grp IS NOT NULL AND (d.dim = '' OR s.session_key IS NOT NULL)  -- a breakdown needs the session
GROUP BY 1, 2, 3"""


def _session_sql(registry: Registry) -> str:
    counters = [f"{counter_sql(c, 's')} AS {c.name}" for c in registry.session_counters()]
    return f"""
SELECT {SLOT.format(col="s.started_at")} AS slot, d.dim, d.grp,
  {", ".join(counters)}
FROM unnest($2::timestamptz[]) AS q(slot)
CROSS JOIN LATERAL ({_SESSIONS_OF_SLOT}) s
CROSS JOIN LATERAL (VALUES {_DIM_VALUES}) AS d(dim, grp)
GROUP BY 1, 2, 3"""


def _goal_sql() -> str:
    counters = [f"{counter_sql(c, 'e')} AS {c.name}" for c in GOAL_COUNTERS]
    sets = [f"{person_numbers_sql(p, 'e', 'n.number')} AS {p.name}" for p in GOAL_SETS]
    return f"""
SELECT {SLOT.format(col="e.event_at")} AS slot, '{GOAL}' AS dim, e.goal AS grp, {", ".join((*counters, *sets))}
FROM unnest($2::timestamptz[]) AS q(slot) CROSS JOIN LATERAL ({_EVENTS_OF_SLOT}) e
JOIN person_number n ON n.site_id = e.site_id AND n.person_id = e.person_id
WHERE e.goal IS NOT NULL
GROUP BY 1, 2, 3"""


_GOAL_SQL = _goal_sql()


async def quarter_sources(
    conn: asyncpg.Connection, site_id: int, slots: Sequence[datetime], families: Sequence[str] = ("kpi", "goal")
) -> tuple[list[Any], list[Any], list[Any]]:
    """Per (slot, dim, group) of these quarters: event counters and person-number arrays, session
    counters (a session counts in the slot where it starts; an event under its session's values),
    and per goal its counters and person-number arrays (of the families asked for)."""
    events: list[Any] = []
    sessions: list[Any] = []
    goals: list[Any] = []
    if "kpi" in families:
        events = await conn.fetch(REGISTRY.derived(_event_sql), site_id, list(slots))
        sessions = await conn.fetch(REGISTRY.derived(_session_sql), site_id, list(slots))
    if "goal" in families:
        goals = await conn.fetch(_GOAL_SQL, site_id, list(slots))
    return events, sessions, goals


def _picked(layout: Layout, sets: Sequence[str] | None) -> str:
    """The arrays to read: all of them, or only the named sets' elements (in that order)."""
    if sets is None:
        return "r.counters, r.sets, r.removed"
    at = [layout.sets.index(name) + 1 for name in sets]
    picked = ", ".join(f"r.sets[{i}]" for i in at)
    removed = ", ".join(f"r.removed[{i}]" for i in at)
    return f"r.counters, ARRAY[{picked}]::bytea[] AS sets, ARRAY[{removed}]::bytea[] AS removed"


async def load_rows(
    conn: asyncpg.Connection, site_id: int, units: Iterable[Unit], dims: Sequence[str],
    sets: Sequence[str] | None = None,
) -> list[Any]:  # fmt: skip
    """Stored parts of these units for these dimensions, in part order: every set, or only the named
    ones (of one family's layout: then `sets` holds them in that order)."""
    levels, slots = zip(*units, strict=True) if units else ((), ())
    picked = _picked(layout_of_dim(dims[0]), sets)
    rows: list[Any] = await conn.fetch(
        f"""SELECT r.dim, r.level, r.slot, r.grp, r.part, {picked}
            FROM rollup r JOIN unnest($2::char(1)[], $3::timestamptz[]) AS u(level, slot)
              ON r.level = u.level AND r.slot = u.slot
            WHERE r.site_id = $1 AND r.dim = ANY($4::text[])
            ORDER BY r.part""",
        site_id, list(levels), list(slots), list(dims),
    )  # fmt: skip
    return rows


def dims_of(families: Iterable[str]) -> list[str]:
    """The dimensions whose rows a family ('kpi', 'goal') is."""
    wanted = set(families)
    return [dim for dim in ALL_DIMS if ("goal" if dim == GOAL else "kpi") in wanted]


async def replace_rows(
    conn: asyncpg.Connection, site_id: int, units: Sequence[Unit], rows: Sequence[KeyRow],
    dims: Sequence[str] = ALL_DIMS,
) -> None:  # fmt: skip
    """Delete every part of these units (of these dimensions), then write (dim, unit, group, rollup)
    base rows by COPY."""
    if not units:
        return
    levels, slots = zip(*units, strict=True)
    await conn.execute(
        """DELETE FROM rollup r
           USING unnest($2::char(1)[], $3::timestamptz[]) AS u(level, slot), unnest($4::text[]) AS d(dim)
           WHERE r.site_id = $1 AND r.dim = d.dim AND r.level = u.level AND r.slot = u.slot""",
        site_id, list(levels), list(slots), list(dims),
    )  # fmt: skip
    await _copy_rows(conn, site_id, rows, 0)


async def next_part(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT nextval('rollup_part_seq')"))


async def append_parts(
    conn: asyncpg.Connection, site_id: int, part: int, changes: dict[tuple[str, Unit, str], Change]
) -> None:
    """One derivation's changes as delta parts with this part id (COPY)."""
    records = []
    widths = {family: len(layout.sets) for family, layout in REGISTRY.layouts().items()}
    for (dim, (level, slot), grp), change in changes.items():
        width = widths["goal" if dim == GOAL else "kpi"]
        added: list[bytes | None] = [None] * width
        for s, numbers in change.added.items():
            added[s] = BitMap(numbers).serialize()
        removed: list[bytes | None] | None = None
        if change.removed:
            removed = [None] * width
            for s, numbers in change.removed.items():
                removed[s] = BitMap(numbers).serialize()
        records.append((site_id, dim, level, slot, grp, part, change.counters, added, removed))
    if records:
        await conn.copy_records_to_table("rollup", records=records, columns=COLUMNS)


# keys as parameters $2-$5, each looked up on its own in the primary key (a join of the keys with
# the site's rows was planned as a hash of every rollup row of the site, growing with its history)
_KEYS = "unnest($2::text[], $3::char(1)[], $4::timestamptz[], $5::text[]) AS k(dim, level, slot, grp)"
_KEY_MATCH = "r.site_id = $1 AND r.dim = k.dim AND r.level = k.level AND r.slot = k.slot AND r.grp = k.grp"


def _key_arrays(keys: Sequence[tuple[str, Unit, str]]) -> list[list[Any]]:
    return [[k[0] for k in keys], [k[1][0] for k in keys], [k[1][1] for k in keys], [k[2] for k in keys]]


async def crowded_keys(
    conn: asyncpg.Connection, site_id: int, keys: Sequence[tuple[str, Unit, str]], at_least: int
) -> list[tuple[str, Unit, str]]:
    """Those of these keys with at least `at_least` delta parts."""
    if not keys:
        return []
    rows = await conn.fetch(
        f"""SELECT k.dim, k.level, k.slot, k.grp FROM {_KEYS}
            CROSS JOIN LATERAL (SELECT count(*) AS parts FROM rollup r WHERE {_KEY_MATCH} AND r.part > 0) c
            WHERE c.parts >= $6""",
        site_id, *_key_arrays(keys), at_least,
    )  # fmt: skip
    return [(r["dim"], (r["level"], r["slot"]), r["grp"]) for r in rows]


async def keys_with_deltas(conn: asyncpg.Connection, site_id: int, limit: int) -> list[tuple[str, Unit, str]]:
    rows = await conn.fetch(
        """SELECT DISTINCT dim, level, slot, grp FROM rollup WHERE site_id = $1 AND part > 0
           ORDER BY level, slot LIMIT $2""",
        site_id, limit,
    )  # fmt: skip
    return [(r["dim"], (r["level"], r["slot"]), r["grp"]) for r in rows]


async def load_keys(conn: asyncpg.Connection, site_id: int, keys: Sequence[tuple[str, Unit, str]]) -> list[Any]:
    """Every part of these keys, all sets, in part order."""
    if not keys:
        return []
    rows: list[Any] = await conn.fetch(
        f"""SELECT r.* FROM {_KEYS}
            CROSS JOIN LATERAL (SELECT * FROM rollup r WHERE {_KEY_MATCH} OFFSET 0) r ORDER BY r.part""",
        site_id, *_key_arrays(keys),
    )  # fmt: skip
    return rows


async def replace_keys(conn: asyncpg.Connection, site_id: int, rows: Sequence[KeyRow]) -> None:
    """Each key's parts replaced by one base row (compaction)."""
    if not rows:
        return
    await conn.execute(
        f"""WITH t AS (SELECT r.tid FROM {_KEYS}
                         CROSS JOIN LATERAL (SELECT ctid AS tid FROM rollup r WHERE {_KEY_MATCH} OFFSET 0) r)
            DELETE FROM rollup USING t WHERE rollup.ctid = t.tid""",
        site_id, *_key_arrays([(dim, unit, grp) for dim, unit, grp, _ in rows]),
    )  # fmt: skip
    await _copy_rows(conn, site_id, rows, 0)


async def _copy_rows(conn: asyncpg.Connection, site_id: int, rows: Sequence[KeyRow], part: int) -> None:
    records = []
    for dim, (level, slot), grp, r in rows:
        layout = layout_of_dim(dim)
        sets = [r.sets[name].serialize() if name in r.sets else None for name in layout.sets]
        removed = [r.removed[name].serialize() if name in r.removed else None for name in layout.sets]
        counters = [r.counters.get(name, 0) for name in layout.counters]
        records.append((site_id, dim, level, slot, grp, part, counters, sets, removed if any(removed) else None))
    if records:
        await conn.copy_records_to_table("rollup", records=records, columns=COLUMNS)


async def first_slot(conn: asyncpg.Connection, site_id: int) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT min(slot) FROM rollup WHERE site_id = $1 AND dim = '' AND level = $2", site_id, QUARTER
    )
    return value


async def site_zones(conn: asyncpg.Connection, site_ids: Sequence[int]) -> dict[int, str]:
    rows = await conn.fetch("SELECT site_id, timezone FROM site WHERE site_id = ANY($1::bigint[])", list(site_ids))
    return {r["site_id"]: r["timezone"] for r in rows}


def rollup_of(record: Any, sets: Sequence[str] | None = None) -> Rollup:
    """A stored part as a Rollup: counters, the sets it adds to and removes from (all of them, or
    the named ones as load_rows read them), by the names of its dimension's layout."""
    layout = layout_of_dim(record["dim"])
    values = record["counters"]
    assert len(values) == len(layout.counters), "a rollup row of another layout"  # never decoded as ours
    r = Rollup(dict(zip(layout.counters, values, strict=True)))
    names = layout.sets if sets is None else sets
    for name, stored in zip(names, record["sets"], strict=True):
        if stored is not None:
            r.sets[name] = BitMap.deserialize(stored)
    removed = record["removed"]
    if removed is not None:
        for name, stored in zip(names, removed, strict=True):
            if stored is not None:
                r.removed[name] = BitMap.deserialize(stored)
    return r


async def quarters_with_data(conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime) -> list[datetime]:
    """Every 15-minute slot of [start, end) that holds an event, a session start or a rollup row."""
    rows = await conn.fetch(
        f"""SELECT {SLOT.format(col="event_at")} AS slot FROM event
            WHERE site_id = $1 AND event_at >= $2 AND event_at < $3
            UNION
            SELECT {SLOT.format(col="started_at")} FROM session
            WHERE site_id = $1 AND started_at >= $2 AND started_at < $3
            UNION
            SELECT slot FROM rollup WHERE site_id = $1 AND dim = '' AND level = 'q' AND slot >= $2 AND slot < $3
            ORDER BY 1""",
        site_id, start, end,
    )  # fmt: skip
    return [r["slot"] for r in rows]


# --- layouts -------------------------------------------------------------------------------------

Stored = dict[str, tuple[str, bool]]  # family -> (fingerprint, complete)


async def rollup_layouts(conn: asyncpg.Connection, site_id: int) -> Stored:
    """The layouts the site's rollup rows are recorded in (none: the site has no rollup rows)."""
    rows = await conn.fetch("SELECT family, fingerprint, complete FROM rollup_layout WHERE site_id = $1", site_id)
    return {r["family"]: (r["fingerprint"], r["complete"]) for r in rows}


async def has_rollups(conn: asyncpg.Connection, site_id: int) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rollup WHERE site_id = $1)", site_id))


async def record_layouts(conn: asyncpg.Connection, site_id: int, layouts: dict[str, Layout], complete: bool) -> None:
    """These families' rows are (complete) or are being brought to (not complete) these layouts."""
    if not layouts:
        return
    families = list(layouts)
    await conn.execute(
        """INSERT INTO rollup_layout (site_id, family, fingerprint, quantities, complete)
           SELECT $1, f.family, f.fingerprint, string_to_array(f.quantities, E'\\n'), $5
           FROM unnest($2::text[], $3::text[], $4::text[]) AS f(family, fingerprint, quantities)
           ON CONFLICT (site_id, family) DO UPDATE
           SET fingerprint = excluded.fingerprint, quantities = excluded.quantities, complete = excluded.complete,
               changed_at = now()""",
        site_id, families, [layouts[f].fingerprint for f in families],
        ["\n".join(layouts[f].quantities) for f in families], complete,
    )  # fmt: skip


async def complete_layouts(conn: asyncpg.Connection, site_id: int, layouts: dict[str, Layout]) -> int:
    """Mark the site's families complete where they are still recorded in these layouts."""
    families = list(layouts)
    done = await conn.execute(
        """UPDATE rollup_layout l SET complete = true, changed_at = now()
           FROM unnest($2::text[], $3::text[]) AS f(family, fingerprint)
           WHERE l.site_id = $1 AND l.family = f.family AND l.fingerprint = f.fingerprint AND NOT l.complete""",
        site_id, families, [layouts[f].fingerprint for f in families],
    )  # fmt: skip
    return int(done.split()[-1])


async def stale_layout_sites(conn: asyncpg.Connection, layouts: dict[str, Layout]) -> list[int]:
    """Sites with rollup rows that are not all in these layouts."""
    families = list(layouts)
    rows = await conn.fetch(
        """SELECT DISTINCT l.site_id FROM rollup_layout l
           LEFT JOIN unnest($1::text[], $2::text[]) AS f(family, fingerprint) ON f.family = l.family
           WHERE NOT l.complete OR f.fingerprint IS DISTINCT FROM l.fingerprint ORDER BY 1""",
        families, [layouts[f].fingerprint for f in families],
    )  # fmt: skip
    return [r["site_id"] for r in rows]
