"""Keeping rollups fresh and answering KPIs from them: where app.domain.rollup meets app.store.rollups.

Every write is logged by database triggers in its own transaction: appends (new events, new and
changed sessions) as deltas, anything else as touched 15-minute slots. A refresh adds the deltas to
their slot, hour and site-local day rows, and recomputes touched slots from the events, then the
hours and days above them. A background task refreshes every `rollup_interval` seconds; a KPI read
first refreshes what is still logged for its site, so an answer never misses an acknowledged event.
With a long backlog (a bulk load, a reclassification under way) the read computes from the events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pyroaring import BitMap

from app.domain import rollup as domain
from app.domain.kpis import Bucket, Counts, limited_groups
from app.domain.rollup import DAY, HOUR, KPI_SETS, QUARTER, Rollup, Rows, Unit
from app.errors import DATABASE_DOWN
from app.metrics import ROLLUP_LAG, ROLLUP_REFRESH_SECONDS
from app.store import rollups as store
from app.store.kpi_queries import OTHER

log = logging.getLogger("racetrack.rollups")
SLOTS_PER_REFRESH = 96  # one day of quarters per transaction
DELTA_ROWS_PER_REFRESH = 500  # logged batches of new events per transaction
SESSION_ROWS = 20 * DELTA_ROWS_PER_REFRESH
INLINE_EVENTS = 20_000  # a read adds at most this many logged new events itself
INLINE_ROUNDS = 3


async def refresh_site(
    conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, max_slots: int = SLOTS_PER_REFRESH
) -> tuple[int, bool]:
    """One transaction, on one snapshot: add the logged appends, recompute up to max_slots logged
    slots, forget exactly the log rows it read. Returns how many slots and log rows it did, and
    whether more may be waiting (it took a full batch of one kind)."""
    await store.lock_site(conn, site_id)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await store.plan_by_index(conn)
            new_ids, event_ids = await store.take_new_events(conn, site_id, DELTA_ROWS_PER_REFRESH)
            sessions = await store.take_session_deltas(conn, site_id, SESSION_ROWS)
            if event_ids or sessions:
                await _add_deltas(conn, site_id, zone, event_ids, sessions)
            deltas_left = len(new_ids) >= DELTA_ROWS_PER_REFRESH or len(sessions) >= SESSION_ROWS
            dirty_ids: list[int] = []
            quarters: list[datetime] = []
            # Recomputing reads every event of the snapshot: only once every delta of the snapshot
            # is in, or a delta left for the next round would count its events twice. After the
            # deltas, a recomputed slot replaces its rows, and its hour and day are merged again.
            if not deltas_left:
                dirty_ids, quarters = await store.take_dirty(conn, site_id, max_slots)
            if quarters:
                await rebuild(conn, site_id, quarters, zone)
            await store.forget_dirty(conn, site_id, dirty_ids)
            await store.forget_deltas(conn, site_id, new_ids, [r["delta_id"] for r in sessions])
    finally:
        await store.unlock_site(conn, site_id)
    return len(quarters) + len(new_ids) + len(sessions), deltas_left or len(quarters) >= max_slots


async def _add_deltas(
    conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, event_ids: list[int], sessions: Sequence[Any]
) -> None:
    """Add new events and session changes to their quarter, hour and local-day rows."""
    deltas: dict[tuple[str, Unit, str], Rollup] = {}

    def add(dim: str, slot: datetime, grp: str, delta: Rollup) -> None:
        hours, days = domain.parents([slot], zone)
        for unit in [(QUARTER, slot), *((HOUR, h) for h in hours), *((DAY, d[0]) for d in days)]:
            deltas.setdefault((dim, unit, grp), Rollup()).add(delta)

    if event_ids:
        await store.number_persons_of(conn, site_id, event_ids)
        for record in await store.new_event_sources(conn, site_id, event_ids):
            add(record["dim"], record["slot"], record["grp"], _event_rollup(record))
    for row in sessions:
        delta = Rollup()
        for name in domain.SESSION_COUNTERS:
            delta.counters[name] = row[name]
        for dim, _ in store.DIMENSIONS:
            add(dim, row["slot"], store.session_group(dim, row), delta)
    stored = {
        (r["dim"], (r["level"], r["slot"]), r["grp"]): _rollup_of(r)
        for r in await store.load_keys(conn, site_id, list(deltas))
    }
    for key, delta in deltas.items():
        stored.setdefault(key, Rollup()).add(delta)
    await store.upsert_rows(conn, site_id, [(dim, unit, grp, stored[(dim, unit, grp)]) for dim, unit, grp in deltas])


def _event_rollup(record: Any) -> Rollup:
    r = Rollup()
    for name in domain.EVENT_COUNTERS:
        r.counters[name] = record[name]
    for name in domain.PERSON_SETS:
        if record[name]:
            r.sets[name] = BitMap(record[name])
    return r


async def rebuild(conn: asyncpg.Connection, site_id: int, quarters: Sequence[datetime], zone: ZoneInfo) -> None:
    """Recompute these quarters from the events, then their hours and local days from the quarters."""
    await store.number_persons(conn, site_id, quarters)
    events, sessions = await store.quarter_sources(conn, site_id, quarters)
    fresh: dict[tuple[str, Unit, str], Rollup] = {}
    for record in events:
        fresh[(record["dim"], (QUARTER, record["slot"]), record["grp"])] = _event_rollup(record)
    for record in sessions:
        r = fresh.setdefault((record["dim"], (QUARTER, record["slot"]), record["grp"]), Rollup())
        for name in domain.SESSION_COUNTERS:
            r.counters[name] = record[name]
    rows = [(dim, unit, grp, r) for (dim, unit, grp), r in fresh.items()]
    await store.replace_rows(conn, site_id, [(QUARTER, q) for q in quarters], rows)
    hours, days = domain.parents(quarters, zone)
    hour = timedelta(hours=1)
    await _merge_parents(conn, site_id, {(HOUR, h): domain.cover(h, h + hour, zone, QUARTER) for h in hours})
    await _merge_parents(conn, site_id, {(DAY, s): domain.cover(s, e, zone, HOUR + QUARTER) for s, e in days})


async def _merge_parents(conn: asyncpg.Connection, site_id: int, children: dict[Unit, list[Unit]]) -> None:
    """Each parent unit's rows = its children's rows merged, per dimension and group."""
    if not children:
        return
    wanted = {u for units in children.values() for u in units}
    rows = await store.load_rows(conn, site_id, wanted, [d for d, _ in store.DIMENSIONS], domain.PERSON_SETS)
    by_unit: dict[Unit, list[Any]] = {}
    for record in rows:
        by_unit.setdefault((record["level"], record["slot"]), []).append(record)
    merged: list[tuple[str, Unit, str, Rollup]] = []
    for parent, units in children.items():
        per_group: dict[tuple[str, str], list[Rollup]] = {}
        for unit in units:
            for record in by_unit.get(unit, ()):
                per_group.setdefault((record["dim"], record["grp"]), []).append(_rollup_of(record))
        merged.extend((dim, parent, grp, domain.merged(rs)) for (dim, grp), rs in per_group.items())
    await store.replace_rows(conn, site_id, list(children), merged)


def _rollup_of(record: Any, sets: Sequence[str] = domain.PERSON_SETS) -> Rollup:
    r = Rollup({name: record[name] for name in domain.COUNTERS})
    for name in sets:
        if record[name] is not None:
            r.sets[name] = BitMap.deserialize(record[name])
    return r


async def refresh_all(pool: asyncpg.Pool) -> int:
    """Refresh every logged slot of every site; how many slots."""
    done = 0
    async with pool.acquire() as conn:
        sites = await store.dirty_sites(conn)
        zones = await store.site_zones(conn, sites)
        for site_id in sites:
            zone = ZoneInfo(zones.get(site_id) or "UTC")  # a purged site's leftovers refresh to nothing
            more = True
            while more:
                count, more = await refresh_site(conn, site_id, zone)
                done += count
        oldest = await store.oldest_dirty(conn)
    ROLLUP_LAG.set(0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
    return done


async def mark_and_refresh(pool: asyncpg.Pool, site_id: int, start: datetime, end: datetime) -> int:
    """Operators' rebuild: log every slot of [start, end) that holds data, then refresh them."""
    async with pool.acquire() as conn:
        marked = await store.mark_dirty(conn, site_id, start, end)
    await refresh_all(pool)
    return marked


class RollupRefresher:
    """The background task that keeps rollups within a few seconds of the writes."""

    def __init__(self, pool: asyncpg.Pool, interval: float) -> None:
        self._pool = pool
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollup-refresher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                if await refresh_all(self._pool):
                    ROLLUP_REFRESH_SECONDS.observe(time.perf_counter() - started)
            except DATABASE_DOWN:
                log.warning("rollup refresh: database unavailable")
            except Exception:
                log.exception("rollup refresh failed")
            await asyncio.sleep(self._interval)


# --- answers -----------------------------------------------------------------------------------


async def ready_for(conn: asyncpg.Connection, site_id: int, zone: ZoneInfo, end: datetime, inline_slots: int) -> bool:
    """Refresh what is logged for the site now, when it is little (an answer then includes every
    committed write); False when more is waiting than a read should refresh."""
    pending = await store.dirty_slots(conn, site_id, end)
    events, sessions = await store.pending_deltas(conn, site_id)
    if pending > inline_slots or events > INLINE_EVENTS or sessions > SESSION_ROWS:
        return False
    more = bool(pending or events or sessions)
    for _ in range(INLINE_ROUNDS):  # writes that landed meanwhile may make one round not enough
        if not more:
            return True
        _, more = await refresh_site(conn, site_id, zone, max(inline_slots, SLOTS_PER_REFRESH))
    return not more


async def _rows(conn: asyncpg.Connection, site_id: int, units: set[Unit], dim: str, sets: Sequence[str]) -> Rows:
    rows: Rows = {}
    for record in await store.load_rows(conn, site_id, units, [dim], sets):
        rows.setdefault((record["level"], record["slot"]), {})[record["grp"]] = _rollup_of(record, sets)
    return rows


async def kpi_counts(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, bucket_list: list[Bucket],
    breakdown: str | None, limit: int | None,
) -> tuple[dict[tuple[datetime, str], Counts], list[str]] | None:  # fmt: skip
    """Counts per (aligned bucket start, group) and the top groups of a limited breakdown, from the
    rollups (one snapshot); None when the period's edges are not on 15-minute boundaries."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        p = domain.plan(bucket_list, site_zone, await store.first_slot(conn, site_id))
        if p is None:
            return None
        dim = breakdown or ""
        rows = await _rows(conn, site_id, {u for _, units in p.buckets for u in units}, dim, KPI_SETS)
        if p.before:
            rows |= await _rows(conn, site_id, set(p.before) - set(rows), dim, ("order_persons",))
    top: list[str] = []
    rename = None
    if breakdown and limit:
        top = limited_groups(domain.top_groups(rows, p, limit + 1), limit)
        if top:
            every = {grp for groups in rows.values() for grp in groups}
            rename = {grp: OTHER for grp in every if grp not in top}
    return domain.kpi_counts(rows, p, rename), top


async def funnel_persons(
    conn: asyncpg.Connection, site_id: int, site_zone: ZoneInfo, start: datetime, end: datetime
) -> dict[str, int] | None:
    if not (domain.on_quarter(start) and domain.on_quarter(end)):
        return None
    units = domain.cover(start, end, site_zone)
    rows = await _rows(conn, site_id, set(units), "", domain.FUNNEL_SETS)
    return domain.funnel_persons(rows, units)
