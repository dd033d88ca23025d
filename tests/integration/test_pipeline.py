"""The pipeline's own properties: a batch of thousands of distinct visitors is one short
acknowledgement (no per-person locks), and the inbox's drained partitions are dropped whole (no
reliance on vacuum)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from app.pipeline.partitions import rotate_partitions
from app.store import inbox
from tests.conftest import create_site, drain


async def test_a_batch_of_5000_distinct_visitors_is_accepted_and_derived(
    client: httpx.AsyncClient, db: Any
) -> None:
    site = await create_site(client)
    batch = [{"type": "page", "anonymousId": f"v{n}", "messageId": f"m{n}", "timestamp": "2026-05-01T10:00:00Z"}
             for n in range(5000)]  # fmt: skip
    answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 5000
    kpis = await client.get(
        "/v1/kpis", params={"from": "2026-05-01", "to": "2026-05-02", "granularity": "total", "tz": "UTC"},
        headers={"Authorization": f"Bearer {site['read_key']}"},
    )  # fmt: skip
    assert kpis.json()["buckets"][0]["kpis"]["visitors"] == 5000
    assert await db.fetchval("SELECT count(*) FROM person_state WHERE site_id = $1", site["id"]) == 5000


async def test_drained_partitions_are_dropped_and_new_ones_made_ahead(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await drain()
        current = int(await conn.fetchval("SELECT last_value FROM event_event_id_seq"))
        first = current // inbox.PARTITION_SIZE
        # ids move on past the current partition (as a million events would take them)
        await conn.execute("SELECT setval('event_event_id_seq', $1)", (first + 1) * inbox.PARTITION_SIZE + 5)
        made, dropped = await rotate_partitions(conn)
        names = {r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'inbox'::regclass")}  # fmt: skip
    finally:
        await conn.close()
    assert dropped >= 1 and f"inbox_p{first}" not in names  # drained and behind every id: gone
    assert made >= 1 and {f"inbox_p{first + k}" for k in (1, 2, 3)} <= names
