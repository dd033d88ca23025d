"""Where /v1/quality's and /v1/cohorts' event counts come from: the deriver's report counters
(default; app.store.report_counters), or the events themselves (`source=events`, and whenever the
counters cannot answer exactly: an edge off a quarter hour, counters being rebuilt)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app import rollups
from app.api.kpi_source import site_zone, use_rollups
from app.api.params import Window
from app.config import Settings
from app.domain.reports import CohortActivity
from app.store import report_queries
from app.store.sites import Site


async def quality_counts(
    conn: asyncpg.Connection, settings: Settings, site: Site, window: Window, source: str
) -> tuple[dict[str, list[Any]], str]:
    """report_queries.quality_counts' answer, and where its event counts came from."""
    if use_rollups(settings, source):
        found = await rollups.quality_counts(conn, site.site_id, window.query, window.buckets)
        if found is not None:
            return found, "rollups"
    return await report_queries.quality_counts(conn, window.query), "events"


async def cohort_activity(
    conn: asyncpg.Connection, settings: Settings, site: Site, period: tuple[datetime, datetime], zone: ZoneInfo,
    source: str,
) -> tuple[list[CohortActivity], str]:  # fmt: skip
    """report_queries.cohort_activity's answer, and where it came from."""
    if use_rollups(settings, source):
        found = await rollups.cohort_activity(conn, site.site_id, site_zone(site), *period, zone)
        if found is not None:
            return found, "rollups"
    return await report_queries.cohort_activity(conn, site.site_id, *period, zone.key), "events"
