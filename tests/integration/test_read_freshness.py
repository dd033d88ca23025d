"""Reads never write, wait (bounded) for the derivation of what was acknowledged before them, and
say how far behind they are: while a deriver holds the site, the answer is the derived data with
its lag reported; once derivation is through, the same read includes everything."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.store import dashboard_queries
from app.store.locks import lock_key
from tests.conftest import ROOT_TOKEN, create_site, drain

PERIOD = {"from": "2026-05-01", "to": "2026-05-02", "granularity": "total", "tz": "UTC"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, admin_token=ROOT_TOKEN, flush_max_wait_ms=2.0, read_wait_seconds=0.5)


async def _post(client: httpx.AsyncClient, site: dict[str, Any], anon: str, mid: str, at: str) -> None:
    page = {"type": "page", "anonymousId": anon, "messageId": mid, "timestamp": at}
    answer = await client.post("/v1/batch", json={"batch": [page]}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text


async def _kpis(client: httpx.AsyncClient, site: dict[str, Any]) -> httpx.Response:
    answer = await client.get("/v1/kpis", params=PERIOD, headers={"Authorization": f"Bearer {site['read_key']}"})
    assert answer.status_code == 200, answer.text
    return answer


async def test_a_read_reports_its_lag_while_derivation_is_held_then_includes_everything(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    site = await create_site(client)
    await _post(client, site, "p0", "m1", "2026-05-01T10:05:00Z")
    first = await _kpis(client, site)
    assert first.json()["buckets"][0]["kpis"]["pageviews"] == 1
    assert first.json()["freshness"]["complete"] is True and first.json()["freshness"]["lag_seconds"] == 0
    key = lock_key("derive", site["id"], "")
    await db.execute("SELECT pg_advisory_lock($1)", key)  # no deriver can take this site now
    try:
        await _post(client, site, "p1", "m2", "2026-05-01T10:06:00Z")
        await asyncio.sleep(0.05)
        held = await _kpis(client, site)
        body = held.json()
        assert body["buckets"][0]["kpis"]["pageviews"] == 1  # the derived data, not a half-derived one
        assert body["freshness"]["complete"] is False and body["freshness"]["lag_seconds"] > 0
        assert float(held.headers["X-Racetrack-Lag-Seconds"]) > 0
        pending = await db._conn.fetchval("SELECT count(*) FROM inbox WHERE site_id = $1", site["id"])
        assert pending == 1  # the read wrote nothing
        panel = await dashboard_queries.freshness(db._conn, site["id"])  # the dashboard's lag panel
        assert panel.oldest_pending_at is not None and panel.last_received_at is not None
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", key)
    await drain()  # the service's deriver takes the site back; wait for it (not for the clock)
    after = await _kpis(client, site)
    assert after.json()["buckets"][0]["kpis"]["pageviews"] == 2
    assert after.json()["freshness"]["complete"] is True
    assert (await dashboard_queries.freshness(db._conn, site["id"])).oldest_pending_at is None
