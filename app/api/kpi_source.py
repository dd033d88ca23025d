"""Where a KPI answer's counts come from: the rollups (default), or the events themselves."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Query
from fastapi.responses import Response

from app import rollups
from app.config import Settings
from app.domain.kpis import RACE_STAGES, Bucket, Counts, limited_groups
from app.store import kpi_queries
from app.store.sites import Site

SOURCE_HEADER = "X-Racetrack-Source"
Source = Annotated[
    Literal["rollups", "events"],
    Query(
        description="rollups (default): merged from pre-aggregated slots, fast at any size; events: "
        "aggregated from the stored events (slow on big sites; the same numbers, for checks). Periods "
        "whose edges are not on a quarter hour are always computed from the events.",
        examples=["rollups"],
    ),
]


def site_zone(site: Site) -> ZoneInfo:
    return ZoneInfo(site.timezone or "UTC")


async def use_rollups(conn: asyncpg.Connection, settings: Settings, site: Site, end: datetime, source: str) -> bool:
    """Rollups answer when enabled and asked for, after the site's few pending slots are refreshed."""
    if source != "rollups" or not settings.rollups:
        return False
    return await rollups.ready_for(conn, site.site_id, site_zone(site), end, settings.rollup_inline_slots)


async def kpi_counts(
    conn: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, site: Site, q: kpi_queries.Query,
    periods: list[Bucket], limit: int | None, source: str = "rollups",
) -> tuple[dict[tuple[datetime, str], Counts], list[str], str]:  # fmt: skip
    """Counts per (aligned bucket start, group), the top groups when a breakdown is limited, and
    where the counts came from (rollups or events)."""
    if await use_rollups(conn, settings, site, q.end, source):
        found = await rollups.kpi_counts(conn, site.site_id, site_zone(site), periods, q.breakdown, limit)
        if found is not None:
            return (*found, "rollups")
    top: list[str] = []
    if q.breakdown and limit:
        top = limited_groups(await kpi_queries.top_groups(conn, q, limit + 1), limit)
        q = replace(q, top=tuple(top))
    return await kpi_queries.kpi_counts(pool, q, periods), top, "events"


async def rollup_stage_persons(
    conn: asyncpg.Connection, site: Site, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """Each RACE stage's person set over [start, end) from the rollups (reach: every visitor), for
    the nested funnel; None when the edges are not on quarter hours."""
    from app.domain import rollup as domain

    if not (domain.on_quarter(start) and domain.on_quarter(end)):
        return None
    units = domain.cover(start, end, site_zone(site))
    # TODO(lead): rollups.funnel_persons only answers counts; a public rollups.funnel_sets would replace _rows here
    rows = await rollups._rows(conn, site.site_id, set(units), "", domain.FUNNEL_SETS)
    total = domain.merged(r for unit in units for r in rows.get(unit, {}).values())
    return {stage: total.persons(name) for stage, name in zip(RACE_STAGES, domain.FUNNEL_SETS, strict=True)}


def with_source(response: Response, source: str) -> Response:
    """Tell BI tools and operators where the numbers came from (X-Racetrack-Source)."""
    response.headers[SOURCE_HEADER] = source
    return response
