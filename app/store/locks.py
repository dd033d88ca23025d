"""Advisory locks: a site's derivation (one deriver per site at a time), running jobs, and the inbox's
partition rotation (one process at a time)."""

from __future__ import annotations

import hashlib

import asyncpg


def lock_key(namespace: str, site_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"{namespace}:{site_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def try_lock_derivation(conn: asyncpg.Connection, site_id: int) -> bool:
    """In a derivation's transaction: this site is ours until COMMIT (or the site is taken)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_key("derive", site_id, "")))


async def lock_derivation(conn: asyncpg.Connection, site_id: int) -> None:
    """Wait for the site's derivation lock (reclassification, rebuilds, purges), until COMMIT."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("derive", site_id, ""))


async def try_lock_job(conn: asyncpg.Connection, site_id: int, job_id: int) -> bool:
    """A session lock: held while this connection runs the job, released if it dies."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("job", site_id, str(job_id))))


async def unlock_job(conn: asyncpg.Connection, site_id: int, job_id: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key("job", site_id, str(job_id)))


async def try_lock_conversion(conn: asyncpg.Connection, site_id: int) -> bool:
    """A session lock: this connection's process brings the site's rollups to a new layout."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("convert", site_id, "")))


async def unlock_conversion(conn: asyncpg.Connection, site_id: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key("convert", site_id, ""))


async def try_lock_rotation(conn: asyncpg.Connection) -> bool:
    """A session lock: this connection makes and drops inbox partitions (every worker and deriver
    rotates them, at start-up and then every second; one at a time)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("rotate", 0, "")))


async def unlock_rotation(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key("rotate", 0, ""))
