"""Sites and keys (root admin), key kinds on the read API, purge, and the operations endpoints (DESIGN §6)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT_TOKEN, create_site

ROOT = {"Authorization": f"Bearer {ROOT_TOKEN}"}
SITE_TABLES = ("event", "session", "identity_link", "message_key", "order_key", "failed_event")


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert isinstance(body.get("code"), str) and body["code"]
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("details"), list)
    if code is not None:
        assert body["code"] == code, body
    return body


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def kpi_params() -> dict[str, str]:
    return {"from": "2026-01-01", "to": "2026-01-03"}


# ---------------------------------------------------------------- creating sites


async def test_create_site_returns_keys(client: httpx.AsyncClient, db) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    answer = await client.post(
        "/v1/sites", json={"name": name, "timezone": "Europe/Berlin", "domains": ["shop.example"]}, headers=ROOT
    )
    assert answer.status_code == 201, answer.text
    site = answer.json()
    assert site["name"] == name
    assert site["timezone"] == "Europe/Berlin"
    assert isinstance(site["id"], int)
    keys = [site["write_key"], site["read_key"], site["admin_key"]]
    assert all(isinstance(k, str) and len(k) >= 16 for k in keys)
    assert len(set(keys)) == 3
    row = await db.fetchrow("SELECT name, timezone, domains FROM site WHERE site_id = $1", site["id"])
    assert (row["name"], row["timezone"], list(row["domains"])) == (name, "Europe/Berlin", ["shop.example"])
    # secret keys are stored hashed, never as sent
    stored = await db.fetch("SELECT kind, key_hash, public_key FROM site_key WHERE site_id = $1", site["id"])
    assert sorted(r["kind"] for r in stored) == ["admin", "read", "write"]
    kept = {v for r in stored for v in (r["key_hash"], r["public_key"]) if v}
    assert site["read_key"] not in kept and site["admin_key"] not in kept


async def test_create_site_defaults(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/sites", json={"name": "minimal"}, headers=ROOT)
    assert answer.status_code == 201, answer.text
    assert answer.json()["timezone"] == "UTC"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {ROOT_TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_create_site_needs_root_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    answer = await client.post("/v1/sites", json={"name": "nope"}, headers={**headers, "Origin": "https://x.example"})
    assert_error(answer, 401)
    assert "access-control-allow-origin" not in answer.headers  # root endpoints: no CORS at all


async def test_site_keys_are_not_root_tokens(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    for key in (site["admin_key"], site["read_key"], site["write_key"]):
        answer = await client.post("/v1/sites", json={"name": "nope"}, headers={"Authorization": f"Bearer {key}"})
        assert_error(answer, 401)


async def test_create_site_unknown_timezone_is_422(client: httpx.AsyncClient, db) -> None:
    name = f"bad-tz-{uuid.uuid4().hex[:6]}"
    answer = await client.post("/v1/sites", json={"name": name, "timezone": "Mars/Olympus_Mons"}, headers=ROOT)
    body = assert_error(answer, 422)
    assert any(d.get("field") == "timezone" for d in body["details"]), body
    assert await db.fetchval("SELECT count(*) FROM site WHERE name = $1", name) == 0


async def test_create_site_without_name_is_422(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/v1/sites", json={"timezone": "UTC"}, headers=ROOT), 422)
    assert any(d.get("field") == "name" for d in body["details"]), body


# ---------------------------------------------------------------- key kinds


async def test_read_key_reads_kpis_of_its_site(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.get("/v1/kpis", params=kpi_params(), headers={"Authorization": f"Bearer {site['read_key']}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["site"] == site["id"]
    assert body["buckets"]


async def test_admin_key_reads_kpis_too(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.get("/v1/kpis", params=kpi_params(), headers={"Authorization": f"Bearer {site['admin_key']}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["site"] == site["id"]


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda s: {"Authorization": f"Bearer {s['write_key']}"},
        lambda s: basic(s["write_key"]),
        lambda s: {},
        lambda s: {"Authorization": "Bearer rk_unknown"},
        lambda s: {"Authorization": f"Bearer {ROOT_TOKEN}"},
    ],
    ids=["write-key-bearer", "write-key-basic", "missing", "unknown", "root-token"],
)
async def test_kpis_refuse_other_keys(client: httpx.AsyncClient, site: dict[str, Any], make_headers) -> None:
    answer = await client.get("/v1/kpis", params=kpi_params(), headers=make_headers(site))
    assert_error(answer, 401)


async def test_kpis_with_write_key_as_query_param_refused(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.get("/v1/kpis", params={**kpi_params(), "writeKey": site["write_key"]})
    assert_error(answer, 401)


# ---------------------------------------------------------------- listing


async def test_list_sites_without_secret_keys(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.get("/v1/sites", headers=ROOT)
    assert answer.status_code == 200, answer.text
    listed = answer.json()
    assert isinstance(listed, list)
    mine = [s for s in listed if s["id"] == site["id"]]
    assert len(mine) == 1
    assert mine[0]["name"] == site["name"]
    assert site["read_key"] not in answer.text
    assert site["admin_key"] not in answer.text
    for entry in listed:
        assert not {"read_key", "admin_key", "read_key_hash", "admin_key_hash"} & set(entry)


async def test_list_sites_needs_root_token(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    assert_error(await client.get("/v1/sites"), 401)
    assert_error(await client.get("/v1/sites", headers={"Authorization": f"Bearer {site['admin_key']}"}), 401)


# ---------------------------------------------------------------- purge


async def _fill(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    batch = [
        {"type": "page", "anonymousId": "anon-p", "messageId": "p1", "name": "Home"},
        {"type": "identify", "anonymousId": "anon-p", "userId": "user-p", "messageId": "i1"},
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "user-p",
            "messageId": "o1",
            "properties": {"order_id": "X1", "revenue": 10},
        },
        {"type": "track", "anonymousId": "anon-p"},  # rejected: no event name -> failed_event
    ]
    answer = await client.post("/v1/batch", json={"batch": batch}, headers=basic(site["write_key"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3


async def _counts(db, site_id: int) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t} WHERE site_id = $1", site_id) for t in SITE_TABLES}


async def test_delete_site_purges_its_data(client: httpx.AsyncClient, db) -> None:
    doomed = await create_site(client)
    kept = await create_site(client)
    await _fill(client, doomed)
    await _fill(client, kept)
    before = await _counts(db, doomed["id"])
    assert all(before[t] > 0 for t in SITE_TABLES), before

    answer = await client.delete(f"/v1/sites/{doomed['id']}", headers=ROOT)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": doomed["id"]}

    assert await _counts(db, doomed["id"]) == dict.fromkeys(SITE_TABLES, 0)
    assert await db.fetchval("SELECT count(*) FROM site WHERE site_id = $1", doomed["id"]) == 0
    assert await _counts(db, kept["id"]) == before  # the other site is untouched
    reads = await client.get("/v1/kpis", params=kpi_params(), headers={"Authorization": f"Bearer {doomed['read_key']}"})
    assert_error(reads, 401)
    listed = (await client.get("/v1/sites", headers=ROOT)).json()
    assert doomed["id"] not in {s["id"] for s in listed}


async def test_write_key_of_never_used_deleted_site_is_refused(client: httpx.AsyncClient, db) -> None:
    doomed = await create_site(client)
    assert (await client.delete(f"/v1/sites/{doomed['id']}", headers=ROOT)).status_code == 200
    message = {"type": "page", "anonymousId": "ghost", "messageId": "ghost-1"}
    answer = await client.post("/v1/batch", json={"batch": [message]}, headers=basic(doomed["write_key"]))
    assert_error(answer, 401)
    assert await db.fetchval("SELECT count(*) FROM event WHERE site_id = $1", doomed["id"]) == 0


async def test_write_key_of_deleted_site_is_refused_right_away(client: httpx.AsyncClient, db) -> None:
    doomed = await create_site(client)
    await _fill(client, doomed)  # the write key is now cached by this process
    assert (await client.delete(f"/v1/sites/{doomed['id']}", headers=ROOT)).status_code == 200
    message = {"type": "page", "anonymousId": "ghost", "messageId": "ghost-2"}
    answer = await client.post("/v1/batch", json={"batch": [message]}, headers=basic(doomed["write_key"]))
    assert await db.fetchval("SELECT count(*) FROM event WHERE site_id = $1", doomed["id"]) == 0
    assert_error(answer, 401)


async def test_delete_unknown_site_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/v1/sites/987654321", headers=ROOT), 404)


async def test_delete_site_needs_root_token(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    assert_error(await client.delete(f"/v1/sites/{site['id']}"), 401)
    answer = await client.delete(f"/v1/sites/{site['id']}", headers={"Authorization": f"Bearer {site['admin_key']}"})
    assert_error(answer, 401)
    assert await db.fetchval("SELECT count(*) FROM site WHERE site_id = $1", site["id"]) == 1


# ---------------------------------------------------------------- operations


async def test_healthz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready"}


async def test_metrics_is_prometheus_text(client: httpx.AsyncClient) -> None:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# HELP" in answer.text and "# TYPE" in answer.text
