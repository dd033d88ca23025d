"""A read answered from the rollups includes every write acknowledged before it, even when writes
land while the read's own refresh waits for the site's lock (found by review: a refresh that
stopped halfway used to be answered from)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app import rollups
from app.config import Settings
from app.domain.kpis import Bucket, Granularity
from app.store import kpi_queries
from app.store.database import create_pool
from app.store.locks import lock_key
from tests.conftest import ROOT_TOKEN, create_site

UTC_ZONE = ZoneInfo("UTC")
DAY = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str) -> Settings:
    """No background refresh after startup: only the read refreshes."""
    return Settings(database_url=database_url, admin_token=ROOT_TOKEN, flush_max_wait_ms=2.0, rollup_interval=3600)


async def _post(client: httpx.AsyncClient, site: dict[str, Any], anon: str, mid: str, at: str) -> None:
    page = {"type": "page", "anonymousId": anon, "messageId": mid, "timestamp": at}
    answer = await client.post("/v1/batch", json={"batch": [page]}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text


async def test_a_read_waits_for_a_complete_refresh(
    client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups, "DELTA_ROWS_PER_REFRESH", 2)  # so one refresh round cannot take everything
    site = await create_site(client)
    pool = await create_pool(database_url, 2, 4)
    key = lock_key("rollup", site["id"], "")
    try:
        await _post(client, site, "p0", "m1", "2026-05-01T10:05:00Z")
        await _post(client, site, "p9", "m9", "2026-05-01T11:00:00Z")
        await db.execute("SELECT pg_advisory_lock($1)", key)
        async with pool.acquire() as conn:
            read = asyncio.create_task(rollups.ready_for(conn, site["id"], UTC_ZONE, DAY[1], 16))
            await asyncio.sleep(0.3)
            await _post(client, site, "p0", "m0", "2026-05-01T10:01:00Z")  # late: re-derives p0
            await db.execute("SELECT pg_advisory_unlock($1)", key)
            assert await read is True
            rolled, _ = await rollups.kpi_counts(conn, site["id"], UTC_ZONE, [Bucket(DAY[0], *DAY)], None, None)
        q = kpi_queries.Query(site["id"], *DAY, "UTC", Granularity.TOTAL, None)
        raw = await kpi_queries.kpi_counts(pool, q, [Bucket(DAY[0], *DAY)])
        assert rolled[(DAY[0], "")] == raw[(DAY[0], "")]
    finally:
        await pool.close()
