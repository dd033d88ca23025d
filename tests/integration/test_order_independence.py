"""Stored stages, goals, person facts and KPIs are a function of the *set* of events: the same in
time order, reversed, shuffled, from two concurrent writer processes, and with duplicates mixed in."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.main import create_app
from tests.conftest import create_site

BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KINDS = ["page", "view", "cart", "purchase", "signup", "identify", "review"]


@st.composite
def journeys(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few persons' messages: anonymous browsing, guest checkouts, identifies, repeat orders."""
    messages: list[dict[str, Any]] = []
    for person in range(draw(st.integers(1, 3))):
        user = f"u{person}" if draw(st.booleans()) else None
        anon = f"a{person}"
        for n in range(draw(st.integers(1, 7))):
            kind = draw(st.sampled_from(KINDS))
            minute = draw(st.integers(0, 3 * 24 * 60))
            known = user if (user and draw(st.booleans())) else None
            msg: dict[str, Any] = {
                "messageId": f"{anon}-{n}",
                "anonymousId": anon,
                "timestamp": (BASE + timedelta(minutes=minute)).isoformat(),
            }
            if kind == "page":
                msg |= {"type": "page", "name": "Home"}
            elif kind == "identify":
                if not user:
                    continue
                msg |= {"type": "identify", "userId": user}
            else:
                name = {
                    "view": "Product Viewed",
                    "cart": "Product Added",
                    "purchase": "Order Completed",
                    "signup": "Signed Up",
                    "review": "Product Reviewed",
                }[kind]
                msg |= {"type": "track", "event": name, "properties": {}}
                if kind == "purchase":
                    msg["properties"] = {"order_id": f"{anon}-o{n}", "revenue": draw(st.integers(1, 300))}
            if known and kind != "identify":
                msg["userId"] = known
            if draw(st.integers(0, 3)) == 0:
                msg["context"] = {"sessionId": f"s-{anon}-{draw(st.integers(0, 1))}"}
            messages.append(msg)
    return messages


@pytest.fixture
async def two_workers(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances (two writers, two pools) on one database, like `serve --workers 2`."""
    async with LifespanManager(create_app(settings)) as one, LifespanManager(create_app(settings)) as two:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://w") for m in (one, two)]
        async with clients[0] as first, clients[1] as second:
            yield first, second


async def _send(client: httpx.AsyncClient, key: str, batch: list[dict[str, Any]]) -> None:
    answer = await client.post("/v1/batch", json={"batch": batch}, auth=(key, ""))
    assert answer.status_code == 200, answer.text
    assert not answer.json()["rejected"], answer.text


async def _state(db: asyncpg.Connection, client: httpx.AsyncClient, site: dict[str, Any]) -> dict[str, Any]:
    rows = await db.fetch(
        """SELECT message_id, person_id, stage, goal, is_lead, is_order, is_first_event, is_first_order,
                  is_repeat_order, session_key FROM event WHERE site_id = $1 ORDER BY message_id""",
        site["id"],
    )
    kpis = {}
    for granularity in ("day", "total"):
        answer = await client.get(
            "/v1/kpis",
            params={"from": "2026-02-28", "to": "2026-03-06", "granularity": granularity, "tz": "UTC"},
            headers={"Authorization": f"Bearer {site['read_key']}"},
        )
        kpis[granularity] = [b["kpis"] for b in answer.json()["buckets"]]
    return {"events": [tuple(r) for r in rows], "kpis": kpis}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=journeys(), seed=st.integers(0, 2**16))
async def test_facts_and_kpis_do_not_depend_on_arrival_order(
    messages: list[dict[str, Any]],
    seed: int,
    two_workers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    db: asyncpg.Connection,
) -> None:
    assume(messages)
    first, second = two_workers
    rng = random.Random(seed)
    in_time = sorted(messages, key=lambda m: (m["timestamp"], m["messageId"]))
    shuffled = rng.sample(messages, len(messages))
    with_duplicates = shuffled + rng.sample(messages, min(len(messages), len(messages) // 2 + 1))
    states = []
    for name, order in (("time", in_time), ("reversed", in_time[::-1]), ("shuffled", shuffled)):
        site = await create_site(first)
        for message in order:  # one message per request: every arrival order is real
            await _send(first, site["write_key"], [message])
        states.append((name, await _state(db, first, site)))
    site = await create_site(first)
    chunks = [with_duplicates[i::4] for i in range(4)]
    await asyncio.gather(*(_send((first, second)[i % 2], site["write_key"], c) for i, c in enumerate(chunks)))
    states.append(("concurrent with duplicates", await _state(db, first, site)))
    reference_name, reference = states[0]
    assert len(reference["events"]) == len(messages)
    for name, state in states[1:]:
        assert state == reference, f"{name} differs from {reference_name}"


async def test_late_earlier_purchase_turns_the_later_into_a_repeat(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    site = await create_site(client)
    later = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u",
        "messageId": "late",
        "timestamp": "2026-03-02T10:00:00Z",
        "properties": {"order_id": "o2", "revenue": 20},
    }
    earlier = {
        **later,
        "messageId": "early",
        "timestamp": "2026-03-01T10:00:00Z",
        "properties": {"order_id": "o1", "revenue": 10},
    }
    await _send(client, site["write_key"], [later])
    assert await db.fetchval("SELECT goal FROM event WHERE site_id = $1", site["id"]) == "purchase"
    await _send(client, site["write_key"], [earlier])
    rows = dict(await db.fetch("SELECT message_id, goal FROM event WHERE site_id = $1", site["id"]))
    assert rows == {"early": "purchase", "late": "repeat_purchase"}


async def test_identify_arriving_last_claims_guest_checkout(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    site = await create_site(client)
    guest = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon",
        "messageId": "guest",
        "timestamp": "2026-03-01T10:00:00Z",
        "properties": {"order_id": "g1", "revenue": 10},
    }
    member = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u",
        "messageId": "member",
        "timestamp": "2026-03-03T10:00:00Z",
        "properties": {"order_id": "m1", "revenue": 30},
    }
    identify = {
        "type": "identify",
        "anonymousId": "anon",
        "userId": "u",
        "messageId": "id",
        "timestamp": "2026-03-02T10:00:00Z",
    }
    await _send(client, site["write_key"], [guest, member])
    before = dict(await db.fetch("SELECT message_id, goal FROM event WHERE site_id = $1", site["id"]))
    assert before == {"guest": "purchase", "member": "purchase"}  # two persons until the link arrives
    await _send(client, site["write_key"], [identify])
    rows = {
        r["message_id"]: (r["person_id"], r["goal"])
        for r in await db.fetch("SELECT message_id, person_id, goal FROM event WHERE site_id = $1", site["id"])
    }
    assert rows == {"guest": ("u:u", "purchase"), "member": ("u:u", "repeat_purchase"), "id": ("u:u", None)}
