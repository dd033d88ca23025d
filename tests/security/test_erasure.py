"""Erasure and access for one person (DELETE /v1/persons/{id}, GET /v1/persons/{id}/export), end to
end on real PostgreSQL: what goes, what stays, retries, rejected messages, ids, audit, the lock."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from app.config import Settings
from app.domain.erasure import parse_person_id
from app.pipeline import erasure as pipeline
from app.store.database import asyncpg_dsn, create_pool
from app.store.locks import lock_derivation, lock_key
from tests.conftest import create_site, drain
from tests.security.helpers import app_client, assert_error, bearer

T = "2026-03-10T10:00:00Z"


def _msg(kind: str, mid: str, at: str = T, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": mid, "timestamp": at, **fields}


def _alice() -> list[dict[str, Any]]:
    """An anonymous visit, a guest order, then a signup that links the anonymous history."""
    order = {"order_id": "alice-o1", "revenue": 30}
    return [
        _msg("page", "a-1", "2026-03-10T10:00:00Z", anonymousId="anon-alice", context={"sessionId": "s-a"}),
        _msg(
            "track",
            "a-2",
            "2026-03-10T10:05:00Z",
            anonymousId="anon-alice",
            event="Order Completed",
            properties=order,
            context={"sessionId": "s-a"},
        ),
        _msg(
            "identify",
            "a-3",
            "2026-03-11T09:00:00Z",
            anonymousId="anon-alice",
            userId="alice",
            traits={"email": "Alice@Example.com", "phone": "+49 170 1234567"},
        ),
        _msg(
            "track",
            "a-4",
            "2026-03-11T09:01:00Z",
            userId="alice",
            event="Order Completed",
            properties={"order_id": "alice-o2", "revenue": 12.5},
        ),
    ]


def _bob() -> list[dict[str, Any]]:
    return [
        _msg("page", "b-1", "2026-03-10T11:00:00Z", anonymousId="anon-bob"),
        _msg("track", "b-2", "2026-03-10T11:01:00Z", anonymousId="anon-bob", userId="bob", event="Signed Up"),
    ]


async def _send(client: httpx.AsyncClient, site: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    answer = await client.post("/v1/batch", json={"batch": messages}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _admin(site: dict[str, Any]) -> dict[str, str]:
    return bearer(site["admin_key"])


async def _visitors(client: httpx.AsyncClient, site: dict[str, Any]) -> dict[str, Any]:
    params = {"from": "2026-03-01", "to": "2026-04-01", "granularity": "total", "tz": "UTC"}
    answer = await client.get("/v1/kpis", params=params, headers=bearer(site["read_key"]))
    assert answer.status_code == 200, answer.text
    kpis: dict[str, Any] = answer.json()["buckets"][0]["kpis"]
    return kpis


async def test_export_then_erase_a_merged_person(client: httpx.AsyncClient, db: Any) -> None:
    site = await create_site(client)
    await _send(client, site, [*_alice()[:2], *_bob()])
    assert (await _visitors(client, site))["visitors"] == 2  # derived: a:anon-alice is a person of their own
    await _send(client, site, _alice()[2:])  # the signup links their anonymous history
    rejected = [
        _msg("track", "r-1", userId="alice"),  # no event name: rejected, carries the userId
        _msg("identify", "r-2", traits={"email": "alice@example.com"}),  # no id at all, her e-mail
        _msg("page", "r-3", anonymousId="anon-alice", timestamp="not a time"),
        _msg("track", "r-4", userId="bob"),  # someone else's
        _msg("identify", "r-5", context={"traits": {"phone": "+49 170 1234567"}}),  # her phone, elsewhere
    ]
    body = await _send(client, site, rejected)
    assert len(body["rejected"]) == 5
    before = await _visitors(client, site)
    assert (before["visitors"], before["orders"], before["revenue"]) == (2, 2, 42.5)

    answer = await client.get("/v1/persons/u:alice/export", headers=_admin(site))
    assert answer.status_code == 200, answer.text
    export = answer.json()
    assert export["person_id"] == "u:alice" and export["complete"] is True
    assert export["identities"] == {"user_id": "alice", "anonymous_ids": ["anon-alice"],
                                    "emails": ["alice@example.com"], "phones": ["491701234567"]}  # fmt: skip
    assert [e["message_id"] for e in export["events"]] == ["a-1", "a-2", "a-3", "a-4"]
    facts = [(e["facts"]["stage"], e["facts"]["goal"], e["facts"]["is_first_order"]) for e in export["events"]]
    assert facts == [("reach", "page_view", False), ("convert", "purchase", True), ("none", None, False),
                     ("engage", "repeat_purchase", False)]  # fmt: skip
    assert export["events"][2]["traits"]["email"] == "Alice@Example.com"
    assert {s["session_key"] for s in export["sessions"]} == {"u:alice|s|s-a", "u:alice|t|a-3"}
    assert [(k["anonymous_id"], k["user_id"]) for k in export["identity_links"]] == [("anon-alice", "alice")]
    assert export["person_state"]["orders"] == 2 and export["pending_events"] == []
    assert sorted(r["raw"]["messageId"] for r in export["rejected_messages"]) == ["r-1", "r-2", "r-3", "r-5"]

    answer = await client.delete("/v1/persons/u:alice", headers=_admin(site))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "site": site["id"], "person_id": "u:alice",
        "erased": {"events": 4, "pending_events": 0, "sessions": 2, "person_state": 1, "identity_links": 1,
                   "order_ids": 2, "duplicate_orders": 0, "rejected_messages": 4},
    }  # fmt: skip
    after = await _visitors(client, site)
    assert (after["visitors"], after["orders"], after["revenue"], after["leads"]) == (1, 0, 0.0, 1)

    stored = await db.fetch("SELECT person_id FROM event WHERE site_id = $1", site["id"])
    assert {r["person_id"] for r in stored} == {"u:bob"}
    for table in ("session", "person_state", "identity_link"):
        rows = await db.fetch(f"SELECT * FROM {table} WHERE site_id = $1", site["id"])
        assert all("alice" not in str(dict(r)) for r in rows), table
    numbers = await db.fetch("SELECT person_id FROM person_number WHERE site_id = $1", site["id"])
    assert sum(r["person_id"].startswith("erased:") for r in numbers) == 2  # u:alice and a:anon-alice
    assert not any("alice" in r["person_id"] for r in numbers)
    orders = await db.fetch("SELECT order_id FROM order_key WHERE site_id = $1", site["id"])
    assert orders == []
    failed = await client.get("/v1/failed-events", headers=_admin(site))
    assert [i["raw"]["messageId"] for i in failed.json()["items"]] == ["r-4"]

    assert_error(await client.get("/v1/persons/u:alice/export", headers=_admin(site)), 404, "person_not_found")
    assert_error(await client.delete("/v1/persons/u:alice", headers=_admin(site)), 404, "person_not_found")
    audit = (await client.get("/v1/audit", headers=_admin(site))).json()["entries"]
    by_action = {e["action"]: e for e in audit}
    assert by_action["person.erase"]["summary"]["events"] == 4
    assert by_action["person.erase"]["key_id"] is not None and by_action["person.export"]["key_id"] is not None
    assert "alice" not in str(audit) and site["admin_key"] not in str(audit)


async def test_a_retry_after_erasure_is_a_duplicate_and_new_messages_are_a_new_person(
    client: httpx.AsyncClient,
) -> None:
    site = await create_site(client)
    await _send(client, site, _alice())
    assert (await client.delete("/v1/persons/u:alice", headers=_admin(site))).status_code == 200
    again = await _send(client, site, _alice())  # the SDK retries the same messages
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert_error(await client.get("/v1/persons/u:alice/export", headers=_admin(site)), 404, "person_not_found")
    assert (await _visitors(client, site))["visitors"] == 0

    new = _msg("track", "a-5", "2026-03-12T09:00:00Z", userId="alice", event="Order Completed",
               properties={"order_id": "alice-o2", "revenue": 7})  # fmt: skip
    assert (await _send(client, site, [new]))["accepted"] == 1  # erasure is not a block list
    kpis = await _visitors(client, site)
    assert (kpis["visitors"], kpis["new_visitors"], kpis["orders"], kpis["new_customers"], kpis["revenue"]) == (
        1, 1, 1, 1, 7.0,
    )  # fmt: skip
    export = (await client.get("/v1/persons/u:alice/export", headers=_admin(site))).json()
    assert [e["facts"]["goal"] for e in export["events"]] == ["purchase"]


async def test_an_anonymous_person_and_the_ids_that_name_no_one(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    await _send(client, site, [*_alice(), *_bob(), _msg("page", "c-1", anonymousId="anon-carol")])
    admin = _admin(site)
    linked = assert_error(await client.delete("/v1/persons/a:anon-alice", headers=admin), 404, "person_not_found")
    assert "u:alice" in linked["details"][0]["message"]
    nul = assert_error(await client.delete("/v1/persons/u:a%00b", headers=admin), 400, "invalid_character")
    assert nul["details"][0]["field"] == "path"  # refused at the edge, before any handler
    for bad in ("alice", "u:", "x:1", "a:" + "x" * 513, ""):
        body = assert_error(await client.delete(f"/v1/persons/{bad}", headers=admin), 422, "invalid_parameter")
        assert body["details"][0]["field"] == "person_id", bad
        body = assert_error(await client.get(f"/v1/persons/{bad}/export", headers=admin), 422, "invalid_parameter")
        assert body["details"][0]["field"] == "person_id", bad
    assert_error(await client.delete("/v1/persons/u:nobody", headers=admin), 404, "person_not_found")
    assert_error(await client.delete("/v1/persons/u:alice", headers=bearer(site["read_key"])), 403,
                 "admin_key_required")  # fmt: skip
    answer = await client.get("/v1/persons/u:alice/export", headers={**admin, "Origin": "https://evil.example"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers

    answer = await client.delete("/v1/persons/a:anon-carol", headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["erased"]["events"] == 1
    assert (await _visitors(client, site))["visitors"] == 2


async def test_erasure_waits_for_a_busy_deriver_and_derives_the_inbox_first(settings: Settings) -> None:
    """With no deriver running, everything waits in the inbox; another transaction holds the site's
    derivation lock: the erasure waits for it, then derives the inbox and erases the merged person,
    whose link arrives only in the inbox."""
    async with app_client(settings, deriver=False, read_wait_seconds=0) as client:
        site = await create_site(client)
        await _send(client, site, [*_alice(), *_bob()])
        holder = await asyncpg.connect(asyncpg_dsn(settings.database_url or ""))
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT pg_advisory_xact_lock($1)", lock_key("derive", site["id"], ""))
            erasing = asyncio.create_task(client.delete("/v1/persons/u:alice", headers=_admin(site)))
            while not await holder.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)"
            ):
                assert not erasing.done(), erasing.result().text
                await asyncio.sleep(0.01)
            pending = await holder.fetchval("SELECT count(*) FROM inbox WHERE site_id = $1", site["id"])
            assert pending == 6
            await tx.rollback()
            answer = await erasing
        finally:
            await holder.close()
        assert answer.status_code == 200, answer.text
        assert answer.json()["erased"]["events"] == 4
        await drain()
        kpis = await _visitors(client, site)
        assert (kpis["visitors"], kpis["orders"], kpis["leads"]) == (1, 0, 1)


async def test_rows_still_in_the_inbox_go_with_the_person(settings: Settings, database_url: str) -> None:
    """Inside the erasure's transaction, rows acknowledged after it derived the inbox are removed there."""
    async with app_client(settings, deriver=False, read_wait_seconds=0) as client:
        site = await create_site(client)
        await _send(client, site, _bob())
        await drain()
        await _send(client, site, [*_alice(), _msg("page", "b-3", userId="bob")])
    pool = await create_pool(database_url, 1, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await lock_derivation(conn, site["id"])
            erased = await pipeline.erase_locked(conn, site["id"], ZoneInfo("UTC"), parse_person_id("u:alice"))
            assert erased is not None and (erased.events, erased.pending_events) == (0, 4)
            left = await conn.fetch("SELECT message_id FROM inbox WHERE site_id = $1", site["id"])
            assert [r["message_id"] for r in left] == ["b-3"]
    finally:
        await pool.close()


async def test_the_copies_of_an_erased_persons_orders_go_with_them(client: httpx.AsyncClient, db: Any) -> None:
    """A copy of an order id that did not count (a later copy, here sent under another anonymousId)
    is a copy of the erased person's order: it goes, and the order id is free again."""
    site = await create_site(client)
    copy = _msg("track", "a-2-copy", "2026-03-10T10:07:00Z", anonymousId="anon-other", event="Order Completed",
                properties={"order_id": "alice-o1", "revenue": 30})  # fmt: skip
    await _send(client, site, [*_alice(), *_bob(), copy])
    export = (await client.get("/v1/persons/u:alice/export", headers=_admin(site))).json()
    assert export["duplicate_orders"] == []  # the copy carries none of her ids
    answer = await client.delete("/v1/persons/u:alice", headers=_admin(site))
    assert answer.json()["erased"]["duplicate_orders"] == 1 and answer.json()["erased"]["order_ids"] == 2
    assert await db.fetch("SELECT * FROM duplicate_order WHERE site_id = $1", site["id"]) == []
    again = _msg("track", "o-new", "2026-03-12T10:00:00Z", anonymousId="anon-other", event="Order Completed",
                 properties={"order_id": "alice-o1", "revenue": 5})  # fmt: skip
    await _send(client, site, [again])
    kpis = await _visitors(client, site)
    assert (kpis["orders"], kpis["revenue"]) == (1, 5.0)
