"""Other trackers' wire formats against the real app and PostgreSQL (DESIGN §2).

The SDK tests replay the raw requests real SDKs sent to a recorder (tests/fixtures/sdk/*.json, made
by tests/fixtures/record_sdk_requests.py), with a fresh site's write key swapped in for the
recorder's, and check what the `event` table holds. The analytics.js short paths and the posthog-js
body variants are hand-written from those libraries' request shapes (no browser here to record them).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import httpx
import pytest

from tests.conftest import create_site

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk"
ANON, USER, OTHER_DEVICE, SESSION = "rec-anon-1", "rec-user-1", "rec-device-2", "rec-session-1"
ORDER_ID, REVENUE = "rec-order-1", 99.5
SLACK = timedelta(minutes=2)


# ---------------------------------------------------------------- helpers


def fixture(sdk: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{sdk}.json").read_text())
    return document


def decoded_body(recorded: dict[str, Any]) -> bytes:
    body = base64.b64decode(recorded["body"])
    return gzip.decompress(body) if recorded["headers"].get("content-encoding") == "gzip" else body


def recorded_json(recorded: dict[str, Any]) -> Any:
    return json.loads(decoded_body(recorded))


async def replay(
    client: httpx.AsyncClient, recorded: dict[str, Any], recorded_key: str, write_key: str
) -> httpx.Response:
    """Send one recorded request as the SDK sent it, with `write_key` wherever the recorder's key was."""
    headers = dict(recorded["headers"])
    auth = headers.get("authorization", "")
    if auth.startswith("Basic "):
        user = base64.b64decode(auth[6:]).decode()
        assert user.startswith(recorded_key)
        headers["authorization"] = "Basic " + base64.b64encode(user.replace(recorded_key, write_key).encode()).decode()
    body = decoded_body(recorded).replace(recorded_key.encode(), write_key.encode())
    if headers.get("content-encoding") == "gzip":
        body = gzip.compress(body)
    query = urlencode([(k, v.replace(recorded_key, write_key)) for k, v in parse_qsl(recorded["query"])])
    url = recorded["path"] + (f"?{query}" if query else "")
    return await client.request(recorded["method"], url, content=body or None, headers=headers)


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["success"] is True
    return body


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert isinstance(body.get("code"), str) and body["code"]
    assert isinstance(body.get("message"), str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def jsonb(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def stored(db: asyncpg.Connection, site_id: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT message_id, type, event_name, name, anonymous_id, user_id, person_id, event_at, sent_at,
                  properties, traits, context, campaign, channel, session_hint, is_order, value
           FROM event WHERE site_id = $1 ORDER BY event_at, message_id""",
        site_id,
    )
    out = []
    for row in rows:
        record = dict(row)
        for column in ("properties", "traits", "context", "campaign"):
            record[column] = jsonb(record[column])
        out.append(record)
    return out


def only(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, [(r["type"], r["event_name"], r["name"]) for r in rows])
    return found[0]


def near(moment: datetime, expected: datetime) -> bool:
    return abs(moment - expected) < SLACK


def from_ms(value: str | int) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


async def replay_all(client: httpx.AsyncClient, sdk: str, site: dict[str, Any], method: str | None = None) -> list[Any]:
    document = fixture(sdk)
    answers = []
    for recorded in document["requests"]:
        if method is None or recorded["method"] == method:
            answers.append(await replay(client, recorded, document["write_key"], site["write_key"]))
    return answers


async def assert_replay_is_idempotent(
    client: httpx.AsyncClient, db: asyncpg.Connection, sdk: str, site: dict[str, Any], method: str | None = None
) -> None:
    before = await stored(db, site["id"])
    for answer in await replay_all(client, sdk, site, method):
        assert answer.status_code == 200, answer.text
        if answer.headers["content-type"].startswith("application/json"):
            assert answer.json()["accepted"] == 0
    assert await stored(db, site["id"]) == before


# ---------------------------------------------------------------- recorded SDK requests


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_segment_protocol_sdks(client: httpx.AsyncClient, site: dict[str, Any], db, sdk: str) -> None:
    document = fixture(sdk)
    (recorded,) = document["requests"]
    assert recorded["path"] == "/v1/batch"
    if sdk == "rudderstack":
        assert recorded["headers"]["content-encoding"] == "gzip"
    sent = recorded_json(recorded)
    (answer,) = await replay_all(client, sdk, site)
    assert ok(answer) == {"success": True, "accepted": 6, "duplicates": 0, "rejected": []}

    rows = await stored(db, site["id"])
    assert {r["message_id"] for r in rows} == {m["messageId"] for m in sent["batch"]}
    assert {r["person_id"] for r in rows} == {f"u:{USER}"}  # identify and alias merged every id

    page = only(rows, type="page")
    assert page["name"] == "Products" and page["anonymous_id"] == ANON and page["user_id"] is None
    assert page["context"]["sessionId"] == SESSION and page["session_hint"] == SESSION
    assert page["channel"] == "Organic Search"  # referred by google
    sent_page = only(sent["batch"], type="page")
    skew = datetime.fromisoformat(sent["sentAt"]) - datetime.fromisoformat(sent_page["timestamp"])
    assert skew > timedelta(minutes=59)
    assert near(page["event_at"], datetime.now(UTC) - skew)  # receivedAt - (sentAt - timestamp)

    assert only(rows, type="screen")["name"] == "Catalog"
    added = only(rows, event_name="Product Added")
    assert added["anonymous_id"] == ANON and added["properties"]["sku"] == "sku-1"

    identify = only(rows, type="identify")
    assert (identify["anonymous_id"], identify["user_id"]) == (ANON, USER)
    assert identify["traits"]["email"] == "ada@example.com"  # RudderStack sends them in context.traits

    order = only(rows, event_name="Order Completed")
    assert order["user_id"] == USER and order["is_order"] is True
    assert order["properties"]["order_id"] == ORDER_ID and order["properties"]["revenue"] == REVENUE
    assert order["value"] == REVENUE

    alias = only(rows, type="alias")
    assert (alias["anonymous_id"], alias["user_id"]) == (OTHER_DEVICE, USER)
    await assert_replay_is_idempotent(client, db, sdk, site)


async def test_posthog_python_sdk(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    document = fixture("posthog")
    (recorded,) = document["requests"]
    assert (recorded["path"], recorded["headers"]["content-encoding"]) == ("/batch/", "gzip")
    sent = recorded_json(recorded)
    assert sent["api_key"] == document["write_key"]
    (answer,) = await replay_all(client, "posthog", site)
    events = sent["batch"]
    # one message per event, plus the alias that makes an identified distinct_id a person id
    assert ok(answer) == {"success": True, "accepted": len(events) + 1, "duplicates": 0, "rejected": []}

    rows = await stored(db, site["id"])
    by_uuid = {e["uuid"]: e for e in events}
    assert {r["message_id"] for r in rows} - set(by_uuid) == {f"{only(events, event='$identify')['uuid']}:identified"}
    assert {r["person_id"] for r in rows} == {f"u:{USER}"}

    page = only(rows, type="page")
    assert page["name"] == "Products" and page["anonymous_id"] == ANON
    assert page["context"]["page"]["path"] == "/products"
    assert page["context"]["page"]["referrer"] == "https://www.google.com/"
    assert page["context"]["sessionId"] == SESSION
    assert page["context"]["userAgent"].startswith("Mozilla/5.0")
    assert page["campaign"] == {"source": "newsletter", "medium": "email", "name": "spring"}
    assert page["channel"] == "Email"
    sent_page = by_uuid[page["message_id"]]
    skew = datetime.fromisoformat(sent["sent_at"]) - datetime.fromisoformat(sent_page["timestamp"])
    assert skew > timedelta(minutes=59)
    assert near(page["event_at"], datetime.now(UTC) - skew)

    assert only(rows, type="screen")["name"] == "Catalog"
    added = only(rows, event_name="Product Added")
    assert added["anonymous_id"] == ANON and added["session_hint"] == SESSION

    identify = only(rows, event_name=None, type="identify", anonymous_id=ANON)
    assert identify["user_id"] == USER and identify["traits"] == {"email": "ada@example.com", "name": "Ada"}
    assert only(rows, type="identify", anonymous_id=USER)["traits"] == {"plan": "pro"}  # $set

    order = only(rows, event_name="Order Completed")
    # a server SDK's event carries the user's id as a plain distinct_id: it resolves through the link
    assert (order["anonymous_id"], order["user_id"]) == (USER, None)
    assert order["properties"]["order_id"] == ORDER_ID and order["properties"]["revenue"] == REVENUE
    assert order["is_order"] is True and order["context"]["sessionId"] == SESSION

    alias = only(rows, type="alias", anonymous_id=OTHER_DEVICE)
    assert alias["user_id"] == USER
    await assert_replay_is_idempotent(client, db, "posthog", site)


def snowplow_events(method: str) -> list[dict[str, Any]]:
    document = fixture("snowplow")
    if method == "POST":
        return [e for r in document["requests"] if r["method"] == "POST" for e in recorded_json(r)["data"]]
    return [dict(parse_qsl(r["query"])) for r in document["requests"] if r["method"] == "GET"]


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_snowplow_tracker(client: httpx.AsyncClient, site: dict[str, Any], db, method: str) -> None:
    sent = snowplow_events(method)
    assert {e["e"] for e in sent} == {"pv", "ue", "se", "pp", "tr", "ti"}
    answers = await replay_all(client, "snowplow", site, method)
    if method == "POST":
        (answer,) = answers
        assert ok(answer) == {"success": True, "accepted": len(sent) - 1, "duplicates": 0, "rejected": []}
    else:
        assert len(answers) == len(sent)
        for answer in answers:
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
            assert answer.content.startswith(b"GIF89a") and "no-cache" in answer.headers["cache-control"]

    rows = await stored(db, site["id"])
    assert {r["message_id"] for r in rows} == {e["eid"] for e in sent if e["e"] != "pp"}  # pings are not kept
    assert {r["person_id"] for r in rows} == {f"u:{USER}"}
    assert {r["session_hint"] for r in rows} == {SESSION}

    page = only(rows, type="page")
    sent_page = only(sent, e="pv")
    assert page["event_at"] == from_ms(sent_page["ttm"])  # the true timestamp is taken as is
    assert page["name"] == "Products" and page["anonymous_id"] == ANON
    assert page["context"]["page"]["path"] == "/products"
    assert page["campaign"] == {"source": "newsletter", "medium": "email", "name": "spring"}
    assert page["context"]["userAgent"].startswith("Mozilla/5.0")
    by_eid = {e["eid"]: e for e in sent}
    for row in rows:
        event = by_eid[row["message_id"]]
        if "ttm" in event:  # set by the app (the page view, the transaction's items): as is
            assert row["event_at"] == from_ms(event["ttm"])
        else:  # the device's clock, corrected by its send time
            skew = from_ms(event["stm"]) - from_ms(event["dtm"])
            assert near(row["event_at"], datetime.now(UTC) - skew)

    assert only(rows, type="screen")["name"] == "Catalog"
    added = [r for r in rows if r["event_name"] == "Product Added"]
    assert sorted(r["properties"].get("sku") or r["properties"].get("label") for r in added) == ["sku-1", "sku-2"]
    assert all((r["anonymous_id"], r["user_id"]) == (ANON, None) for r in added)  # before the login

    login = only(rows, event_name="login")
    assert (login["anonymous_id"], login["user_id"]) == (ANON, USER)

    order = only(rows, event_name="Order Completed")
    assert order["properties"]["order_id"] == ORDER_ID
    assert order["properties"]["revenue"] == REVENUE  # "99.5" on the wire
    assert order["is_order"] is True and order["value"] == REVENUE
    items = [r for r in rows if r["event_name"] == "Transaction Item"]
    assert sorted((r["properties"]["sku"], r["properties"]["quantity"]) for r in items) == [("sku-1", 1), ("sku-2", 2)]
    assert all(r["properties"]["transaction_id"] == ORDER_ID and not r["is_order"] for r in items)
    assert only(rows, event_name="link_click")["properties"]["targetUrl"] == "https://shop.example/help"
    await assert_replay_is_idempotent(client, db, "snowplow", site, method)


# ---------------------------------------------------------------- analytics.js short paths


def ajs(kind: str, write_key: str, **fields: Any) -> dict[str, Any]:
    """A message as analytics.js (analytics-next) sends it: writeKey inside, userId null, _metadata."""
    message: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(),
        "integrations": {},
        "type": kind,
        "messageId": f"ajs-next-{uuid.uuid4().hex}",
        "anonymousId": f"anon-{uuid.uuid4().hex[:8]}",
        "userId": None,
        "context": {
            "page": {"path": "/", "url": "https://shop.example/", "referrer": "", "title": "Shop"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
        },
        "writeKey": write_key,
        "sentAt": datetime.now(UTC).isoformat(),
        "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
    }
    message.update(fields)
    return message


TEXT_PLAIN = {"Content-Type": "text/plain"}


@pytest.mark.parametrize(
    ("letter", "kind", "fields"),
    [
        ("t", "track", {"event": "Product Added", "properties": {"sku": "A"}}),
        ("p", "page", {"name": "Home", "properties": {"path": "/"}}),
        ("i", "identify", {"userId": "u-1", "traits": {"email": "a@b.c"}}),
        ("a", "alias", {"previousId": "anon-x", "userId": "u-1"}),
        ("s", "screen", {"name": "Catalog"}),
        ("g", "group", {"groupId": "acme", "traits": {"plan": "pro"}}),
    ],
)
async def test_analytics_js_single_short_paths(
    client: httpx.AsyncClient, site: dict[str, Any], db, letter: str, kind: str, fields: dict[str, Any]
) -> None:
    message = ajs(kind, site["write_key"], **fields)
    answer = await client.post(f"/v1/{letter}", content=json.dumps(message), headers=TEXT_PLAIN)
    assert ok(answer) == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    (row,) = await stored(db, site["id"])
    assert (row["message_id"], row["type"]) == (message["messageId"], kind)
    again = await client.post(f"/v1/{letter}", content=json.dumps(message), headers=TEXT_PLAIN)
    assert ok(again)["duplicates"] == 1


async def test_analytics_js_short_path_rejection_is_400(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    message = ajs("track", site["write_key"])  # a track without an event name
    assert_error(await client.post("/v1/t", content=json.dumps(message), headers=TEXT_PLAIN), 400, "missing_event")


async def test_analytics_js_batch_with_write_key_in_each_message(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    batch = [ajs("page", site["write_key"], name="Home"), ajs("track", site["write_key"], event="Signed Up")]
    body = {"batch": batch, "sentAt": datetime.now(UTC).isoformat()}  # analytics-next's /b body
    answer = await client.post("/v1/b", content=json.dumps(body), headers=TEXT_PLAIN)
    assert ok(answer) == {"success": True, "accepted": 2, "duplicates": 0, "rejected": []}
    rows = await stored(db, site["id"])
    assert {r["message_id"] for r in rows} == {m["messageId"] for m in batch}
    assert all("writeKey" not in json.dumps(r["properties"]) for r in rows)


async def test_analytics_js_batch_with_write_key_at_top_and_a_bad_message(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    good = ajs("track", site["write_key"], event="Signed Up")
    bad = ajs("track", site["write_key"])
    body = {"batch": [bad, good], "writeKey": site["write_key"], "sentAt": datetime.now(UTC).isoformat()}
    answer = ok(await client.post("/v1/b", content=json.dumps(body), headers=TEXT_PLAIN))
    assert answer["accepted"] == 1
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(0, "missing_event")]


async def test_analytics_js_batch_needs_a_known_key(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    body = {"batch": [ajs("track", "no-such-key", event="Signed Up")]}
    assert_error(await client.post("/v1/b", content=json.dumps(body), headers=TEXT_PLAIN), 401, "invalid_write_key")
    assert_error(await client.post("/v1/b", content=b"{nope", headers=TEXT_PLAIN), 400, "malformed_json")
    assert_error(await client.post("/v1/b", content=b'{"batch": 3}', headers=TEXT_PLAIN), 400, "invalid_batch")


# ---------------------------------------------------------------- PostHog variants


def posthog_event(token: str, event: str = "Signed Up", **properties: Any) -> dict[str, Any]:
    """As posthog-js sends it: token in properties, $is_identified, $device_id, $session_id."""
    anonymous = f"0190{uuid.uuid4().hex[:28]}"
    return {
        "uuid": str(uuid.uuid4()),
        "event": event,
        "properties": {
            "token": token,
            "distinct_id": anonymous,
            "$device_id": anonymous,
            "$session_id": "s-1",
            "$is_identified": False,
            "$current_url": "https://shop.example/pricing",
            "$pathname": "/pricing",
            "$referrer": "$direct",
            "$lib": "web",
            **properties,
        },
        "timestamp": datetime.now(UTC).isoformat(),
    }


@pytest.mark.parametrize("path", ["/batch", "/batch/", "/i/v0/e", "/i/v0/e/", "/e", "/e/", "/capture", "/capture/"])
async def test_posthog_paths_with_and_without_slash(
    client: httpx.AsyncClient, site: dict[str, Any], db, path: str
) -> None:
    event = posthog_event(site["write_key"])
    answer = await client.post(path, json={"api_key": site["write_key"], "batch": [event]})
    assert ok(answer)["accepted"] == 1
    (row,) = await stored(db, site["id"])
    assert (row["message_id"], row["event_name"]) == (event["uuid"], "Signed Up")
    assert row["anonymous_id"] == event["properties"]["distinct_id"] and row["user_id"] is None
    assert row["context"]["page"] == {"url": "https://shop.example/pricing", "path": "/pricing"}  # $direct


async def test_posthog_js_gzip_js_body_list_and_identified_events(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    anonymous = posthog_event(site["write_key"], "$pageview", title="Pricing")
    device = anonymous["properties"]["$device_id"]
    identify = posthog_event(site["write_key"], "$identify", **{"$anon_distinct_id": device, "$set": {"plan": "pro"}})
    identify["properties"]["distinct_id"] = "user-42"
    later = posthog_event(site["write_key"], "Order Completed", order_id="o-42", revenue="120.00")
    later["properties"].update({"distinct_id": "user-42", "$device_id": device, "$is_identified": True})
    sent_ms = int(datetime.now(UTC).timestamp() * 1000)
    answer = await client.post(
        f"/e/?ip=1&_={sent_ms}&ver=1.200.0&compression=gzip-js",
        content=gzip.compress(json.dumps([anonymous, identify, later]).encode()),
        headers={"Content-Type": "text/plain"},
    )
    assert ok(answer)["accepted"] == 4  # the $identify also links user-42 to itself
    rows = await stored(db, site["id"])
    assert {r["person_id"] for r in rows} == {"u:user-42"}
    order = only(rows, event_name="Order Completed")
    assert (order["user_id"], order["anonymous_id"]) == ("user-42", device)
    assert order["value"] == 120.0
    assert only(rows, type="page")["name"] == "Pricing"


async def test_posthog_js_form_body_and_single_event(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    event = posthog_event(site["write_key"])
    data = base64.b64encode(json.dumps(event).encode()).decode()
    answer = await client.post(
        "/i/v0/e/?compression=base64",
        content=urlencode({"data": data}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok(answer)["accepted"] == 1
    assert (await stored(db, site["id"]))[0]["message_id"] == event["uuid"]


async def test_posthog_events_for_two_projects_land_in_their_sites(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    other = await create_site(client)
    mine, theirs = posthog_event(site["write_key"]), posthog_event(other["write_key"])
    bad = posthog_event(other["write_key"], event="")
    answer = ok(await client.post("/batch/", json={"batch": [mine, bad, theirs]}))
    assert answer["accepted"] == 2
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(1, "missing_event")]
    assert [r["message_id"] for r in await stored(db, site["id"])] == [mine["uuid"]]
    assert [r["message_id"] for r in await stored(db, other["id"])] == [theirs["uuid"]]


async def test_posthog_unknown_key_writes_nothing(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    body = {"batch": [posthog_event(site["write_key"]), posthog_event("phc_unknown")]}
    assert_error(await client.post("/batch/", json=body), 401, "invalid_write_key")
    assert await stored(db, site["id"]) == []
    assert_error(await client.post("/batch/", json={"batch": [{"event": "x", "distinct_id": "d"}]}), 401)
    assert_error(await client.post("/batch/", json={"nothing": True}), 400, "invalid_batch")
    assert_error(await client.post("/e/?compression=lz64", content=b"abc"), 400, "unsupported_encoding")


async def test_posthog_ip_is_not_stored(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    event = posthog_event(site["write_key"], **{"$ip": "203.0.113.7"})
    ok(await client.post("/batch/", json={"batch": [event]}))
    (row,) = await stored(db, site["id"])
    assert "203.0.113.7" not in json.dumps([row["properties"], row["context"], row["traits"]])


# ---------------------------------------------------------------- Snowplow variants


def snowplow_event(app_id: str, **fields: str) -> dict[str, str]:
    return {
        "e": "se",
        "se_ca": "shop",
        "se_ac": "add_to_cart",
        "eid": str(uuid.uuid4()),
        "duid": f"duid-{uuid.uuid4().hex[:8]}",
        "dtm": str(int(datetime.now(UTC).timestamp() * 1000)),
        "stm": str(int(datetime.now(UTC).timestamp() * 1000)),
        "aid": app_id,
        "tv": "js-3.24.0",
        "p": "web",
        **fields,
    }


def tp2(*events: dict[str, str]) -> dict[str, Any]:
    return {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": list(events)}


async def test_snowplow_query_write_key_wins_over_app_id(client: httpx.AsyncClient, site: dict[str, Any], db) -> None:
    event = snowplow_event("web-shop")  # an app id that is not a write key
    answer = await client.post(
        "/com.snowplowanalytics.snowplow/tp2", params={"writeKey": site["write_key"]}, json=tp2(event)
    )
    assert ok(answer)["accepted"] == 1
    (row,) = await stored(db, site["id"])
    assert (row["message_id"], row["event_name"]) == (event["eid"], "Product Added")


async def test_snowplow_unknown_app_id_is_401(client: httpx.AsyncClient, site: dict[str, Any]) -> None:
    answer = await client.post("/com.snowplowanalytics.snowplow/tp2", json=tp2(snowplow_event("web-shop")))
    assert_error(answer, 401, "invalid_write_key")
    pixel = await client.get("/i", params=snowplow_event("web-shop"))
    assert pixel.status_code == 401 and pixel.headers["content-type"] == "image/gif"
    assert pixel.headers["x-racetrack-error"] == "invalid_write_key"


async def test_snowplow_bad_event_is_kept_and_its_neighbours_stored(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    good = snowplow_event(site["write_key"])
    broken = snowplow_event(site["write_key"], e="ue", ue_px="!!!not-base64!!!")
    answer = ok(await client.post("/com.snowplowanalytics.snowplow/tp2", json=tp2(broken, good)))
    assert answer["accepted"] == 1
    assert [(r["index"], r["messageId"]) for r in answer["rejected"]] == [(0, broken["eid"])]
    failed = await db.fetch("SELECT * FROM failed_event WHERE site_id = $1", site["id"])
    assert len(failed) == 1 and "not-base64" in str(dict(failed[0]))
    assert_error(await client.post("/com.snowplowanalytics.snowplow/tp2", json={"data": 1}), 400, "invalid_batch")


async def test_snowplow_get_page_ping_is_answered_and_not_stored(
    client: httpx.AsyncClient, site: dict[str, Any], db
) -> None:
    answer = await client.get("/i", params=snowplow_event(site["write_key"], e="pp"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert await stored(db, site["id"]) == []
