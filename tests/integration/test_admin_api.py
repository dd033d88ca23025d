"""Rules, reclassification, failed events and targets over the admin API, against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import create_site

B2B_RULES = """
rules:
  - goal: contract
    stage: convert
    order: true
    value: properties.contract_value
    when: {type: track, event: Contract Signed}
  - goal: demo_request
    stage: act
    lead: true
    when: {type: track, event: {in: [Demo Requested]}}
  - goal: whitepaper
    stage: act
    lead: true
    when: {type: track, event: {glob: "Whitepaper*"}}
  - goal: page_view
    stage: reach
    when: {type: {in: [page, screen]}}
"""


def admin(site: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['admin_key']}"}


async def _ingest(client: httpx.AsyncClient, site: dict[str, Any], batch: list[dict[str, Any]]) -> dict[str, Any]:
    answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def track(message_id: str, event: str, day: int, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "anonymousId": "lead-1",
        "messageId": message_id,
        "timestamp": f"2026-03-0{day}T10:00:00Z",
        "properties": properties,
    }


async def test_rules_versions_apply_to_new_events_and_reclassify_old(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    site = await create_site(client)
    await _ingest(client, site, [track("w1", "Whitepaper Downloaded", 1)])
    put = await client.put("/v1/rules", content=B2B_RULES, headers={**admin(site), "Content-Type": "application/yaml"})
    assert put.status_code == 200 and put.json()["version"] == 1, put.text
    await _ingest(
        client, site, [track("d1", "Demo Requested", 2), track("c1", "Contract Signed", 3, contract_value=12000)]
    )
    rows = {
        r["message_id"]: tuple(r[1:])
        for r in await db.fetch(
            "SELECT message_id, goal, stage, ruleset_version FROM event WHERE site_id = $1", site["id"]
        )
    }
    assert rows == {"w1": (None, "none", 0), "d1": ("demo_request", "act", 1), "c1": ("contract", "convert", 1)}

    old = await client.get("/v1/rules", params={"version": 0}, headers=admin(site))
    assert old.json()["rules"][0]["goal"] == "repeat_purchase"
    current = await client.get("/v1/rules", headers=admin(site))
    assert [r["goal"] for r in current.json()["rules"]] == ["contract", "demo_request", "whitepaper", "page_view"]

    job = await client.post("/v1/reclassify", json={"from": "2026-03-01", "to": "2026-03-02"}, headers=admin(site))
    assert job.status_code == 202, job.text
    status = await _wait_job(client, site, job.json()["id"])
    assert (status["status"], status["done"], status["total"]) == ("done", 1, 1)
    assert (
        await db.fetchval("SELECT goal FROM event WHERE site_id = $1 AND message_id = 'w1'", site["id"]) == "whitepaper"
    )

    kpis = await client.get(
        "/v1/kpis", params={"from": "2026-03-01", "to": "2026-03-04", "granularity": "total"}, headers=admin(site)
    )
    got = kpis.json()["buckets"][0]["kpis"]
    assert (got["leads"], got["orders"], got["revenue"], got["new_customers"]) == (2, 1, 12000.0, 1)


async def _wait_job(client: httpx.AsyncClient, site: dict[str, Any], job_id: int) -> dict[str, Any]:
    for _ in range(100):
        answer = await client.get(f"/v1/jobs/{job_id}", headers=admin(site))
        body: dict[str, Any] = answer.json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("job did not finish")


async def test_invalid_ruleset_is_refused_whole_with_rule_and_field(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    bad = {
        "rules": [
            {"goal": "ok", "stage": "act", "when": {"event": "A"}},
            {"goal": "broken", "stage": "act", "when": {"event": {"regex": "("}}},
            {"goal": "ok", "stage": "sideways", "when": {"colour": "red"}},
        ]
    }
    answer = await client.put("/v1/rules", json=bad, headers=admin(site))
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "invalid_ruleset"
    problems = {(d["rule"], d["field"]) for d in body["details"]}
    assert {(1, "when.event.regex"), (2, "goal"), (2, "stage"), (2, "when.colour")} <= problems
    current = await client.get("/v1/rules", headers=admin(site))
    assert current.json()["version"] == 0  # nothing half-applied


async def test_rules_test_explains_and_preview_counts_without_writing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    site = await create_site(client)
    await _ingest(client, site, [track("w1", "Whitepaper Downloaded", 1), track("d1", "Demo Requested", 1)])
    import yaml

    proposed = yaml.safe_load(B2B_RULES)
    tested = await client.post(
        "/v1/rules/test",
        headers=admin(site),
        json={"rules": proposed, "messages": [{"type": "track", "event": "Demo Requested", "anonymousId": "x"}]},
    )
    result = tested.json()["results"][0]
    assert (result["goal"], result["stage"], result["lead"]) == ("demo_request", "act", True)
    assert result["explain"][0] == {
        "rule": 0,
        "goal": "contract",
        "matched": False,
        "failed": ["event eq 'Contract Signed'"],
    }
    preview = await client.post(
        "/v1/rules/preview", headers=admin(site), json={"rules": proposed, "from": "2026-03-01", "to": "2026-03-02"}
    )
    body = preview.json()
    assert body["current"]["stages"] == {"none": 2}
    assert body["proposed"]["goals"] == {"whitepaper": 1, "demo_request": 1}
    stored = await db.fetchval("SELECT count(*) FROM event WHERE site_id = $1 AND goal IS NOT NULL", site["id"])
    assert stored == 0


async def test_failed_events_are_listed_and_replayed(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    site = await create_site(client)
    bad = {"type": "track", "anonymousId": "a", "messageId": "no-event", "timestamp": "2026-03-01T10:00:00Z"}
    answer = await _ingest(client, site, [bad, track("ok", "Signed Up", 1)])
    assert answer["accepted"] == 1 and answer["rejected"][0]["code"] == "missing_event"
    listed = (await client.get("/v1/failed-events", headers=admin(site))).json()["items"]
    assert [(i["code"], i["raw"]["messageId"]) for i in listed] == [("missing_event", "no-event")]
    # fix the payload in place (an operator's repair), then replay: accepted once, never twice
    await db.execute(
        """UPDATE failed_event SET raw = jsonb_set(raw::jsonb, '{event}', '"Signed Up"')::text
                        WHERE site_id = $1""",
        site["id"],
    )
    replayed = await client.post("/v1/failed-events/replay", json={}, headers=admin(site))
    assert replayed.json()["accepted"] == 1, replayed.text
    again = await client.post("/v1/failed-events/replay", json={}, headers=admin(site))
    assert again.json()["replayed"] == 0
    assert await db.fetchval("SELECT count(*) FROM event WHERE site_id = $1", site["id"]) == 2


async def test_targets_show_beside_month_actuals(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    await _ingest(client, site, [{**track("o1", "Order Completed", 5, order_id="1", revenue=50)}])
    put = await client.put(
        "/v1/targets",
        headers=admin(site),
        json={
            "targets": [
                {"kpi": "revenue", "month": "2026-03", "value": 200},
                {"kpi": "orders", "month": "2026-04", "value": 4},
            ]
        },
    )
    assert put.status_code == 200
    bad = await client.put(
        "/v1/targets", headers=admin(site), json={"targets": [{"kpi": "revenu", "month": "2026-03", "value": 1}]}
    )
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "targets.0.kpi"
    kpis = await client.get(
        "/v1/kpis",
        headers=admin(site),
        params={"from": "2026-03-01", "to": "2026-05-01", "granularity": "month", "tz": "UTC"},
    )
    march, april = kpis.json()["buckets"]
    assert march["targets"] == {
        "revenue": {"target": 200.0, "direction": "higher", "attainment": 0.25, "status": "missed"}
    }
    assert april["targets"] == {"orders": {"target": 4.0, "direction": "higher", "attainment": 0.0, "status": "missed"}}
    csv_text = (
        await client.get(
            "/v1/kpis",
            headers=admin(site),
            params={"from": "2026-03-01", "to": "2026-05-01", "granularity": "month", "tz": "UTC", "format": "csv"},
        )
    ).text
    header, first = csv_text.splitlines()[:2]
    assert header.endswith(
        "orders_target,orders_direction,orders_attainment,orders_status,orders_pacing,"
        "revenue_target,revenue_direction,revenue_attainment,revenue_status,revenue_pacing"
    )
    assert first.endswith(",,,,,,200.0,higher,0.25,missed,")  # March 2026 is over: no pacing


async def test_rule_change_reaches_another_worker_within_a_second(
    client: httpx.AsyncClient, settings: Any, db: asyncpg.Connection
) -> None:
    from asgi_lifespan import LifespanManager

    from app.main import create_app

    site = await create_site(client)
    async with LifespanManager(create_app(settings)) as other_worker:
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=other_worker.app), base_url="http://w2")
        await _ingest(other, site, [track("before", "Demo Requested", 1)])  # warms the other worker's cache
        put = await client.put(
            "/v1/rules", content=B2B_RULES, headers={**admin(site), "Content-Type": "application/yaml"}
        )
        assert put.status_code == 200
        await asyncio.sleep(1.1)
        await _ingest(other, site, [track("after", "Demo Requested", 2)])
        await other.aclose()
    rows = dict(await db.fetch("SELECT message_id, goal FROM event WHERE site_id = $1", site["id"]))
    assert rows == {"before": None, "after": "demo_request"}


async def test_an_interrupted_reclassification_resumes_on_start(
    client: httpx.AsyncClient, settings: Any, db: asyncpg.Connection
) -> None:
    from asgi_lifespan import LifespanManager

    from app.main import create_app

    site = await create_site(client)
    await _ingest(client, site, [track("w1", "Whitepaper Downloaded", 1), track("w2", "Whitepaper Downloaded", 3)])
    await client.put("/v1/rules", content=B2B_RULES, headers={**admin(site), "Content-Type": "application/yaml"})
    # a job whose process died after committing its first day of three
    job_id = await db.fetchval(
        """INSERT INTO job (site_id, kind, params, status, done, total)
           VALUES ($1, 'reclassify', $2::jsonb, 'running', 1, 3) RETURNING job_id""",
        site["id"],
        '{"from": "2026-03-01T00:00:00+00:00", "to": "2026-03-04T00:00:00+00:00", "tz": "UTC"}',
    )
    async with LifespanManager(create_app(settings)) as restarted:
        again = httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted.app), base_url="http://r")
        status = await _wait_job(again, site, job_id)
        await again.aclose()
    assert (status["status"], status["done"]) == ("done", 3)
    rows = dict(await db.fetch("SELECT message_id, goal FROM event WHERE site_id = $1", site["id"]))
    assert rows == {"w1": None, "w2": "whitepaper"}  # day 1 was "done" before the crash: not redone


async def test_the_running_month_carries_pacing(client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime

    from app.domain.plan import PACING_MIN_SHARE

    site = await create_site(client)
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
    order = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "p",
        "messageId": "now-order",
        "timestamp": now.isoformat(),
        "properties": {"order_id": "n1", "revenue": 40},
    }
    await _ingest(client, site, [order])
    month = month_start.strftime("%Y-%m")
    await client.put(
        "/v1/targets", headers=admin(site), json={"targets": [{"kpi": "revenue", "month": month, "value": 1000}]}
    )
    answer = await client.get(
        "/v1/kpis",
        headers=admin(site),
        params={
            "from": month_start.date().isoformat(),
            "to": next_month.date().isoformat(),
            "granularity": "month",
            "tz": "UTC",
        },
    )
    plan = answer.json()["buckets"][0]["targets"]["revenue"]
    elapsed = (datetime.now(UTC) - month_start) / (next_month - month_start)
    assert plan["elapsed_share"] == pytest.approx(elapsed, rel=1e-3)
    if plan["elapsed_share"] < PACING_MIN_SHARE:  # too early in the month to project (unit-tested both ways)
        assert "pacing" not in plan and plan["status"] == "too_early"
    else:
        assert plan["pacing"] == pytest.approx(40 / elapsed, rel=1e-3)
        assert plan["pacing_attainment"] == pytest.approx(plan["pacing"] / 1000)
        assert plan["status"] == ("on_track" if plan["pacing"] >= 1000 else "off_track")


async def test_a_lower_is_better_target_reads_the_right_way(client: httpx.AsyncClient) -> None:
    site = await create_site(client)

    def page(person: str, at: str) -> dict[str, Any]:
        return {"type": "page", "anonymousId": person, "messageId": f"{person}-{at}", "timestamp": at}

    # four one-page sessions and one of two pages: bounce rate 4 / 5 = 0.8
    days = [f"2026-03-0{day}T10:00:00Z" for day in range(1, 5)]
    two_pages = [page("v9", "2026-03-06T10:00:00Z"), page("v9", "2026-03-06T10:01:00Z")]
    await _ingest(client, site, [*(page(f"v{i}", at) for i, at in enumerate(days)), *two_pages])
    targets = [{"kpi": "bounce_rate", "month": "2026-03", "value": 0.4}]
    await client.put("/v1/targets", headers=admin(site), json={"targets": targets})
    params = {"from": "2026-03-01", "to": "2026-04-01", "granularity": "month", "tz": "UTC"}
    march = (await client.get("/v1/kpis", headers=admin(site), params=params)).json()["buckets"][0]
    assert march["kpis"]["bounce_rate"] == 0.8
    assert march["targets"]["bounce_rate"] == {
        "target": 0.4, "direction": "lower", "attainment": 0.5, "status": "missed"
    }  # fmt: skip
    listed = (await client.get("/v1/targets", headers=admin(site), params={"from": "2026-03", "to": "2026-03"})).json()
    assert listed == {"targets": [{"kpi": "bounce_rate", "month": "2026-03", "value": 0.4, "direction": "lower"}]}


async def test_replay_keeps_the_time_of_first_arrival(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    site = await create_site(client)
    late_sender = {
        "type": "track",
        "anonymousId": "a",
        "messageId": "skewed",
        "timestamp": "2026-03-01T10:00:00Z",
        "sentAt": "2026-03-01T11:00:00Z",
    }  # no event name: rejected, kept raw
    await _ingest(client, site, [late_sender])
    await asyncio.sleep(1.1)  # the replay comes later than the first arrival
    await db.execute(
        """UPDATE failed_event SET raw = jsonb_set(raw::jsonb, '{event}', '"Signed Up"')::text
                        WHERE site_id = $1""",
        site["id"],
    )
    await client.post("/v1/failed-events/replay", json={}, headers=admin(site))
    received = await db.fetchval("SELECT received_at FROM failed_event WHERE site_id = $1", site["id"])
    event_at = await db.fetchval("SELECT event_at FROM event WHERE site_id = $1", site["id"])
    assert event_at == received - timedelta(hours=1)  # receivedAt - (sentAt - timestamp), as on arrival


async def test_an_absurd_or_negative_order_value_is_rejected_by_name(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    bad = [track("huge", "Order Completed", 1, order_id="h", revenue=1e308),
           track("neg", "Order Completed", 1, order_id="n", revenue=-50)]  # fmt: skip
    answer = await _ingest(client, site, [*bad, track("ok", "Order Completed", 1, order_id="ok", revenue=20)])
    assert [(r["index"], r["code"], r["field"]) for r in answer["rejected"]] == [
        (0, "invalid_value", "properties.revenue"),
        (1, "invalid_value", "properties.revenue"),
    ]
    kpis = await client.get(
        "/v1/kpis", params={"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"}, headers=admin(site)
    )
    assert kpis.status_code == 200, kpis.text
    assert (kpis.json()["buckets"][0]["kpis"]["orders"], kpis.json()["buckets"][0]["kpis"]["revenue"]) == (1, 20.0)


async def test_jobs_list_the_sites_own_jobs_newest_first(client: httpx.AsyncClient) -> None:
    site, other = await create_site(client), await create_site(client)
    ids = []
    for day in ("2026-03-01", "2026-03-02"):
        job = await client.post("/v1/reclassify", json={"from": day, "to": "2026-03-03"}, headers=admin(site))
        ids.append((await _wait_job(client, site, job.json()["id"]))["id"])
    await client.post("/v1/reclassify", json={"from": "2026-03-01", "to": "2026-03-02"}, headers=admin(other))
    listed = await client.get("/v1/jobs", headers=admin(site))
    assert listed.status_code == 200, listed.text
    jobs = listed.json()["jobs"]
    assert [j["id"] for j in jobs] == ids[::-1]
    assert [(j["kind"], j["status"], j["total"]) for j in jobs] == [
        ("reclassify", "done", 1),
        ("reclassify", "done", 2),
    ]
    one = await client.get("/v1/jobs", params={"limit": 1, "status": "done"}, headers=admin(site))
    assert [j["id"] for j in one.json()["jobs"]] == [ids[1]]
    none = await client.get("/v1/jobs", params={"status": "failed"}, headers=admin(site))
    assert none.json() == {"jobs": []}
    bad = await client.get("/v1/jobs", params={"status": "sleeping"}, headers=admin(site))
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "status"
    read_key = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {site['read_key']}"})
    assert read_key.status_code in (401, 403)
