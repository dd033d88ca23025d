"""Bounded work per request: periods refused up front by name, every request statement under a
timeout (a blocked read answers 503 query_timeout and frees its worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from tests.conftest import create_site


def read(site: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['read_key']}"}


def error(answer: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code, body
    if field is not None:
        assert body["details"][0]["field"] == field, body
    return body


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"from": "0001-01-01", "to": "9999-12-31", "granularity": "total"}, "invalid_parameter", "from"),
        ({"from": "2026-01-01", "to": "9999-12-31", "granularity": "total"}, "invalid_parameter", "to"),
        ({"from": "2026-01-01T00:00:00+14:00", "to": "2100-01-02", "granularity": "total"}, "invalid_parameter", "to"),
        ({"from": "1990-01-01", "to": "2026-01-01", "granularity": "total"}, "period_too_long", "to"),
        ({"from": "2020-01-01", "to": "2026-01-01", "granularity": "day"}, "too_many_buckets", "granularity"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/kpis", "/v1/goals", "/v1/quality"])
async def test_huge_or_out_of_range_periods_are_refused_by_name(
    client: httpx.AsyncClient, site: dict[str, Any], path: str, params: dict[str, str], code: str, field: str
) -> None:
    if path != "/v1/kpis" and params["granularity"] == "total":
        params = {**params, "granularity": "month"}
    error(await client.get(path, params=params, headers=read(site)), 400, code, field)


@pytest.mark.parametrize("path", ["/v1/funnel", "/v1/cohorts"])
async def test_other_reads_check_the_period_too(client: httpx.AsyncClient, site: dict[str, Any], path: str) -> None:
    params = {"from": "0001-01-01", "to": "9999-12-31"}
    error(await client.get(path, params=params, headers=read(site)), 400, "invalid_parameter", "from")


async def test_the_longest_period_is_configurable(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_period_days": 31}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            site = await create_site(c)
            ok = await c.get("/v1/kpis", params={"from": "2026-01-01", "to": "2026-02-01"}, headers=read(site))
            assert ok.status_code == 200, ok.text
            long = await c.get("/v1/kpis", params={"from": "2026-01-01", "to": "2026-02-02"}, headers=read(site))
            error(long, 400, "period_too_long", "to")


async def test_a_blocked_read_ends_at_the_statement_timeout(settings: Settings, db: asyncpg.Connection) -> None:
    app = create_app(settings.model_copy(update={"read_statement_timeout_ms": 300}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            site = await create_site(c)
            params = {"from": "2026-01-01", "to": "2026-02-01", "granularity": "total"}
            async with db.transaction():
                # every key lookup now waits for this lock: only the statement timeout can end the read
                await db.execute("LOCK TABLE site_key IN ACCESS EXCLUSIVE MODE")
                answer = await asyncio.wait_for(c.get("/v1/kpis", params=params, headers=read(site)), 30)
            body = error(answer, 503, "query_timeout")
            assert "statement timeout" in body["message"]
            assert int(answer.headers["retry-after"]) > 0
            assert (await c.get("/v1/kpis", params=params, headers=read(site))).status_code == 200


async def test_a_yaml_alias_bomb_is_refused_with_422(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    from tests.unit.test_rule_limits import alias_bomb

    admin = {"Authorization": f"Bearer {site['admin_key']}", "Content-Type": "application/yaml"}
    answer = await client.put("/v1/rules", content=alias_bomb(), headers=admin)
    body = error(answer, 422, "invalid_ruleset", "rules")
    assert "aliases" in body["message"]
    evil = "rules:\n  - {goal: evil, stage: act, when: {path: {regex: '(a)\\1'}}}\n"
    body = error(await client.put("/v1/rules", content=evil, headers=admin), 422, "invalid_ruleset")
    assert (body["details"][0]["rule"], body["details"][0]["field"]) == (0, "when.path.regex")
    current = await client.get("/v1/rules", headers=admin)
    assert current.json()["version"] == 0  # nothing stored


async def test_a_bad_period_is_refused_before_the_read_waits_for_derivation(settings: Settings) -> None:
    """With events waiting that no deriver will take, a read would wait read_wait_seconds; a period
    out of range is answered 400 at once (after the key lookup), without that wait."""
    app = create_app(settings.model_copy(update={"deriver": False, "read_wait_seconds": 120}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            site = await create_site(c)
            event = {"type": "page", "anonymousId": "a", "timestamp": "2026-03-01T10:00:00Z"}
            assert (await c.post("/v1/batch", json={"batch": [event]}, auth=(site["write_key"], ""))).status_code == 200
            params = {"from": "0001-01-01", "to": "9999-12-31", "granularity": "total"}
            answer = await asyncio.wait_for(c.get("/v1/kpis", params=params, headers=read(site)), 60)
            error(answer, 400, "invalid_parameter", "from")
