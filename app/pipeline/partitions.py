"""Inbox partitions: made ahead of the ids, dropped whole once drained, so old log rows go without
vacuum. Each step is a short transaction of its own, owned here, with a lock timeout: a partition
that cannot be had now (an insert or a derivation holds it) is handled on the next round."""

from __future__ import annotations

import asyncpg

from app.store import inbox


async def rotate_partitions(conn: asyncpg.Connection) -> tuple[int, int]:
    """Make the partitions ahead of the current id, drop the drained ones behind it; (made, dropped)."""
    current = await inbox.current_id(conn)
    existing = await inbox.partitions(conn)
    made = dropped = 0
    first = current // inbox.PARTITION_SIZE
    for index in range(first, first + inbox.PARTITIONS_AHEAD + 1):
        if f"inbox_p{index}" in existing:
            continue
        try:
            async with conn.transaction():
                await inbox.create_partition(conn, index)
            made += 1
        except (asyncpg.LockNotAvailableError, asyncpg.CheckViolationError):
            continue  # busy, or rows of that range wait in the default partition: next time
    for name, start in sorted(existing.items(), key=lambda kv: kv[1]):
        if start + inbox.PARTITION_SIZE > current:
            continue  # ids may still be handed out in it
        try:
            async with conn.transaction():
                dropped += await inbox.drop_partition_if_empty(conn, name)
        except asyncpg.LockNotAvailableError:
            continue
    return made, dropped
