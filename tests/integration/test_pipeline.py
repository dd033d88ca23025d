"""The pipeline's own properties: a batch of thousands of distinct visitors is one short
acknowledgement (no per-person locks), and the inbox's drained partitions are dropped whole (no
reliance on vacuum)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from app.pipeline.partitions import rotate_partitions
from app.store import inbox, locks
from app.store.database import _init_connection, asyncpg_dsn
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


def _incoming(message_id: str) -> Any:
    from datetime import UTC, datetime

    from app.domain.normalize import IncomingEvent, Receipt, normalize

    event = normalize({"type": "page", "anonymousId": f"a-{message_id}", "messageId": message_id},
                      Receipt(received_at=datetime.now(UTC)))  # fmt: skip
    assert isinstance(event, IncomingEvent)
    return event


async def test_lookups_start_past_derived_rows_and_a_flush_under_way_is_never_skipped(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """scan_from moves past what derivation deleted, but never past a flush still under way (it
    holds ids it has not committed): that row is derived once it commits."""
    from datetime import UTC, datetime

    site = await create_site(client)
    pending = await asyncpg.connect(asyncpg_dsn(database_url))
    other = await asyncpg.connect(asyncpg_dsn(database_url))
    await _init_connection(pending)
    await _init_connection(other)
    scan_from = "SELECT scan_from FROM pipeline_watermark WHERE site_id = $1"
    try:
        assert await inbox.store_flush(other, site["id"], [_incoming("first")], [], 1, 1, datetime.now(UTC))
        await drain()
        settled = int(await other.fetchval("SELECT last_value FROM event_event_id_seq"))
        assert await other.fetchval(scan_from, site["id"]) == settled + 1  # past every derived row

        under_way = pending.transaction()
        await under_way.start()  # a flush that has taken its id and not committed yet
        # (another writer: its own counter shard, as every writer has)
        assert await inbox.store_flush(pending, site["id"], [_incoming("late")], [], 1, 2, datetime.now(UTC))
        late_id = int(await pending.fetchval("SELECT max(inbox_id) FROM inbox WHERE site_id = $1", site["id"]))
        assert await inbox.store_flush(other, site["id"], [_incoming("later")], [], 1, 1, datetime.now(UTC))
        await drain()  # derives "later"; must not move scan_from past "late"
        assert await other.fetchval(scan_from, site["id"]) <= late_id
        await under_way.commit()
        await drain()
        derived = await other.fetch("SELECT message_id FROM event WHERE site_id = $1", site["id"])
        assert {r["message_id"] for r in derived} == {"first", "late", "later"}
        assert await other.fetchval("SELECT count(*) FROM inbox WHERE site_id = $1", site["id"]) == 0
    finally:
        await pending.close()
        await other.close()


async def test_workers_starting_together_rotate_partitions_one_at_a_time(database_url: str) -> None:
    """Every worker rotates at start-up: while one holds the rotation, another skips its round (it
    used to find a partition the first had just dropped, and failed its start-up)."""
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        current = await inbox.current_id(first)
        index = current // inbox.PARTITION_SIZE
        await first.execute("SELECT setval('event_event_id_seq', $1)", (index + 1) * inbox.PARTITION_SIZE + 5)
        assert await locks.try_lock_rotation(first)
        assert await rotate_partitions(second) == (0, 0)  # skipped: nothing made or dropped
        assert f"inbox_p{index}" in await inbox.partitions(second)
        await locks.unlock_rotation(first)
        _, dropped = await rotate_partitions(second)
        assert dropped >= 1 and f"inbox_p{index}" not in await inbox.partitions(second)
        results = await asyncio.gather(rotate_partitions(first), rotate_partitions(second))  # both at once
        assert all(isinstance(r, tuple) for r in results)
    finally:
        await first.close()
        await second.close()
