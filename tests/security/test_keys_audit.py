"""Key rotation (old write key through a grace period, other keys at once), revocation, and the
audit log of admin and root actions, end to end on real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from tests.conftest import create_site
from tests.security.helpers import ROOT, assert_error, bearer

KPIS = {"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"}


def page(message_id: str) -> dict[str, Any]:
    return {"type": "page", "anonymousId": message_id, "messageId": message_id, "timestamp": "2026-03-01T10:00:00Z"}


async def ingest(client: httpx.AsyncClient, write_key: str, message_id: str) -> httpx.Response:
    return await client.post("/v1/batch", json={"batch": [page(message_id)]}, auth=(write_key, ""))


async def visitors(client: httpx.AsyncClient, read_key: str) -> int:
    answer = await client.get("/v1/kpis", params=KPIS, headers=bearer(read_key))
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["buckets"][0]["kpis"]["visitors"]
    return count


async def rotate(client: httpx.AsyncClient, admin_key: str, **body: Any) -> dict[str, Any]:
    answer = await client.post("/v1/keys/rotate", json=body, headers=bearer(admin_key))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_rotation_keeps_data_and_the_old_write_key_through_its_grace(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    assert (await ingest(client, site["write_key"], "before")).status_code == 200
    new = await rotate(client, site["admin_key"], kinds=["write", "read"], grace_seconds=3600)
    assert {"write_key", "read_key"} <= set(new) and "admin_key" not in new
    assert (await ingest(client, site["write_key"], "old-key")).status_code == 200  # deployed pages keep working
    assert (await ingest(client, new["write_key"], "new-key")).status_code == 200
    assert_error(await client.get("/v1/kpis", params=KPIS, headers=bearer(site["read_key"])), 401, "invalid_key")
    assert await visitors(client, new["read_key"]) == 3  # nothing lost
    listed = {k["id"]: k for k in new["keys"]}
    old_write = next(k for k in listed.values() if k["kind"] == "write" and k["expires_at"] is not None)
    assert old_write["valid"] and old_write["prefix"] == site["write_key"][:7]
    assert not any(site["read_key"] in str(k) or site["write_key"] in str(k) for k in new["keys"])


async def test_revocation_is_immediate_even_in_the_grace_period(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    new = await rotate(client, site["admin_key"], kinds=["write"], grace_seconds=86400)
    old = next(k for k in new["keys"] if k["kind"] == "write" and k["expires_at"] is not None)
    assert (await ingest(client, site["write_key"], "m1")).status_code == 200
    revoked = await client.delete(f"/v1/keys/{old['id']}", headers=bearer(site["admin_key"]))
    assert revoked.json() == {"site": site["id"], "revoked": old["id"], "kind": "write"}
    assert_error(await ingest(client, site["write_key"], "m2"), 401, "invalid_write_key")
    assert (await ingest(client, new["write_key"], "m3")).status_code == 200
    again = await client.delete(f"/v1/keys/{old['id']}", headers=bearer(site["admin_key"]))
    assert_error(again, 404, "key_not_found")


async def test_a_grace_period_ends_on_time(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    await rotate(client, site["admin_key"], kinds=["write"], grace_seconds=1)
    assert (await ingest(client, site["write_key"], "in-grace")).status_code == 200
    for attempt in range(100):  # wait for the end of the grace period (a second), not a fixed time
        answer = await ingest(client, site["write_key"], f"late-{attempt}")
        if answer.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert_error(answer, 401, "invalid_write_key")


async def test_a_rotated_admin_key_stops_at_once_and_root_can_rotate_a_lost_one(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    new = await rotate(client, site["admin_key"], kinds=["admin"])
    assert_error(await client.get("/v1/rules", headers=bearer(site["admin_key"])), 401, "invalid_key")
    assert (await client.get("/v1/rules", headers=bearer(new["admin_key"]))).status_code == 200
    rescued = await client.post(f"/v1/sites/{site['id']}/keys/rotate", json={"kinds": ["admin"]}, headers=ROOT)
    assert rescued.status_code == 200, rescued.text
    assert_error(await client.get("/v1/rules", headers=bearer(new["admin_key"])), 401, "invalid_key")
    assert (await client.get("/v1/rules", headers=bearer(rescued.json()["admin_key"]))).status_code == 200


async def test_only_the_sites_admin_key_rotates(client: httpx.AsyncClient) -> None:
    site, other = await create_site(client), await create_site(client)
    body = {"kinds": ["write"]}
    assert_error(await client.post("/v1/keys/rotate", json=body, headers=bearer(site["read_key"])), 403,
                 "admin_key_required")  # fmt: skip
    mine = (await client.get("/v1/keys", headers=bearer(site["admin_key"]))).json()["keys"]
    theirs = await client.delete(f"/v1/keys/{mine[0]['id']}", headers=bearer(other["admin_key"]))
    assert_error(theirs, 404, "key_not_found")
    bad = await client.post("/v1/keys/rotate", json={"kinds": ["root"]}, headers=bearer(site["admin_key"]))
    assert_error(bad, 422, "invalid_parameter")


async def test_every_admin_and_root_action_is_audited(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    admin = bearer(site["admin_key"])
    admin_key_id = next(k["id"] for k in (await client.get("/v1/keys", headers=admin)).json()["keys"]
                        if k["kind"] == "admin")  # fmt: skip
    rules = (await client.get("/v1/rules", headers=admin)).json()["rules"]
    assert (await client.put("/v1/rules", json={"rules": rules}, headers=admin)).status_code == 200
    targets = {"targets": [{"kpi": "revenue", "month": "2026-03", "value": 100}]}
    assert (await client.put("/v1/targets", json=targets, headers=admin)).status_code == 200
    job = await client.post("/v1/reclassify", json={"from": "2026-03-01", "to": "2026-03-02"}, headers=admin)
    assert job.status_code == 202
    assert (await client.post("/v1/failed-events/replay", json={}, headers=admin)).status_code == 200
    rotated = await rotate(client, site["admin_key"], kinds=["read"])
    answer = await client.get("/v1/audit", headers=admin)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    assert [e["action"] for e in entries] == [
        "keys.rotate", "failed_events.replay", "reclassify", "targets.put", "rules.put", "site.create",
    ]  # fmt: skip
    assert {(e["actor"], e["key_id"]) for e in entries[:-1]} == {("admin", admin_key_id)}
    assert (entries[-1]["actor"], entries[-1]["key_id"]) == ("root", None)
    assert entries[2]["summary"]["job"] == job.json()["id"]
    text = answer.text
    assert not any(key in text for key in (site["admin_key"], site["read_key"], rotated["read_key"]))
    assert_error(await client.get("/v1/audit", headers=bearer(rotated["read_key"])), 403, "admin_key_required")


async def test_a_purge_is_audited_and_readable_by_root(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    assert (await client.delete(f"/v1/sites/{site['id']}", headers=ROOT)).status_code == 200
    answer = await client.get(f"/v1/sites/{site['id']}/audit", headers=ROOT)
    assert [(e["action"], e["actor"]) for e in answer.json()["entries"]] == [("site.delete", "root")]


async def test_the_access_log_names_the_key_id_and_a_truncated_address(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="racetrack.access")
    site = await create_site(client)
    keys = (await client.get("/v1/keys", headers=bearer(site["admin_key"]))).json()["keys"]
    await ingest(client, site["write_key"], "logged")
    lines = [r.fields for r in caplog.records if r.name == "racetrack.access"]  # type: ignore[attr-defined]
    write_id = next(k["id"] for k in keys if k["kind"] == "write")
    batch = next(f for f in lines if f["route"] == "/v1/batch")
    assert (batch["key_id"], batch["client"]) == (write_id, "127.0.0.0/24")
    assert site["write_key"] not in caplog.text
