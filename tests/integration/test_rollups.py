"""Rollups stay exactly equal to the KPI definitions (the oracle) and to answers computed from the
events, after late events, identity links that merge persons, and a reclassification, whatever the
size of the derivation batches and however often parts are compacted; a read right after a write
includes it."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from app.demo import generate_messages
from app.domain.kpis import REGISTRY
from tests.conftest import create_site, drain
from tests.integration.test_admin_api import _wait_job, admin
from tests.integration.test_kpi_oracle import DAYS, FROM, SEED, START, TO, _check_all, _ingest, _report
from tests.oracle import Oracle

PERSONS = 160


def _late_orders(messages: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """For `count` customers, an order a week before their first event: it becomes their first order,
    their old first order a repeat, and their first-seen day moves."""
    firsts: dict[str, dict[str, Any]] = {}
    for m in messages:
        firsts.setdefault(m["anonymousId"], m)
    buyers = sorted({m["anonymousId"] for m in messages if m.get("properties", {}).get("order_id")})
    late = []
    for anon in buyers[:count]:
        at = datetime.fromisoformat(firsts[anon]["timestamp"].replace("Z", "+00:00")) - timedelta(days=7, minutes=7)
        late.append({
            "type": "track", "event": "Order Completed", "anonymousId": anon, "messageId": f"late-{anon}",
            "timestamp": at.isoformat().replace("+00:00", "Z"), "context": {"userAgent": "Mozilla/5.0 (X11; Linux)"},
            "properties": {"order_id": f"late-{anon}", "revenue": 99.5},
        })  # fmt: skip
    return late


def _links(messages: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Identify calls that give anonymous-only persons an existing user's id: persons merge, and the
    anonymous events (orders included) become that user's, retroactively."""
    users = sorted({m["userId"] for m in messages if m.get("userId")})
    anonymous = sorted({m["anonymousId"] for m in messages} - {m["anonymousId"] for m in messages if m.get("userId")})
    rng = random.Random(3)
    last = max(m["timestamp"] for m in messages)
    return [
        {
            "type": "identify",
            "anonymousId": anon,
            "userId": rng.choice(users),
            "messageId": f"link-{anon}",
            "timestamp": last,
            "traits": {},
        }
        for anon in anonymous[:count]
    ]


async def _same_from_both(client: httpx.AsyncClient, key: str, path: str, params: dict[str, Any]) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    rolled = await client.get(path, params={**params, "source": "rollups"}, headers=headers)
    raw = await client.get(path, params={**params, "source": "events"}, headers=headers)
    label = f"{path} {params}"
    if rolled.headers.get("x-racetrack-source") != "rollups":
        return [f"{label}: not answered from rollups"]
    return [f"{label}: {problem}" for problem in _differences(raw.json(), rolled.json(), "")]


def _differences(want: Any, got: Any, where: str) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{where}: keys {sorted(set(want) ^ set(got))}"]
        return [p for k in want for p in _differences(want[k], got[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} items, got {len(got)}"]
        return [p for i, (w, g) in enumerate(zip(want, got, strict=True)) for p in _differences(w, g, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float | int):
        return [] if math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9) else [f"{where}: {want} != {got}"]
    return [] if want == got else [f"{where}: {want!r} != {got!r}"]


QUERIES = [
    ("/v1/kpis", {"granularity": g, "tz": tz, **extra})
    for g in ("day", "week", "month", "total")
    for tz in ("Europe/Berlin", "Asia/Kathmandu")
    for extra in ({}, {"breakdown": "channel"}, {"breakdown": "device", "limit": 2})
] + [("/v1/funnel", {"tz": "Europe/Berlin"}), ("/v1/funnel", {"tz": "Asia/Kathmandu"})]


async def test_rollups_stay_exact_through_late_events_links_and_reclassification(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    messages = generate_messages(PERSONS, DAYS, START, SEED)
    site = await create_site(client, timezone="Europe/Berlin")  # local days are not UTC days
    cut = len(messages) * 2 // 3
    await _ingest(client, site, messages[:cut])
    await drain()

    rest = messages[cut:] + _late_orders(messages, 12) + _links(messages, 15)
    random.Random(9).shuffle(rest)
    await _ingest(client, site, rest)
    every = messages[:cut] + rest
    problems = await _check_all(client, site["read_key"], Oracle(every), source="rollups")
    assert not problems, _report(problems)

    rules = (await client.get("/v1/rules", headers=admin(site))).json()
    cart_lead = {"goal": "cart_lead", "stage": "act", "lead": True, "when": {"type": "track", "event": "Product Added"}}
    put = await client.put("/v1/rules", json={"rules": [cart_lead, *rules["rules"]]}, headers=admin(site))
    assert put.status_code == 200, put.text
    period = {
        "from": (START - timedelta(days=10)).date().isoformat(),
        "to": (START + timedelta(days=DAYS + 2)).date().isoformat(),
    }
    job = await client.post("/v1/reclassify", json=period, headers=admin(site))
    assert job.status_code == 202, job.text
    assert (await _wait_job(client, site, job.json()["id"]))["status"] == "done"
    problems = []
    for path, params in QUERIES:
        problems += await _same_from_both(
            client, site["read_key"], path, {"from": FROM.isoformat(), "to": TO.isoformat(), **params}
        )
    assert not problems, _report(problems)
    leads = await client.get("/v1/kpis", params={**period, "granularity": "total"}, headers=admin(site))
    assert leads.json()["buckets"][0]["kpis"]["leads"] > 0  # the reclassification did change the numbers


async def test_a_read_right_after_a_write_includes_it(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    site = await create_site(client, timezone="UTC")
    headers = {"Authorization": f"Bearer {site['read_key']}"}
    params = {"from": "2026-05-01", "to": "2026-05-02", "granularity": "total"}
    for n in range(1, 4):
        at = datetime(2026, 5, 1, 9, n, tzinfo=UTC).isoformat()
        order = {"type": "track", "event": "Order Completed", "anonymousId": f"p{n}", "messageId": f"m{n}",
                 "timestamp": at, "properties": {"order_id": f"o{n}", "revenue": 10.0 * n}}  # fmt: skip
        answer = await client.post("/v1/batch", json={"batch": [order]}, auth=(site["write_key"], ""))
        assert answer.status_code == 200
        kpis = await client.get("/v1/kpis", params=params, headers=headers)
        assert kpis.headers["x-racetrack-source"] == "rollups"
        got = kpis.json()["buckets"][0]["kpis"]
        assert (got["visitors"], got["orders"], got["revenue"], got["customers_to_date"]) == (
            n,
            n,
            5.0 * n * (n + 1),
            n,
        )


async def test_purging_a_site_removes_its_rollups(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    from tests.conftest import ROOT_TOKEN

    site = await create_site(client, timezone="UTC")
    page = {"type": "page", "anonymousId": "a", "messageId": "m1", "timestamp": "2026-05-01T10:00:00Z"}
    assert (await client.post("/v1/batch", json={"batch": [page]}, auth=(site["write_key"], ""))).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM rollup WHERE site_id = $1", site["id"]) > 0
    gone = await client.delete(f"/v1/sites/{site['id']}", headers={"Authorization": f"Bearer {ROOT_TOKEN}"})
    assert gone.status_code in (200, 204), gone.text
    for table in ("rollup", "inbox", "person_number", "pipeline_watermark", "event"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE site_id = $1", site["id"]) == 0, table


async def test_operators_rebuild_puts_damaged_rollups_right(
    client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    import os
    import sys
    from pathlib import Path

    site = await create_site(client, timezone="UTC")
    pages = [{"type": "page", "anonymousId": f"a{n}", "messageId": f"m{n}", "timestamp": f"2026-05-0{n}T10:00:00Z"}
             for n in range(1, 4)]  # fmt: skip
    assert (await client.post("/v1/batch", json={"batch": pages}, auth=(site["write_key"], ""))).status_code == 200
    await drain()
    pageviews = REGISTRY.layout().counters.index("pageviews") + 1
    await db.execute(f"UPDATE rollup SET counters[{pageviews}] = 999 WHERE site_id = $1 AND dim <> 'goal'", site["id"])
    racetrack = Path(sys.executable).parent / "racetrack"
    rebuild = await asyncio.create_subprocess_exec(
        str(racetrack), "rollups", "rebuild", "--site", str(site["id"]), "--from", "2026-05-02", "--to", "2026-05-04",
        env={**os.environ, "DATABASE_URL": database_url}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await rebuild.communicate()
    assert rebuild.returncode == 0 and b'"slots": 2' in out, out
    damaged = await db.fetch(
        f"SELECT slot FROM rollup WHERE site_id = $1 AND level = 'q' AND dim = '' AND counters[{pageviews}] = 999",
        site["id"],
    )
    assert [r["slot"].day for r in damaged] == [1]  # only what was outside --from/--to stays damaged


async def test_one_event_batches_and_eager_compaction_never_count_an_event_twice(
    database_url: str, monkeypatch: Any
) -> None:
    """Derivation one event at a time, late events re-deriving persons (their old contribution out,
    the new one in), parts compacted after every second one: the rollups equal the events."""
    from asgi_lifespan import LifespanManager

    from app.config import Settings
    from app.main import create_app
    from app.pipeline import derive, rollup
    from app.store.database import create_pool
    from tests.conftest import ROOT_TOKEN

    monkeypatch.setattr(rollup, "COMPACT_AT", 2)
    settings = Settings(database_url=database_url, admin_token=ROOT_TOKEN, deriver=False, read_wait_seconds=0)
    app = create_app(settings)  # ingestion only: this test derives, one event per batch
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as client:
            site = await create_site(client, timezone="UTC")
            for n in (5, 3, 4, 0, 1, 2):  # arrival order is not event order
                page = {"type": "page", "anonymousId": f"p{n % 3}", "messageId": f"m{n}",
                        "timestamp": f"2026-05-01T10:0{n}:00Z"}  # fmt: skip
                answer = await client.post("/v1/batch", json={"batch": [page]}, auth=(site["write_key"], ""))
                assert answer.status_code == 200
            identify = {"type": "identify", "anonymousId": "p1", "userId": "u1", "messageId": "i1",
                        "timestamp": "2026-05-01T10:09:00Z"}  # fmt: skip
            assert (await client.post("/v1/batch", json={"batch": [identify]}, auth=(site["write_key"], ""))).is_success
            pool = await create_pool(database_url, 1, 2)
            try:
                assert await derive.drain(pool, batch=1) == 7
                parts = await pool.fetchval("SELECT max(part) FROM rollup WHERE site_id = $1", site["id"])
            finally:
                await pool.close()
            assert parts is not None
            problems = await _same_from_both(
                client, site["read_key"], "/v1/kpis", {"from": "2026-05-01", "to": "2026-05-02", "granularity": "day"}
            )
            assert not problems, problems
