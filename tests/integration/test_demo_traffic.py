"""`racetrack demo`'s realistic mix lands in the ranges app/demo.py's docstring states, read back
through the KPI API (and, for what no KPI shows, from the generated messages)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.demo import Profile, generate_messages, load_demo

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)
PERSONS, DAYS, SEED = 4000, 30, 7
PERIOD = {"from": (NOW - timedelta(days=DAYS)).isoformat(), "to": NOW.isoformat(), "tz": "UTC"}
CHANNEL_SHARES = {  # share of sessions: (low, high)
    "Organic Search": (0.20, 0.40),
    "Direct": (0.15, 0.35),
    "Paid Search": (0.07, 0.20),
    "Email": (0.04, 0.15),
    "Organic Social": (0.03, 0.12),
    "Paid Social": (0.02, 0.10),
    "Referral": (0.02, 0.10),
    "Display": (0.01, 0.06),
    "Affiliates": (0.005, 0.05),
}


@pytest.fixture(scope="module")
async def demo(database_url: str) -> dict[str, Any]:
    return await load_demo(database_url, persons=PERSONS, days=DAYS, seed=SEED, now=NOW)


async def _get(client: httpx.AsyncClient, key: str, path: str, **params: Any) -> Any:
    answer = await client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_demo_rates_fall_in_the_stated_ranges(client: httpx.AsyncClient, demo: dict[str, Any]) -> None:
    key = demo["read_key"]
    total = (await _get(client, key, "/v1/kpis", **PERIOD, granularity="total"))["buckets"][0]["kpis"]
    assert 0.01 <= total["conversion_rate"] <= 0.04, total["conversion_rate"]
    assert 0.40 <= total["bounce_rate"] <= 0.60, total["bounce_rate"]
    assert 60 <= total["avg_session_seconds"] <= 240, total["avg_session_seconds"]
    assert 1.5 <= total["pages_per_session"] <= 4, total["pages_per_session"]
    assert -10 <= total["nps"] <= 50, total["nps"]
    assert 0.05 <= total["repeat_purchase_rate"] <= 0.40, total["repeat_purchase_rate"]
    assert total["offline_orders"] > 0 and total["leads"] > 0
    assert 40 <= total["aov"] <= 120, total["aov"]
    goals = (await _get(client, key, "/v1/goals", **PERIOD, granularity="total"))["buckets"][0]["goals"]
    carts = next(g["completions"] for g in goals if g["goal"] == "add_to_cart")
    online_orders = total["orders"] - total["offline_orders"]  # every online order follows one add-to-cart
    assert 0.60 <= 1 - online_orders / carts <= 0.80, (online_orders, carts)


async def test_demo_channel_mix_devices_and_nps_shape(client: httpx.AsyncClient, demo: dict[str, Any]) -> None:
    key = demo["read_key"]
    by_channel = await _get(client, key, "/v1/kpis", **PERIOD, granularity="total", breakdown="channel")
    sessions = {b["group"]: b["kpis"]["sessions"] for b in by_channel["buckets"]}
    everything = sum(sessions.values())
    for channel, (low, high) in CHANNEL_SHARES.items():
        assert low <= sessions.get(channel, 0) / everything <= high, (channel, sessions)
    assert max(sessions.values()) / everything <= 0.45
    by_device = await _get(client, key, "/v1/kpis", **PERIOD, granularity="total", breakdown="device")
    devices = {b["group"]: b["kpis"]["sessions"] for b in by_device["buckets"]}
    assert 0.35 <= devices["mobile"] / sum(devices.values()) <= 0.60, devices
    scores = [
        m["properties"]["score"]
        for m in generate_messages(PERSONS, DAYS, NOW - timedelta(days=DAYS), SEED, Profile.REALISTIC)
        if m.get("event") == "Survey Answered"
    ]
    shape = Counter("promoter" if s >= 9 else "detractor" if s <= 6 else "passive" for s in scores)
    assert len(scores) >= 15 and 0.30 <= shape["promoter"] / len(scores) <= 0.60, shape
    assert shape["detractor"] < shape["promoter"] and shape["passive"] > 0, shape


async def test_demo_events_are_received_when_they_happened(client: httpx.AsyncClient, demo: dict[str, Any]) -> None:
    quality = await _get(client, demo["read_key"], "/v1/quality", **PERIOD, granularity="total")
    bucket = quality["buckets"][0]
    assert bucket["late"] == 0 and bucket["accepted"] == demo["events"] and bucket["bots"] > 0, bucket


async def test_demo_sets_targets_the_race_page_can_show(client: httpx.AsyncClient, demo: dict[str, Any]) -> None:
    report = await _get(client, demo["read_key"], "/v1/report", month="2026-03", tz="UTC")
    rows = {k["kpi"]: k for s in report["stages"] for k in s["kpis"]}
    planned = {kpi for kpi, row in rows.items() if row["target"] is not None}
    assert planned == {"visitors", "orders", "revenue", "conversion_rate", "bounce_rate", "nps"}
    assert rows["bounce_rate"]["direction"] == "lower"
    statuses = {rows[kpi]["status"] for kpi in planned}
    assert {"met", "missed"} <= statuses, {kpi: rows[kpi]["status"] for kpi in planned}
    assert all(rows[kpi]["attainment"] is not None for kpi in planned)
    month = await _get(client, demo["read_key"], "/v1/kpis", **PERIOD, granularity="month")
    assert all(set(b["targets"]) == planned for b in month["buckets"])
