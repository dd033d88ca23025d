"""The bulk demo loader (COPY) stores exactly what live ingestion stores for the same messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from app.demo import Profile, generate_messages, load_demo
from tests.conftest import create_site

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)
FACTS = """SELECT message_id, person_id, stage, goal, value, is_lead, is_order, is_first_event, is_first_order,
                  is_repeat_order, session_key, is_bot, channel, device FROM event WHERE site_id = $1"""
SESSIONS = """SELECT session_key, person_id, started_at, ended_at, event_count, is_bounce, channel, device
              FROM session WHERE site_id = $1"""
STATES = "SELECT person_id, orders, revenue, leads, first_seen_at, last_event_at FROM person_state WHERE site_id = $1"


async def _snapshot(db: asyncpg.Connection, site_id: int) -> dict[str, Any]:
    return {name: sorted(tuple(r) for r in await db.fetch(sql, site_id))
            for name, sql in (("events", FACTS), ("sessions", SESSIONS), ("states", STATES))}  # fmt: skip


async def test_bulk_load_equals_live_ingestion(client: httpx.AsyncClient, db: asyncpg.Connection,
                                               database_url: str) -> None:  # fmt: skip
    loaded = await load_demo(database_url, persons=150, days=20, seed=3, now=NOW, profile=Profile.DENSE)
    messages = generate_messages(150, 20, NOW - timedelta(days=20), seed=3, profile=Profile.DENSE)
    site = await create_site(client)
    for offset in range(0, len(messages), 300):
        answer = await client.post("/v1/batch", json={"batch": messages[offset : offset + 300]},
                                   auth=(site["write_key"], ""))  # fmt: skip
        assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    bulk, live = await _snapshot(db, loaded["site"]), await _snapshot(db, site["id"])
    assert len(bulk["events"]) == len(messages) == loaded["events"]
    assert bulk == live
    retried = await client.post("/v1/batch", json={"batch": messages[:5]}, auth=(loaded["write_key"], ""))
    assert retried.json()["duplicates"] == 5  # the bulk loader filled the dedupe ledger too


async def test_bulk_load_of_the_realistic_mix_equals_live_ingestion(
    client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    loaded = await load_demo(database_url, persons=400, days=10, seed=4, now=NOW)
    messages = generate_messages(400, 10, NOW - timedelta(days=10), seed=4, profile=Profile.REALISTIC)
    site = await create_site(client)
    for offset in range(0, len(messages), 300):
        answer = await client.post("/v1/batch", json={"batch": messages[offset : offset + 300]},
                                   auth=(site["write_key"], ""))  # fmt: skip
        assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    bulk, live = await _snapshot(db, loaded["site"]), await _snapshot(db, site["id"])
    assert len(bulk["events"]) == len(messages) == loaded["events"] and bulk == live
