"""Inbox partitions: made ahead of the ids, dropped whole once drained, so old log rows go without
vacuum. Each step is a short transaction of its own, owned here, with a lock timeout: a partition
that cannot be had now (an insert or a derivation holds it) is handled on the next round. Every worker
and deriver rotates (all start at once under `serve --workers N`): one at a time, the others skip the
round."""

from __future__ import annotations

import asyncpg

from app.store import inbox, locks


async def rotate_partitions(conn: asyncpg.Connection) -> tuple[int, int]:
    """Make the partitions ahead of the current id, drop the drained ones behind it; (made, dropped).
    (0, 0) when another process is rotating now."""
    if not await locks.try_lock_rotation(conn):
        return 0, 0
    try:
        return await _rotate(conn)
    finally:
        await locks.unlock_rotation(conn)


async def _rotate(conn: asyncpg.Connection) -> tuple[int, int]:
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
        except (asyncpg.LockNotAvailableError, asyncpg.CheckViolationError, asyncpg.DuplicateTableError):
            continue  # busy, rows of that range wait in the default partition, or made meanwhile: next time
    for name, start in sorted(existing.items(), key=lambda kv: kv[1]):
        if start + inbox.PARTITION_SIZE > current:
            continue  # ids may still be handed out in it
        try:
            async with conn.transaction():
                dropped += await inbox.drop_partition_if_empty(conn, name)
        except (asyncpg.LockNotAvailableError, asyncpg.UndefinedTableError):
            continue  # busy, or already dropped (by an older process that rotates without the lock)
    return made, dropped
