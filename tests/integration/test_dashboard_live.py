"""The dashboard's "visitors in the last 30 minutes": the same count /v1/kpis gives for the same
minutes, read without the to-date KPIs (which read every order before the window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.config import Settings
from app.dashboard.panels import Reader
from app.store import sites as site_store
from app.store.database import create_pool
from tests.conftest import drain

END = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)  # on no rollup's edge


def _message(n: int, minutes_before: float, kind: str = "page") -> dict[str, Any]:
    at = (END - timedelta(minutes=minutes_before)).isoformat()
    message: dict[str, Any] = {"type": kind, "anonymousId": f"v{n % 7}", "messageId": f"m{n}", "timestamp": at}
    if kind == "track":
        message |= {"event": "Order Completed", "properties": {"order_id": f"o{n}", "revenue": 10}}
    return message


async def test_live_visitors_equal_the_kpi_endpoint_for_the_same_minutes(
    client: httpx.AsyncClient, settings: Settings, site: dict[str, Any]
) -> None:
    # visitors inside the window, before it (some of them buyers long ago) and after it
    batch = [_message(n, minutes) for n, minutes in enumerate((1, 2, 5, 9, 14, 29.9, 31, 45, 600, -1))]
    batch += [_message(100 + n, 60 * 24 * 40, "track") for n in range(3)]
    batch += [{**_message(200, 3), "anonymousId": "bot", "context": {"userAgent": "Googlebot/2.1"}}]
    answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text
    await drain()
    start = END - timedelta(minutes=30)
    pool = await create_pool(settings.database_url, 1, 4)
    try:
        async with pool.acquire() as conn:
            found = await site_store.site_by_secret_key(conn, site["read_key"])
        assert found is not None
        live = await Reader(pool, settings, found[0], "UTC").live_visitors(start, END)
    finally:
        await pool.close()
    kpis = await client.get(
        "/v1/kpis",
        params={"from": start.isoformat(), "to": END.isoformat(), "granularity": "total", "tz": "UTC"},
        headers={"Authorization": f"Bearer {site['read_key']}"},
    )
    assert kpis.status_code == 200, kpis.text
    # v0..v5 within the 30 minutes (m0-m5), not v6 (31 minutes before), not the bot
    assert live == kpis.json()["buckets"][0]["kpis"]["visitors"] == 6
