"""Answering KPIs from the rollups, and the operators' rebuild of rollups from the events: where
app.domain.rollup meets app.store.rollups. (Derivation keeps the rollups: app.pipeline.rollup.)

A read folds each key's parts (base, then deltas in commit order) and merges the largest units that
tile each bucket, on one snapshot; it never writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pyroaring import BitMap

from app.domain import rollup as domain
from app.domain.kpis import REGISTRY, TO_DATE, Bucket, Counts, limited_groups
from app.domain.rollup import DAY, HOUR, QUARTER, Rollup, Rows, Unit
from app.store import rollups as rollup_store
from app.store.kpi_queries import OTHER
from app.store.locks import lock_derivation
from app.store.rollups import rollup_of

SLOTS_PER_REBUILD = 96  # one day of quarters per transaction


async def rebuild(conn: asyncpg.Connection, site_id: int, quarters: Sequence[datetime], zone: ZoneInfo) -> None:
    """Recompute these quarters from the events, then their hours and local days from the quarters."""
    await rollup_store.number_persons(conn, site_id, quarters)
    events, sessions = await rollup_store.quarter_sources(conn, site_id, quarters)
    fresh: dict[tuple[str, Unit, str], Rollup] = {}
    for record in events:
        fresh[(record["dim"], (QUARTER, record["slot"]), record["grp"])] = _event_rollup(record)
    for record in sessions:
        r = fresh.setdefault((record["dim"], (QUARTER, record["slot"]), record["grp"]), Rollup())
        for c in REGISTRY.session_counters():
            r.counters[c.name] = record[c.name]
    rows = [(dim, unit, grp, r) for (dim, unit, grp), r in fresh.items()]
    await rollup_store.replace_rows(conn, site_id, [(QUARTER, q) for q in quarters], rows)
    hours, days = domain.parents(quarters, zone)
    hour = timedelta(hours=1)
    await _merge_parents(conn, site_id, {(HOUR, h): domain.cover(h, h + hour, zone, QUARTER) for h in hours})
    await _merge_parents(conn, site_id, {(DAY, s): domain.cover(s, e, zone, HOUR + QUARTER) for s, e in days})


async def _merge_parents(conn: asyncpg.Connection, site_id: int, children: dict[Unit, list[Unit]]) -> None:
    """Each parent unit's rows = its children's rows merged, per dimension and group."""
    if not children:
        return
    wanted = {u for units in children.values() for u in units}
    dims = [d for d, _ in rollup_store.DIMENSIONS]
    rows = await rollup_store.load_rows(conn, site_id, wanted, dims, REGISTRY.set_names())
    by_unit: dict[Unit, list[Any]] = {}
    for record in rows:
        by_unit.setdefault((record["level"], record["slot"]), []).append(record)
    merged: list[tuple[str, Unit, str, Rollup]] = []
    for parent, units in children.items():
        per_group: dict[tuple[str, str], list[Rollup]] = {}
        for unit in units:
            parts: dict[tuple[str, str], list[Any]] = {}
            for record in by_unit.get(unit, ()):
                parts.setdefault((record["dim"], record["grp"]), []).append(record)
            for key, records in parts.items():
                per_group.setdefault(key, []).append(domain.folded(rollup_of(r) for r in records))
        merged.extend((dim, parent, grp, domain.merged(rs)) for (dim, grp), rs in per_group.items())
    await rollup_store.replace_rows(conn, site_id, list(children), merged)


async def rebuild_range(pool: asyncpg.Pool, site_id: int, zone: ZoneInfo, start: datetime, end: datetime) -> int:
    """Operators' rebuild: every quarter of [start, end) that holds events or rollup rows is
    recomputed from the events, a day of quarters per transaction, under the site's derivation lock."""
    async with pool.acquire() as conn:
        quarters = await rollup_store.quarters_with_data(conn, site_id, start, end)
        for at in range(0, len(quarters), SLOTS_PER_REBUILD):
            async with conn.transaction():
                await lock_derivation(conn, site_id)
                await rollup_store.plan_by_index(conn)
                await rebuild(conn, site_id, quarters[at : at + SLOTS_PER_REBUILD], zone)
    return len(quarters)


def _event_rollup(record: Any) -> Rollup:
    r = Rollup()
    for c in REGISTRY.event_counters():
        r.counters[c.name] = record[c.name]
    for name in REGISTRY.set_names():
        if record[name]:
            r.sets[name] = BitMap(record[name])
    return r


# --- answers -----------------------------------------------------------------------------------


async def _rows(conn: asyncpg.Connection, site_id: int, units: set[Unit], dim: str, sets: Sequence[str]) -> Rows:
    parts: dict[tuple[Unit, str], list[Rollup]] = {}
    for record in await rollup_store.load_rows(conn, site_id, units, [dim], sets):  # in part order
        parts.setdefault(((record["level"], record["slot"]), record["grp"]), []).append(rollup_of(record, sets))
    rows: Rows = {}
    for (unit, grp), found in parts.items():
        rows.setdefault(unit, {})[grp] = found[0] if len(found) == 1 and not found[0].removed else domain.folded(found)
    return rows


async def rollup_counts(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, bucket_list: list[Bucket],
    breakdown: str | None, limit: int | None,
) -> tuple[dict[tuple[datetime, str], Counts], list[str]] | None:  # fmt: skip
    """Counts per (aligned bucket start, group) and the top groups of a limited breakdown, from the
    rollups (one snapshot); None when the period's edges are not on 15-minute boundaries."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        p = domain.read_plan(bucket_list, site_zone, await rollup_store.first_slot(conn, site_id))
        if p is None:
            return None
        dim = breakdown or ""
        rows = await _rows(conn, site_id, {u for _, units in p.buckets for u in units}, dim, REGISTRY.kpi_sets())
        if p.before:
            rows |= await _rows(conn, site_id, set(p.before) - set(rows), dim, (TO_DATE.persons,))
    top: list[str] = []
    rename = None
    if breakdown and limit:
        top = limited_groups(domain.top_groups(rows, p, limit + 1), limit)
        if top:
            every = {grp for groups in rows.values() for grp in groups}
            rename = {grp: OTHER for grp in every if grp not in top}
    return domain.merged_counts(rows, p, rename), top


async def funnel_sets(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, start: datetime, end: datetime
) -> dict[str, BitMap] | None:
    """Each RACE stage's person set over [start, end) (reach: every visitor); None when the edges
    are not on quarter hours."""
    if not (domain.on_quarter(start) and domain.on_quarter(end)):
        return None
    units = domain.cover(start, end, site_zone)
    rows = await _rows(conn, site_id, set(units), "", tuple(REGISTRY.funnel_sets().values()))
    return domain.stage_persons(rows, units)
