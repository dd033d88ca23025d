"""Ingestion API against the real app and a real PostgreSQL (DESIGN §2 and §6): auth, bodies, answers,
idempotency, rejections, limits, CORS, the pixel, privacy, clock skew and person resolution."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from tests.conftest import create_site

ORIGIN = "https://shop.example"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


# ---------------------------------------------------------------- helpers


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


def track(event: str = "Product Viewed", **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": event,
        "anonymousId": f"anon-{uuid.uuid4().hex[:8]}",
        "messageId": f"msg-{uuid.uuid4().hex}",
        "timestamp": iso(now()),
    }
    message.update(fields)
    return message


def page(**fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "page",
        "name": "Home",
        "anonymousId": f"anon-{uuid.uuid4().hex[:8]}",
        "messageId": f"msg-{uuid.uuid4().hex}",
        "timestamp": iso(now()),
        "context": {"page": {"url": "https://shop.example/", "path": "/"}},
    }
    message.update(fields)
    return message


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


async def post_batch(client: httpx.AsyncClient, site: dict[str, Any], batch: list[Any], **body: Any) -> httpx.Response:
    return await client.post("/v1/batch", json={"batch": batch, **body}, headers=basic(site["write_key"]))


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["success"] is True
    assert isinstance(body["accepted"], int)
    assert isinstance(body["duplicates"], int)
    assert isinstance(body["rejected"], list)
    return body


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert isinstance(body.get("code"), str) and body["code"]
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("details"), list)
    if code is not None:
        assert body["code"] == code, body
    return body


async def events(db: asyncpg.Connection, site_id: int) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM event WHERE site_id = $1 ORDER BY event_at, event_id", site_id)


async def event_count(db: asyncpg.Connection, site_id: int, **where: Any) -> int:
    clauses = ["site_id = $1", *(f"{column} = ${i + 2}" for i, column in enumerate(where))]
    return int(await db.fetchval(f"SELECT count(*) FROM event WHERE {' AND '.join(clauses)}", site_id, *where.values()))


def jsonb(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------- authentication and bodies


async def test_batch_with_basic_auth_stores_events(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    first = track("Product Viewed", properties={"sku": "A-1"})
    second = page()
    body = ok(await post_batch(client, site, [first, second]))
    assert body == {"success": True, "accepted": 2, "duplicates": 0, "rejected": []}

    rows = await db.fetch(
        "SELECT message_id, type, event_name, anonymous_id, properties FROM event WHERE site_id = $1", site["id"]
    )
    stored = {r["message_id"]: r for r in rows}
    assert set(stored) == {first["messageId"], second["messageId"]}
    assert stored[first["messageId"]]["type"] == "track"
    assert stored[first["messageId"]]["event_name"] == "Product Viewed"
    assert stored[first["messageId"]]["anonymous_id"] == first["anonymousId"]
    assert jsonb(stored[first["messageId"]]["properties"]) == {"sku": "A-1"}
    assert stored[second["messageId"]]["type"] == "page"


async def test_values_arrive_exactly_as_sent(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    """Times to the microsecond whatever the client's offset (+16:36 is valid ISO 8601 that
    PostgreSQL's text input refuses), text beyond ASCII, nested JSON and JSON nulls."""
    sent = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=16, minutes=36)))
    message = track("Käse bestellt ✓", properties={"nested": {"a": [1, 2.5, None]}, "empty": None, "emoji": "🧀"})
    message["timestamp"] = sent.isoformat()
    message["context"] = {"page": {"url": "https://shop.example/ü?x=1", "referrer": None}}
    assert ok(await post_batch(client, site, [message]))["accepted"] == 1
    row = await db.fetchrow(
        "SELECT event_at, event_name, properties, url FROM event WHERE site_id = $1 AND message_id = $2",
        site["id"], message["messageId"],
    )  # fmt: skip
    assert row["event_at"] == sent
    assert row["event_name"] == "Käse bestellt ✓"
    assert jsonb(row["properties"]) == {"nested": {"a": [1, 2.5, None]}, "empty": None, "emoji": "🧀"}
    assert row["url"] == "https://shop.example/ü?x=1"


async def test_batch_with_write_key_in_body(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    answer = await client.post("/v1/batch", json={"batch": [message], "writeKey": site["write_key"]})
    assert ok(answer)["accepted"] == 1
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


async def test_batch_with_write_key_in_query(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    answer = await client.post("/v1/batch", params={"writeKey": site["write_key"]}, json={"batch": [message]})
    assert ok(answer)["accepted"] == 1
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


async def test_batch_with_bearer_write_key(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    answer = await client.post(
        "/v1/batch", json={"batch": [message]}, headers={"Authorization": f"Bearer {site['write_key']}"}
    )
    assert ok(answer)["accepted"] == 1
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


async def test_key_names_the_site(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    other = await create_site(client)
    message = track()
    ok(await post_batch(client, other, [message]))
    assert await event_count(db, other["id"], message_id=message["messageId"]) == 1
    assert await event_count(db, site["id"]) == 0


async def test_send_beacon_text_plain_body(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = page()
    answer = await client.post(
        "/v1/batch",
        params={"writeKey": site["write_key"]},
        content=json.dumps({"batch": [message]}).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN},
    )
    assert ok(answer)["accepted"] == 1
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_compressed_bodies(client: httpx.AsyncClient, site: dict[str, Any], db, encoding, compress) -> None:
    batch = [track(), track(), page()]
    raw = json.dumps({"batch": batch, "writeKey": site["write_key"]}).encode()
    answer = await client.post(
        "/v1/batch",
        content=compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert ok(answer) == {"success": True, "accepted": 3, "duplicates": 0, "rejected": []}
    stored = {r["message_id"] for r in await events(db, site["id"])}
    assert stored == {m["messageId"] for m in batch}


async def test_corrupt_gzip_body_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post(
        "/v1/batch",
        params={"writeKey": site["write_key"]},
        content=b"\x1f\x8b\x08\x00this is not gzip",
        headers={"Content-Encoding": "gzip"},
    )
    assert_error(answer, 400)


async def test_empty_batch_is_200(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    assert ok(await post_batch(client, site, [])) == {"success": True, "accepted": 0, "duplicates": 0, "rejected": []}


# ---------------------------------------------------------------- idempotency


async def test_resent_message_id_is_a_duplicate(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    assert ok(await post_batch(client, site, [message]))["accepted"] == 1
    again = ok(await post_batch(client, site, [message]))
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


async def test_message_id_is_scoped_to_the_site(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    other = await create_site(client)
    message = track()
    assert ok(await post_batch(client, site, [message]))["accepted"] == 1
    assert ok(await post_batch(client, other, [message]))["accepted"] == 1
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1
    assert await event_count(db, other["id"], message_id=message["messageId"]) == 1


async def test_duplicate_inside_one_batch_stored_once(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    other = track()
    await post_batch(client, site, [message, dict(message), other])
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1
    assert await event_count(db, site["id"]) == 2


async def test_duplicate_inside_one_batch_is_counted_as_duplicate(
    client: httpx.AsyncClient, site: dict[str, Any]
) -> None:
    message = track()
    body = ok(await post_batch(client, site, [message, dict(message), track()]))
    assert (body["accepted"], body["duplicates"]) == (2, 1)


async def quality_total(client: httpx.AsyncClient, site: dict[str, Any]) -> dict[str, Any]:
    day = now().date()
    answer = await client.get(
        "/v1/quality", params={"from": str(day - timedelta(days=1)), "to": str(day + timedelta(days=1)),
                               "granularity": "total", "tz": "UTC"},
        headers={"Authorization": f"Bearer {site['read_key']}"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    bucket: dict[str, Any] = answer.json()["buckets"][0]
    return bucket


async def test_concurrent_resends_store_once(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = track()
    answers = await asyncio.gather(*(post_batch(client, site, [message]) for _ in range(5)))
    bodies = [ok(a) for a in answers]
    assert sum(b["accepted"] for b in bodies) == 1
    assert sum(b["duplicates"] for b in bodies) == 4
    assert await event_count(db, site["id"], message_id=message["messageId"]) == 1


async def test_same_order_id_with_new_message_id_stored_once(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    anonymous = f"anon-{uuid.uuid4().hex[:8]}"
    order = {"order_id": "ORD-1001", "revenue": 49.9}
    first = track("Order Completed", anonymousId=anonymous, properties=order)
    assert ok(await post_batch(client, site, [first]))["accepted"] == 1
    retry = track("Order Completed", anonymousId=anonymous, properties=order)  # new messageId
    body = ok(await post_batch(client, site, [retry]))
    assert (body["accepted"], body["duplicates"]) == (1, 0)  # stored durably; the order id is decided when deriving
    assert await event_count(db, site["id"], event_name="Order Completed") == 1
    assert await db.fetchval("SELECT count(*) FROM duplicate_order WHERE site_id = $1", site["id"]) == 1
    assert (await quality_total(client, site))["duplicate_orders"] == 1


async def test_earliest_copy_of_an_order_counts_whatever_the_arrival_order(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    order = {"order_id": "ORD-LATE", "revenue": 30}
    later = track("Order Completed", properties=order, timestamp=iso(now() - timedelta(minutes=5)))
    earlier = track("Order Completed", properties=order, timestamp=iso(now() - timedelta(minutes=50)))
    ok(await post_batch(client, site, [later]))
    assert await db.fetchval("SELECT message_id FROM event WHERE site_id = $1", site["id"]) == later["messageId"]
    ok(await post_batch(client, site, [earlier]))  # arrives last, happened first: it is the order
    rows = await db.fetch("SELECT message_id, is_order FROM event WHERE site_id = $1", site["id"])
    assert [(r["message_id"], r["is_order"]) for r in rows] == [(earlier["messageId"], True)]
    kept = await db.fetchval("SELECT message_id FROM duplicate_order WHERE site_id = $1", site["id"])
    assert kept == later["messageId"]


async def test_same_order_id_twice_in_one_batch_stored_once(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    order = {"order_id": 5005, "revenue": 10}
    body = ok(await post_batch(client, site, [track("Order Completed", properties=order) for _ in range(2)]))
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert await event_count(db, site["id"], event_name="Order Completed") == 1
    assert (await quality_total(client, site))["duplicate_orders"] == 1


async def test_same_order_id_for_another_event_name_is_kept(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    order = {"order_id": "ORD-77", "revenue": 20}
    ok(await post_batch(client, site, [track("Order Completed", properties=order)]))
    body = ok(await post_batch(client, site, [track("Order Refunded", properties=order)]))
    assert body["accepted"] == 1
    assert await event_count(db, site["id"]) == 2


async def test_message_without_id_retried_with_new_sent_at_stored_once(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    message = track("Signed Up")
    del message["messageId"]
    moment = now()
    first = {**message, "sentAt": iso(moment)}
    retry = {**message, "sentAt": iso(moment + timedelta(seconds=30))}
    assert ok(await post_batch(client, site, [first], sentAt=iso(moment)))["accepted"] == 1
    body = ok(await post_batch(client, site, [retry], sentAt=iso(moment + timedelta(seconds=30))))
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert await event_count(db, site["id"], event_name="Signed Up") == 1
    message_id = await db.fetchval("SELECT message_id FROM event WHERE site_id = $1", site["id"])
    assert message_id  # a messageId was generated


async def test_messages_without_id_or_timestamp_are_distinct(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    message = track("Product Viewed")
    del message["messageId"], message["timestamp"]
    body = ok(await post_batch(client, site, [message, dict(message)]))
    assert body["accepted"] == 2
    ids = [r["message_id"] for r in await events(db, site["id"])]
    assert len(ids) == 2 and len(set(ids)) == 2


# ---------------------------------------------------------------- single-message endpoints


@pytest.mark.parametrize(
    ("kind", "message", "column", "value"),
    [
        ("track", {"event": "Signed Up", "anonymousId": "a-track"}, "event_name", "Signed Up"),
        ("page", {"name": "Pricing", "anonymousId": "a-page"}, "name", "Pricing"),
        ("screen", {"name": "Cart", "anonymousId": "a-screen"}, "name", "Cart"),
        ("identify", {"userId": "u-ident", "anonymousId": "a-ident", "traits": {"plan": "pro"}}, "user_id", "u-ident"),
        ("alias", {"userId": "u-alias", "previousId": "a-alias"}, "anonymous_id", "a-alias"),
    ],
)
async def test_single_message_endpoints(
    client: httpx.AsyncClient, site: dict[str, Any], db, kind: str, message: dict[str, Any], column: str, value: str
) -> None:
    message_id = f"single-{uuid.uuid4().hex}"
    answer = await client.post(
        f"/v1/{kind}", json={**message, "messageId": message_id}, headers=basic(site["write_key"])
    )
    assert ok(answer) == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    row = await db.fetchrow(
        f"SELECT type, {column} FROM event WHERE site_id = $1 AND message_id = $2", site["id"], message_id
    )
    assert row is not None
    assert row["type"] == kind
    assert row[column] == value


async def test_single_message_with_write_key_in_body(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = {"event": "Product Added", "anonymousId": "a-1", "messageId": "m-body", "writeKey": site["write_key"]}
    assert ok(await client.post("/v1/track", json=message))["accepted"] == 1
    assert await event_count(db, site["id"], message_id="m-body") == 1


async def test_single_message_resent_is_duplicate(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = {"event": "Product Added", "anonymousId": "a-1", "messageId": "m-single-dup"}
    ok(await client.post("/v1/track", json=message, headers=basic(site["write_key"])))
    body = ok(await client.post("/v1/track", json=message, headers=basic(site["write_key"])))
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert await event_count(db, site["id"], message_id="m-single-dup") == 1


@pytest.mark.parametrize(
    ("kind", "message", "field", "code"),
    [
        ("track", {"anonymousId": "a-1"}, "event", "missing_event"),
        ("track", {"event": "X"}, "anonymousId", "missing_identity"),
        ("page", {"anonymousId": "a-1", "properties": "not an object"}, "properties", "invalid_field"),
        ("identify", {"anonymousId": "a-1", "timestamp": "yesterday-ish"}, "timestamp", "invalid_timestamp"),
        ("alias", {"userId": "u-1"}, "previousId", "missing_identity"),
    ],
)
async def test_bad_single_message_is_400_naming_the_field(
    client: httpx.AsyncClient, site: dict[str, Any], db, kind: str, message: dict[str, Any], field: str, code: str
) -> None:
    answer = await client.post(f"/v1/{kind}", json=message, headers=basic(site["write_key"]))
    body = assert_error(answer, 400, code)
    assert any(d.get("field") == field for d in body["details"]), body
    assert await event_count(db, site["id"]) == 0
    # kept raw for an admin to replay
    assert (
        await db.fetchval("SELECT count(*) FROM failed_event WHERE site_id = $1 AND code = $2", site["id"], code) == 1
    )


async def test_single_message_body_must_be_an_object(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post("/v1/track", json=[{"event": "X", "anonymousId": "a"}], headers=basic(site["write_key"]))
    assert_error(answer, 400)


# ---------------------------------------------------------------- rejected messages inside a batch


async def test_bad_message_does_not_cost_its_neighbours(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    before = track("Product Viewed")
    bad = track("Product Viewed")
    del bad["anonymousId"]
    bad["properties"] = {"note": "no identity"}
    after = page()
    body = ok(await post_batch(client, site, [before, bad, after]))
    assert body["accepted"] == 2
    assert body["duplicates"] == 0
    assert len(body["rejected"]) == 1
    rejected = body["rejected"][0]
    assert rejected["index"] == 1
    assert rejected["messageId"] == bad["messageId"]
    assert rejected["code"] == "missing_identity"
    assert isinstance(rejected["message"], str) and rejected["message"]

    stored = {r["message_id"] for r in await events(db, site["id"])}
    assert stored == {before["messageId"], after["messageId"]}

    failed = await db.fetch("SELECT code, message, field, raw FROM failed_event WHERE site_id = $1", site["id"])
    assert len(failed) == 1
    assert failed[0]["code"] == "missing_identity"
    assert failed[0]["message"]
    assert failed[0]["field"] == "anonymousId"
    assert json.loads(failed[0]["raw"]) == bad


async def test_non_object_message_in_batch_is_rejected(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    good = track()
    body = ok(await post_batch(client, site, ["just a string", good, {"type": "nonsense", "anonymousId": "a"}]))
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [0, 2]
    assert body["rejected"][0]["code"] == "invalid_message"
    assert body["rejected"][1]["code"] == "invalid_type"
    assert await db.fetchval("SELECT count(*) FROM failed_event WHERE site_id = $1", site["id"]) == 2
    raws = {r["raw"] for r in await db.fetch("SELECT raw FROM failed_event WHERE site_id = $1", site["id"])}
    assert json.dumps("just a string") in raws


async def test_message_over_32kb_rejected(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    big = track("Product Viewed", properties={"blob": "x" * 33_000})
    fine = track("Product Viewed", properties={"blob": "y" * 30_000})
    body = ok(await post_batch(client, site, [big, fine]))
    assert body["accepted"] == 1
    assert len(body["rejected"]) == 1
    assert body["rejected"][0]["index"] == 0
    assert body["rejected"][0]["code"] == "message_too_large"
    assert body["rejected"][0]["messageId"] == big["messageId"]
    assert {r["message_id"] for r in await events(db, site["id"])} == {fine["messageId"]}
    failed = await db.fetchrow("SELECT code, raw FROM failed_event WHERE site_id = $1", site["id"])
    assert failed["code"] == "message_too_large"
    assert json.loads(failed["raw"])["messageId"] == big["messageId"]


async def test_event_more_than_24h_in_future_rejected(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    future = track("Product Viewed", timestamp=iso(now() + timedelta(hours=25)))
    near = track("Product Viewed", timestamp=iso(now() + timedelta(hours=23)))
    body = ok(await post_batch(client, site, [future, near]))
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(0, "future_timestamp")]
    assert body["rejected"][0]["messageId"] == future["messageId"]
    assert {r["message_id"] for r in await events(db, site["id"])} == {near["messageId"]}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM failed_event WHERE site_id = $1 AND code = 'future_timestamp'", site["id"]
        )
        == 1
    )


# ---------------------------------------------------------------- request-level errors


async def test_malformed_json_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post(
        "/v1/batch", content=b'{"batch": [', headers={**basic(site["write_key"]), "Content-Type": "application/json"}
    )
    assert_error(answer, 400, "malformed_json")


async def test_malformed_json_on_single_endpoint_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post("/v1/track", content=b"{nope", headers=basic(site["write_key"]))
    assert_error(answer, 400, "malformed_json")


async def test_batch_must_be_an_array(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post("/v1/batch", json={"batch": {"type": "track"}}, headers=basic(site["write_key"]))
    body = assert_error(answer, 400)
    assert any(d.get("field") == "batch" for d in body["details"])


async def test_empty_body_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    assert_error(await client.post("/v1/batch", content=b"", headers=basic(site["write_key"])), 400)


async def test_unsupported_content_encoding_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post(
        "/v1/batch", content=b"\x00\x01", headers={**basic(site["write_key"]), "Content-Encoding": "br"}
    )
    assert_error(answer, 400)


@pytest.mark.parametrize(
    "auth",
    [
        {"headers": {"Authorization": "Basic " + base64.b64encode(b"wk_does_not_exist:").decode()}},
        {"params": {"writeKey": "wk_does_not_exist"}},
        {"headers": {"Authorization": "Bearer wk_does_not_exist"}},
    ],
    ids=["basic", "query", "bearer"],
)
async def test_unknown_write_key_is_401(client: httpx.AsyncClient, auth: dict[str, Any]) -> None:
    answer = await client.post("/v1/batch", json={"batch": [track()]}, **auth)
    assert_error(answer, 401)


async def test_unknown_write_key_in_body_is_401(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/batch", json={"batch": [track()], "writeKey": "wk_nope"})
    assert_error(answer, 401)


async def test_missing_write_key_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/v1/batch", json={"batch": [track()]}), 401)
    assert_error(await client.post("/v1/track", json={"event": "X", "anonymousId": "a"}), 401)


async def test_read_key_is_not_a_write_key(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    answer = await client.post(
        "/v1/batch", json={"batch": [track()]}, headers={"Authorization": f"Bearer {site['read_key']}"}
    )
    assert_error(answer, 401)
    assert await event_count(db, site["id"]) == 0


async def test_body_over_500kb_is_413(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    batch = [track(properties={"blob": "z" * 25_000}) for _ in range(22)]  # ~550 KB, each message < 32 KB
    raw = json.dumps({"batch": batch}).encode()
    assert len(raw) > 500 * 1024
    answer = await client.post("/v1/batch", content=raw, headers=basic(site["write_key"]))
    assert_error(answer, 413)
    assert await event_count(db, site["id"]) == 0


async def test_body_just_under_500kb_is_accepted(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    batch = [track(properties={"blob": "z" * 25_000}) for _ in range(19)]  # ~475 KB
    raw = json.dumps({"batch": batch}).encode()
    assert 450 * 1024 < len(raw) < 500 * 1024
    assert ok(await client.post("/v1/batch", content=raw, headers=basic(site["write_key"])))["accepted"] == 19
    assert await event_count(db, site["id"]) == 19


async def test_limit_is_measured_after_decompression(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    batch = [track(properties={"blob": "z" * 25_000}) for _ in range(22)]
    compressed = gzip.compress(json.dumps({"batch": batch}).encode())
    assert len(compressed) < 50 * 1024  # small on the wire, > 500 KB inflated
    answer = await client.post(
        "/v1/batch", content=compressed, headers={**basic(site["write_key"]), "Content-Encoding": "gzip"}
    )
    assert_error(answer, 413)
    assert await event_count(db, site["id"]) == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_decompression_bomb_is_413(client: httpx.AsyncClient, site: dict[str, Any], encoding: str) -> None:
    inflated = b" " * (50 * 1024 * 1024)  # 50 MB of whitespace
    bomb = gzip.compress(inflated, compresslevel=9) if encoding == "gzip" else zlib.compress(inflated, 9)
    assert len(bomb) < 500 * 1024
    answer = await client.post(
        "/v1/batch", content=bomb, headers={**basic(site["write_key"]), "Content-Encoding": encoding}
    )
    assert_error(answer, 413)


async def test_empty_content_encoding_does_not_bypass_the_limit(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    batch = [track(properties={"blob": "z" * 25_000}) for _ in range(22)]
    raw = json.dumps({"batch": batch}).encode()
    assert len(raw) > 500 * 1024
    answer = await client.post("/v1/batch", content=raw, headers={**basic(site["write_key"]), "Content-Encoding": ""})
    assert await event_count(db, site["id"]) == 0
    assert_error(answer, 413)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: track("Product Viewed", properties={"query": "a\u0000b"}),
        lambda: track("Product\u0000Viewed"),
        lambda: track("Product Viewed", anonymousId="anon\u0000x"),
    ],
    ids=["in-properties", "in-event-name", "in-anonymous-id"],
)
async def test_nul_character_does_not_cost_the_neighbours(
    client: httpx.AsyncClient, site: dict[str, Any], db, bad
) -> None:
    good, poisoned = track(), bad()
    answer = await post_batch(client, site, [good, poisoned])
    assert await event_count(db, site["id"], message_id=good["messageId"]) == 1
    body = ok(answer)
    # the poisoned message is stored (sanitised) or rejected and kept raw: never silently dropped
    assert body["accepted"] + len(body["rejected"]) == 2
    if body["rejected"]:
        assert body["rejected"][0]["messageId"] == poisoned["messageId"]
        assert await db.fetchval("SELECT count(*) FROM failed_event WHERE site_id = $1", site["id"]) == 1


async def test_saturated_writer_answers_503_with_retry_after(settings: Settings, db) -> None:
    tight = settings.model_copy(update={"writer_max_pending": 2})
    async with app_client(tight) as client:
        site = await create_site(client)
        answer = await client.post(
            "/v1/batch",
            json={"batch": [track(), track(), track()]},
            headers={**basic(site["write_key"]), "Origin": ORIGIN},
        )
        assert_error(answer, 503)
        assert int(answer.headers["retry-after"]) > 0
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert await event_count(db, site["id"]) == 0
        assert ok(await post_batch(client, site, [track(), track()]))["accepted"] == 2


# ---------------------------------------------------------------- CORS


async def test_cors_on_success(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await post_batch_with_origin(client, site)
    ok(answer)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    plain = await post_batch(client, site, [track()])
    assert plain.headers["access-control-allow-origin"] == "*"


async def post_batch_with_origin(client: httpx.AsyncClient, site: dict[str, Any]) -> httpx.Response:
    return await client.post(
        "/v1/batch", json={"batch": [track()]}, headers={**basic(site["write_key"]), "Origin": ORIGIN}
    )


@pytest.mark.parametrize(
    ("status", "request_kwargs"),
    [
        (401, {"json": {"batch": []}}),
        (401, {"json": {"batch": []}, "params": {"writeKey": "wk_unknown"}}),
        (400, {"content": b"{broken", "with_key": True}),
        (413, {"content": b'{"batch": [' + b" " * (600 * 1024) + b"]}", "with_key": True}),
        (413, {"content": gzip.compress(b" " * (5 * 1024 * 1024)), "gzip": True, "with_key": True}),
    ],
    ids=["401-missing", "401-unknown", "400-malformed", "413-large", "413-bomb"],
)
async def test_cors_on_errors(
    client: httpx.AsyncClient, site: dict[str, Any], status: int, request_kwargs: dict[str, Any]
) -> None:
    kwargs = dict(request_kwargs)
    headers = {"Origin": ORIGIN}
    if kwargs.pop("with_key", False):
        kwargs["params"] = {"writeKey": site["write_key"]}
    if kwargs.pop("gzip", False):
        headers["Content-Encoding"] = "gzip"
    answer = await client.post("/v1/batch", headers=headers, **kwargs)
    assert_error(answer, status)
    assert answer.headers["access-control-allow-origin"] == ORIGIN


async def test_cors_on_bad_single_message(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post(
        "/v1/track", json={"anonymousId": "a"}, headers={**basic(site["write_key"]), "Origin": ORIGIN}
    )
    assert_error(answer, 400)
    assert answer.headers["access-control-allow-origin"] == ORIGIN


async def test_cors_on_404(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/no-such-thing", headers={"Origin": ORIGIN})
    assert_error(answer, 404)
    assert answer.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/v1/kpis"])
async def test_preflight_is_answered(client: httpx.AsyncClient, path: str) -> None:
    await create_site(client, domains=["shop.example"])  # read endpoints: only the origins sites list
    answer = await client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert {"POST", "GET", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization"} <= allowed


async def test_preflight_without_requested_headers_allows_the_sdk_headers(client: httpx.AsyncClient) -> None:
    answer = await client.options("/v1/batch", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 204
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization", "content-encoding"} <= allowed


# ---------------------------------------------------------------- pixel


def pixel_data(message: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")


def assert_gif(answer: httpx.Response) -> None:
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a")
    cache_control = answer.headers["cache-control"].lower()
    assert "no-cache" in cache_control and "no-store" in cache_control


async def test_pixel_stores_event_and_answers_gif(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = {
        "type": "track",
        "event": "Email Opened",
        "anonymousId": "a-mail",
        "messageId": "px-1",
        "properties": {"campaign": "spring"},
    }
    answer = await client.get(
        "/v1/pixel.gif", params={"data": pixel_data(message), "writeKey": site["write_key"]}, headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 200
    assert_gif(answer)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    row = await db.fetchrow("SELECT type, event_name, anonymous_id FROM event WHERE site_id = $1", site["id"])
    assert (row["type"], row["event_name"], row["anonymous_id"]) == ("track", "Email Opened", "a-mail")


async def test_pixel_defaults_to_track_and_dedupes(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    message = {"event": "Email Opened", "userId": "u-mail", "messageId": "px-2"}
    params = {"data": pixel_data(message), "writeKey": site["write_key"]}
    assert (await client.get("/v1/pixel.gif", params=params)).status_code == 200
    again = await client.get("/v1/pixel.gif", params=params)
    assert again.status_code == 200
    assert_gif(again)
    assert await event_count(db, site["id"], message_id="px-2", type="track") == 1


@pytest.mark.parametrize(
    "params",
    [
        {"data": base64.urlsafe_b64encode(b"{not json").decode()},
        {"data": "%%%not-base64%%%"},
        {"data": ""},
        {"data": pixel_data({"type": "track", "anonymousId": "a"})},  # no event name
        {"data": pixel_data(["not", "an", "object"])},
    ],
    ids=["bad-json", "bad-base64", "empty", "invalid-message", "not-object"],
)
async def test_pixel_bad_data_still_answers_gif(
    client: httpx.AsyncClient, site: dict[str, Any], db, params: dict[str, str]
) -> None:
    answer = await client.get("/v1/pixel.gif", params={**params, "writeKey": site["write_key"]})
    assert 400 <= answer.status_code < 500
    assert_gif(answer)
    assert await event_count(db, site["id"]) == 0


async def test_pixel_unknown_key_answers_gif_401(client: httpx.AsyncClient) -> None:
    message = {"event": "Email Opened", "anonymousId": "a"}
    answer = await client.get("/v1/pixel.gif", params={"data": pixel_data(message), "writeKey": "wk_unknown"})
    assert answer.status_code == 401
    assert_gif(answer)
    missing = await client.get("/v1/pixel.gif", params={"data": pixel_data(message)})
    assert missing.status_code == 401
    assert_gif(missing)


# ---------------------------------------------------------------- privacy and bots

CLIENT_IP = "198.51.100.23"


@asynccontextmanager
async def app_client(settings: Settings, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """Like the `client` fixture, for other settings or another client address."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            yield c


@pytest.fixture
async def client_with_address(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Requests from CLIENT_IP."""
    async with app_client(settings, CLIENT_IP) as c:
        yield c


async def test_raw_ip_is_not_stored(client_with_address: httpx.AsyncClient, db) -> None:
    client = client_with_address
    site = await create_site(client)
    context_ip = "203.0.113.77"
    with_ip = track("Product Viewed", context={"ip": context_ip, "userAgent": FIREFOX, "locale": "de-DE"})
    from_address = track("Product Viewed", context={"userAgent": FIREFOX})
    batch_ip = page()
    ok(await post_batch(client, site, [with_ip, from_address]))
    ok(await post_batch(client, site, [batch_ip], context={"ip": "192.0.2.200"}))

    rows = await db.fetch(
        "SELECT message_id, context, row_to_json(event)::text AS whole FROM event WHERE site_id = $1",
        site["id"],
    )
    assert len(rows) == 3
    by_id = {r["message_id"]: r for r in rows}
    for row in rows:
        context = jsonb(row["context"])
        assert "ip" not in context
        for ip in (context_ip, CLIENT_IP, "192.0.2.200"):
            assert ip not in row["whole"], f"raw IP {ip} stored in {row['whole']}"
    # the rest of the context is kept
    assert jsonb(by_id[with_ip["messageId"]]["context"])["locale"] == "de-DE"


async def test_bots_stored_flagged(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    bot = page(context={"userAgent": GOOGLEBOT, "page": {"url": "https://shop.example/", "path": "/"}})
    human = page(context={"userAgent": FIREFOX, "page": {"url": "https://shop.example/", "path": "/"}})
    assert ok(await post_batch(client, site, [bot, human]))["accepted"] == 2
    flags = {r["message_id"]: r["is_bot"] for r in await events(db, site["id"])}
    assert flags == {bot["messageId"]: True, human["messageId"]: False}


# ---------------------------------------------------------------- clock skew


async def test_clock_skew_corrected_with_batch_sent_at(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    client_clock = now() + timedelta(days=3)  # the device clock is three days fast
    message = track("Product Viewed", timestamp=iso(client_clock))
    body = ok(await post_batch(client, site, [message], sentAt=iso(client_clock + timedelta(hours=1))))
    assert body["accepted"] == 1  # not "in the future" once corrected
    row = await db.fetchrow("SELECT event_at, received_at, sent_at FROM event WHERE site_id = $1", site["id"])
    assert abs(row["received_at"] - now()) < timedelta(seconds=30)
    assert abs(row["event_at"] - (row["received_at"] - timedelta(hours=1))) < timedelta(seconds=2)


async def test_clock_skew_corrected_with_message_sent_at(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    stamp = now() - timedelta(minutes=5)
    message = track("Product Viewed", timestamp=iso(stamp), sentAt=iso(stamp + timedelta(hours=1)))
    ok(await post_batch(client, site, [message]))
    row = await db.fetchrow("SELECT event_at, received_at FROM event WHERE site_id = $1", site["id"])
    assert abs(row["event_at"] - (row["received_at"] - timedelta(hours=1))) < timedelta(seconds=2)


async def test_timestamp_without_sent_at_is_kept(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    stamp = now() - timedelta(days=2, hours=3)
    ok(await post_batch(client, site, [track("Product Viewed", timestamp=iso(stamp))]))
    row = await db.fetchrow("SELECT event_at FROM event WHERE site_id = $1", site["id"])
    assert abs(row["event_at"] - stamp) < timedelta(milliseconds=1)


# ---------------------------------------------------------------- persons and identity


async def person_ids(db: asyncpg.Connection, site_id: int) -> dict[str, str]:
    rows = await db.fetch("SELECT message_id, person_id FROM event WHERE site_id = $1", site_id)
    return {r["message_id"]: r["person_id"] for r in rows}


async def test_identify_after_anonymous_events_links_them(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    anonymous, user = "anon-late-link", "user-42"
    start = now() - timedelta(hours=2)
    browsing = [
        page(anonymousId=anonymous, timestamp=iso(start)),
        track("Product Viewed", anonymousId=anonymous, timestamp=iso(start + timedelta(minutes=1))),
    ]
    ok(await post_batch(client, site, browsing))
    assert set((await person_ids(db, site["id"])).values()) == {f"a:{anonymous}"}

    identify = {
        "type": "identify",
        "anonymousId": anonymous,
        "userId": user,
        "messageId": "ident-late",
        "timestamp": iso(start + timedelta(minutes=5)),
        "traits": {"email": "x@example.com"},
    }
    ok(await post_batch(client, site, [identify]))
    persons = await person_ids(db, site["id"])
    assert len(persons) == 3
    assert set(persons.values()) == {f"u:{user}"}


async def test_identify_first_then_anonymous_events(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    anonymous, user = "anon-early-link", "user-7"
    start = now() - timedelta(hours=1)
    identify = {
        "type": "identify",
        "anonymousId": anonymous,
        "userId": user,
        "messageId": "ident-early",
        "timestamp": iso(start),
    }
    ok(await client.post("/v1/identify", json=identify, headers=basic(site["write_key"])))
    later = [
        page(anonymousId=anonymous, timestamp=iso(start + timedelta(minutes=1))),
        track("Product Added", anonymousId=anonymous, timestamp=iso(start + timedelta(minutes=2))),
    ]
    ok(await post_batch(client, site, later))
    persons = await person_ids(db, site["id"])
    assert len(persons) == 3
    assert set(persons.values()) == {f"u:{user}"}


async def test_alias_links_previous_id(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    anonymous, user = "anon-alias", "user-alias"
    ok(await post_batch(client, site, [page(anonymousId=anonymous)]))
    alias = {"previousId": anonymous, "userId": user, "messageId": "alias-1"}
    ok(await client.post("/v1/alias", json=alias, headers=basic(site["write_key"])))
    ok(await post_batch(client, site, [track("Product Viewed", anonymousId=anonymous)]))
    assert set((await person_ids(db, site["id"])).values()) == {f"u:{user}"}


async def test_other_anonymous_visitors_stay_separate(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    ok(await post_batch(client, site, [page(anonymousId="anon-a"), page(anonymousId="anon-b")]))
    identify = {"type": "identify", "anonymousId": "anon-a", "userId": "user-a", "messageId": "ident-a"}
    ok(await post_batch(client, site, [identify]))
    persons = sorted((await person_ids(db, site["id"])).values())
    assert persons == ["a:anon-b", "u:user-a", "u:user-a"]


async def test_identity_links_do_not_cross_sites(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    other = await create_site(client)
    identify = {"type": "identify", "anonymousId": "shared-anon", "userId": "user-x", "messageId": "ident-x"}
    ok(await post_batch(client, site, [identify]))
    view = page(anonymousId="shared-anon")
    ok(await post_batch(client, other, [view]))
    assert (await person_ids(db, other["id"]))[view["messageId"]] == "a:shared-anon"


async def test_event_with_both_ids_links_them(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    start = now() - timedelta(hours=1)
    anonymous_view = page(anonymousId="anon-both", timestamp=iso(start))
    ok(await post_batch(client, site, [anonymous_view]))
    signup = track(
        "Signed Up", anonymousId="anon-both", userId="user-both", timestamp=iso(start + timedelta(minutes=3))
    )
    ok(await post_batch(client, site, [signup]))
    later = page(anonymousId="anon-both", timestamp=iso(start + timedelta(minutes=9)))
    ok(await post_batch(client, site, [later]))
    assert set((await person_ids(db, site["id"])).values()) == {"u:user-both"}


async def test_earliest_link_by_event_time_wins(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    start = now() - timedelta(hours=3)
    view = page(anonymousId="anon-two", timestamp=iso(start))
    late_link = {
        "type": "identify",
        "anonymousId": "anon-two",
        "userId": "user-late",
        "messageId": "ident-late-link",
        "timestamp": iso(start + timedelta(hours=2)),
    }
    early_link = {
        "type": "identify",
        "anonymousId": "anon-two",
        "userId": "user-early",
        "messageId": "ident-early-link",
        "timestamp": iso(start + timedelta(hours=1)),
    }
    ok(await post_batch(client, site, [view, late_link]))
    assert (await person_ids(db, site["id"]))[view["messageId"]] == "u:user-late"
    ok(await post_batch(client, site, [early_link]))  # arrives later, happened earlier
    persons = await person_ids(db, site["id"])
    assert persons[view["messageId"]] == "u:user-early"
    assert persons["ident-late-link"] == "u:user-late"  # an event with a userId belongs to it
    assert persons["ident-early-link"] == "u:user-early"


async def test_an_order_id_counts_once_across_order_event_names(client: httpx.AsyncClient, db) -> None:
    site = await create_site(client)
    first = track("Order Completed", properties={"order_id": "o-1", "revenue": 10})
    alias = track("purchase", properties={"order_id": "o-1", "revenue": 10})
    refund = track("Order Refunded", properties={"order_id": "o-1", "revenue": 10})  # not an order: kept
    answer = await post_batch(client, site, [first, alias, refund])
    assert (answer.json()["accepted"], answer.json()["duplicates"]) == (3, 0)  # order ids are decided when deriving
    stored = await db.fetch("SELECT event_name, is_order FROM event WHERE site_id = $1 ORDER BY event_name", site["id"])
    assert [tuple(r) for r in stored] == [("Order Completed", True), ("Order Refunded", False)]


async def test_an_order_in_another_currency_is_an_order_without_revenue(client: httpx.AsyncClient, db) -> None:
    """A site in EUR: a USD order is stored and counted as an order, its value is not added to
    revenue (no conversion), and data quality counts it. Money reads the same, to the cent, in
    /v1/kpis (JSON and CSV), /v1/report and /v1/cohorts."""
    site = await create_site(client, currency="eur")
    assert site["currency"] == "EUR"
    person = f"p-{uuid.uuid4().hex[:6]}"
    at = (now() - timedelta(minutes=30)).replace(microsecond=0)
    orders = [
        track("Order Completed", anonymousId=person, timestamp=iso(at + timedelta(minutes=n)),
              properties={"order_id": f"o{n}", "revenue": amount, "currency": currency})
        for n, (amount, currency) in enumerate([(0.1, "EUR"), (0.2, "eur"), (19.99, None), (500.0, "USD")])
    ]  # fmt: skip
    for o in orders:
        if o["properties"]["currency"] is None:
            del o["properties"]["currency"]
    assert ok(await post_batch(client, site, orders))["accepted"] == 4
    day = at.date()
    params = {"from": str(day), "to": str(day + timedelta(days=1)), "granularity": "total", "tz": "UTC"}
    headers = {"Authorization": f"Bearer {site['read_key']}"}
    kpis = (await client.get("/v1/kpis", params=params, headers=headers)).json()["buckets"][0]["kpis"]
    assert (kpis["orders"], kpis["revenue"], kpis["aov"]) == (4, 20.29, 5.07)  # 0.1 + 0.2 + 19.99, exactly
    csv = (await client.get("/v1/kpis", params={**params, "format": "csv"}, headers=headers)).text
    header, row = csv.strip().split("\n")
    assert dict(zip(header.split(","), row.split(","), strict=True))["revenue"] == "20.29"
    assert (await quality_total(client, site))["other_currency_orders"] == 1
    month = {"from": str(day.replace(day=1)), "to": str(day + timedelta(days=1)), "tz": "UTC"}
    cohorts = (await client.get("/v1/cohorts", params=month, headers=headers)).json()
    assert next(c for c in cohorts["cohorts"] if c["customers"])["months"][0]["revenue"] == 20.29
