"""Answering KPIs and goals from the rollups, the operators' rebuild of rollups from the events, and
the conversion of a site's rollups to the registry's layout: where app.domain.rollup meets
app.store.rollups. (Derivation keeps the rollups: app.pipeline.rollup.)

A read folds each key's parts (base, then deltas in commit order) and merges the largest units that
tile each bucket, on one snapshot; it never writes. It reads only rows recorded (complete) in the
registry's layout: otherwise it answers None and the caller computes from the events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pyroaring import BitMap

from app.domain import rollup as domain
from app.domain.kpis import REGISTRY, TO_DATE, Bucket, Counts, limited_groups
from app.domain.kpis.registry import GOAL_LAYOUT
from app.domain.reports import CohortActivity
from app.domain.rollup import DAY, HOUR, QUARTER, Rollup, Rows, Unit
from app.domain.rollup_delta import GOAL
from app.store import report_counters as counter_store
from app.store import report_queries
from app.store import rollups as rollup_store
from app.store.kpi_queries import OTHER, Query
from app.store.locks import lock_derivation, try_lock_conversion, unlock_conversion
from app.store.rollups import rollup_of

SLOTS_PER_REBUILD = 96  # one day of quarters per transaction
COUNTER_SPAN_PER_REBUILD = timedelta(days=1)  # of report counter slots, per transaction
PARENTS_PER_REBUILD = 48  # hours or days merged per transaction
_ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
log = logging.getLogger("racetrack.rollups")


FAMILIES = ("kpi", "goal")


async def rebuild(
    conn: asyncpg.Connection, site_id: int, quarters: Sequence[datetime], zone: ZoneInfo, parents: bool = True,
    families: Sequence[str] = FAMILIES,
) -> None:  # fmt: skip
    """Recompute these quarters' rows (of these families) from the events, then (`parents`) their
    hours and local days from the quarters."""
    await rollup_store.number_persons(conn, site_id, quarters)
    events, sessions, goals = await rollup_store.quarter_sources(conn, site_id, quarters, families)
    fresh: dict[tuple[str, Unit, str], Rollup] = {}
    for record in events:
        fresh[(record["dim"], (QUARTER, record["slot"]), record["grp"])] = _event_rollup(record)
    for record in sessions:
        r = fresh.setdefault((record["dim"], (QUARTER, record["slot"]), record["grp"]), Rollup())
        for c in REGISTRY.session_counters():
            r.counters[c.name] = record[c.name]
    for record in goals:
        fresh[(GOAL, (QUARTER, record["slot"]), record["grp"])] = _goal_rollup(record)
    rows = [(dim, unit, grp, r) for (dim, unit, grp), r in fresh.items()]
    dims = rollup_store.dims_of(families)
    await rollup_store.replace_rows(conn, site_id, [(QUARTER, q) for q in quarters], rows, dims)
    if parents:
        hours, days = domain.parents(quarters, zone)
        await _merge_parents(conn, site_id, _hour_children(hours, zone), dims)
        await _merge_parents(conn, site_id, _day_children(days, zone), dims)


def _hour_children(hours: Iterable[datetime], zone: ZoneInfo) -> dict[Unit, list[Unit]]:
    return {(HOUR, h): domain.cover(h, h + timedelta(hours=1), zone, QUARTER) for h in hours}


def _day_children(days: Iterable[tuple[datetime, datetime]], zone: ZoneInfo) -> dict[Unit, list[Unit]]:
    return {(DAY, s): domain.cover(s, e, zone, HOUR + QUARTER) for s, e in days}


async def _merge_parents(
    conn: asyncpg.Connection, site_id: int, children: dict[Unit, list[Unit]], dims: Sequence[str]
) -> None:
    """Each parent unit's rows (of these dimensions) = its children's rows merged, per dimension and
    group."""
    if not children:
        return
    wanted = {u for units in children.values() for u in units}
    rows = await rollup_store.load_rows(conn, site_id, wanted, dims)
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
    await rollup_store.replace_rows(conn, site_id, list(children), merged, dims)


async def rebuild_range(pool: asyncpg.Pool, site_id: int, zone: ZoneInfo, start: datetime, end: datetime) -> int:
    """Operators' rebuild: every quarter of [start, end) that holds events or rollup rows is
    recomputed from the events, a day of quarters per transaction, under the site's derivation lock.
    A site whose rollups are not (all) in the registry's layout is converted instead: all of it."""
    async with pool.acquire() as conn:
        if not _current(await rollup_store.rollup_layouts(conn, site_id)):
            return await convert(conn, site_id, zone)
        quarters = await rollup_store.quarters_with_data(conn, site_id, start, end)
        for at in range(0, len(quarters), SLOTS_PER_REBUILD):
            async with conn.transaction():
                await lock_derivation(conn, site_id)
                await rollup_store.plan_by_index(conn)
                await rebuild(conn, site_id, quarters[at : at + SLOTS_PER_REBUILD], zone)
        await rebuild_counters(conn, site_id, zone, COUNTER_FAMILIES, (start, end))
    return len(quarters)


COUNTER_FAMILIES = ("quality", "cohort")  # the report counters' families (app.store.report_counters)
_COUNTER_REBUILDS = {"quality": (counter_store.quality_span, counter_store.rebuild_quality),
                     "cohort": (counter_store.customer_span, counter_store.rebuild_customers)}  # fmt: skip


async def rebuild_counters(
    conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, families: Sequence[str],
    within: tuple[datetime, datetime] = _ALL_TIME,
) -> None:  # fmt: skip
    """Recompute these report counters' slots from the events: every slot of `within` (quarter
    boundaries) where the site has data (quality by receipt time, cohorts by order time), a day per
    transaction under the site's derivation lock. Derivations in between add to the slots as they
    do any time: a slot is exact once rebuilt, and every later derivation keeps it so. Then the
    cohort months, from the customer rows, in one transaction."""
    for family in families:
        span, rebuild_slots = _COUNTER_REBUILDS[family]
        first, last = await span(conn, site_id)
        if first is None or last is None:
            continue
        at = max(domain.quarter_of(first), within[0])
        stop = min(domain.quarter_of(last) + domain.QUARTER_SPAN, within[1])
        while at < stop:
            upto = min(at + COUNTER_SPAN_PER_REBUILD, stop)
            async with conn.transaction():
                await lock_derivation(conn, site_id)
                await rebuild_slots(conn, site_id, at, upto)
            at = upto
    if "cohort" in families:  # from the customer rows, now exact; kept by derivations from then on
        async with conn.transaction():
            await lock_derivation(conn, site_id)
            await counter_store.rebuild_cohort_months(conn, site_id, zone.key)


async def convert(conn: asyncpg.Connection, site_id: int, zone: ZoneInfo) -> int:
    """Bring every rollup row of the site to the registry's layouts: the rows of each family not
    recorded complete in its layout, each quarter rebuilt from the events, then each hour and local
    day merged from them (once every quarter is in the new layout), in transactions under the
    site's derivation lock; then the layouts are recorded complete.
    Derivations meanwhile append parts in the new layout (a rebuilt unit replaces them whole), and
    reads use the events. How many quarters."""
    wanted = REGISTRY.layouts()
    async with conn.transaction():
        await lock_derivation(conn, site_id)
        found = await rollup_store.rollup_layouts(conn, site_id)
        # a family recorded complete in its layout is kept as it is
        families = [f for f, layout in wanted.items() if found.get(f) != (layout.fingerprint, True)]
        await rollup_store.record_layouts(conn, site_id, {f: wanted[f] for f in families}, False)
    dims = rollup_store.dims_of(families)
    quarters = await rollup_store.quarters_with_data(conn, site_id, *_ALL_TIME) if dims else []
    for at in range(0, len(quarters), SLOTS_PER_REBUILD):
        async with conn.transaction():
            await lock_derivation(conn, site_id)
            await rollup_store.plan_by_index(conn)
            await rebuild(conn, site_id, quarters[at : at + SLOTS_PER_REBUILD], zone, False, families)
    hours, days = domain.parents(quarters, zone)
    for children in (_hour_children(sorted(hours), zone), _day_children(sorted(days), zone)):
        units = list(children)
        for at in range(0, len(units), PARENTS_PER_REBUILD):
            async with conn.transaction():
                await lock_derivation(conn, site_id)
                await rollup_store.plan_by_index(conn)
                picked = {u: children[u] for u in units[at : at + PARENTS_PER_REBUILD]}
                await _merge_parents(conn, site_id, picked, dims)
    await rebuild_counters(conn, site_id, zone, [f for f in families if f in COUNTER_FAMILIES])
    if REGISTRY.layouts() != wanted:  # the registry changed meanwhile (tests extend it): not complete
        return len(quarters)
    async with conn.transaction():
        await lock_derivation(conn, site_id)
        await rollup_store.complete_layouts(conn, site_id, wanted)
    return len(quarters)


async def convert_stale(pool: asyncpg.Pool) -> int:
    """Convert every site whose rollups are not in the registry's layouts (the deriver runs this in
    the background; one process per site at a time). How many sites."""
    async with pool.acquire() as conn:
        stale = await rollup_store.stale_layout_sites(conn, REGISTRY.layouts())
        zones = await rollup_store.site_zones(conn, stale)
    done = 0
    for site_id in stale:
        async with pool.acquire() as conn:  # holds the site's conversion lock and does the work
            if not await try_lock_conversion(conn, site_id):
                continue  # another process converts it
            try:
                started = time.perf_counter()
                quarters = await convert(conn, site_id, ZoneInfo(zones.get(site_id) or "UTC"))
                log.info("rollups of site %s rebuilt in the registry's layout: %s quarters in %.1f s",
                         site_id, quarters, time.perf_counter() - started)  # fmt: skip
                done += 1
            finally:
                await unlock_conversion(conn, site_id)
    return done


def _current(found: rollup_store.Stored, family: str | None = None) -> bool:
    """Whether the site's rows (of one family, or all) can be read as the registry's layout: all of
    them in it, or no rows at all."""
    if not found:
        return True
    layouts = REGISTRY.layouts()
    families = [family] if family else list(layouts)
    return all(found.get(f) == (layouts[f].fingerprint, True) for f in families)


def _event_rollup(record: Any) -> Rollup:
    r = Rollup()
    for c in REGISTRY.event_counters():
        r.counters[c.name] = record[c.name]
    for name in REGISTRY.set_names():
        if record[name]:
            r.sets[name] = BitMap(record[name])
    return r


def _goal_rollup(record: Any) -> Rollup:
    r = Rollup({name: record[name] for name in GOAL_LAYOUT.counters})
    for name in GOAL_LAYOUT.sets:
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
    rollups (one snapshot); None when the period's edges are not on 15-minute boundaries, or the
    site's rows are not in the registry's layout."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if not _current(await rollup_store.rollup_layouts(conn, site_id), "kpi"):
            return None
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
    are not on quarter hours, or the rows are not in the registry's layout."""
    if not (domain.on_quarter(start) and domain.on_quarter(end)):
        return None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if not _current(await rollup_store.rollup_layouts(conn, site_id), "kpi"):
            return None
        units = domain.cover(start, end, site_zone)
        rows = await _rows(conn, site_id, set(units), "", tuple(REGISTRY.funnel_sets().values()))
    return domain.stage_persons(rows, units)


async def goal_counts(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, bucket_list: list[Bucket]
) -> dict[tuple[datetime, str], tuple[int, int, int]] | None:
    """Per (aligned bucket start, goal): completions, distinct persons and value in cents, from the
    goal dimension's rows (one snapshot); None as for rollup_counts."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if not _current(await rollup_store.rollup_layouts(conn, site_id), GOAL):
            return None
        p = domain.read_plan(bucket_list, site_zone, None)
        if p is None:
            return None
        rows = await _rows(conn, site_id, p.units, GOAL, GOAL_LAYOUT.sets)
    return domain.goal_counts(rows, p)


async def quality_counts(
    conn: asyncpg.Connection, site_id: int, q: Query, bucket_list: Sequence[Bucket]
) -> dict[str, list[Any]] | None:
    """/v1/quality's counts with the event counts from the deriver's receipt slots (one snapshot);
    None when a bucket edge is not on a quarter hour, or the slots are being rebuilt."""
    if not all(domain.on_quarter(b.start) and domain.on_quarter(b.end) for b in bucket_list):
        return None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if not _current(await rollup_store.rollup_layouts(conn, site_id), "quality"):
            return None
        return await report_queries.quality_counts(conn, q, counted=True)


async def cohort_activity(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, start: datetime, end: datetime, zone: ZoneInfo
) -> list[CohortActivity] | None:
    """/v1/cohorts' activity from the deriver's counters: whole months of the site's zone from its
    cohort months, any other period from the customer slots; None when the period's edges or a
    local month start within it are not on quarter hours, or the counters are being rebuilt."""
    if not (domain.on_quarter(start) and domain.on_quarter(end) and domain.months_on_quarters(start, end, zone)):
        return None
    months = [domain.month_starting(moment, zone) for moment in (start, end)] if zone.key == site_zone.key else []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if not _current(await rollup_store.rollup_layouts(conn, site_id), "cohort"):
            return None
        if months and months[0] and months[1]:
            return await report_queries.cohort_months(conn, site_id, months[0], months[1])
        return await report_queries.cohort_activity(conn, site_id, start, end, zone.key, counted=True)
