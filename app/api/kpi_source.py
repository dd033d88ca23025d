"""Where a KPI answer's counts come from: the rollups (default), or the events themselves."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Query
from fastapi.responses import Response

from app import rollups
from app.config import Settings
from app.domain.kpis import Bucket, Counts, limited_groups
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


def use_rollups(settings: Settings, source: str) -> bool:
    """Rollups answer when enabled and asked for (they hold exactly the derived events)."""
    return source == "rollups" and settings.rollups


async def bucket_counts(
    conn: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, site: Site, q: kpi_queries.Query,
    periods: list[Bucket], limit: int | None, source: str = "rollups",
) -> tuple[dict[tuple[datetime, str], Counts], list[str], str]:  # fmt: skip
    """Counts per (aligned bucket start, group), the top groups when a breakdown is limited, and
    where the counts came from (rollups or events)."""
    if use_rollups(settings, source):
        found = await rollups.rollup_counts(conn, site.site_id, site_zone(site), periods, q.breakdown, limit)
        if found is not None:
            return (*found, "rollups")
    top: list[str] = []
    if q.breakdown and limit:
        top = limited_groups(await kpi_queries.top_groups(conn, q, limit + 1), limit)
        q = replace(q, top=tuple(top))
    return await kpi_queries.event_counts(pool, q, periods), top, "events"


def with_source(response: Response, source: str) -> Response:
    """Tell BI tools and operators where the numbers came from (X-Racetrack-Source)."""
    response.headers[SOURCE_HEADER] = source
    return response
