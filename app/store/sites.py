"""Sites and their keys. Secret keys are stored as SHA-256 hashes (they are random 192-bit tokens,
so a fast hash is enough); the write key is public by design and stored as is."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.store.locks import lock_derivation


@dataclass(frozen=True, slots=True)
class Site:
    site_id: int
    name: str
    timezone: str
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewSiteKeys:
    write_key: str
    read_key: str
    admin_key: str


# Every table holding a site's data (checked against the catalog by a test).
TENANT_TABLES = (
    "event",
    "session",
    "identity_link",
    "message_key",
    "order_key",
    "failed_event",
    "ruleset",
    "target",
    "job",
    "ingest_counter",
    "person_state",
    "rollup",
    "person_number",
    "inbox",
    "duplicate_order",
    "pipeline_watermark",
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _site(row: asyncpg.Record) -> Site:
    return Site(row["site_id"], row["name"], row["timezone"], tuple(row["domains"] or ()))


async def create_site(
    conn: asyncpg.Connection, name: str, timezone: str, domains: list[str]
) -> tuple[Site, NewSiteKeys]:
    keys = NewSiteKeys(
        write_key="wk_" + secrets.token_urlsafe(18),
        read_key="rk_" + secrets.token_urlsafe(24),
        admin_key="ak_" + secrets.token_urlsafe(24),
    )
    row = await conn.fetchrow(
        """INSERT INTO site (name, timezone, domains, write_key, read_key_hash, admin_key_hash)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING site_id, name, timezone, domains""",
        name,
        timezone,
        domains,
        keys.write_key,
        hash_key(keys.read_key),
        hash_key(keys.admin_key),
    )
    return _site(row), keys


async def site_by_write_key(conn: asyncpg.Connection, write_key: str) -> Site | None:
    row = await conn.fetchrow("SELECT site_id, name, timezone, domains FROM site WHERE write_key = $1", write_key)
    return _site(row) if row else None


async def site_by_secret_key(conn: asyncpg.Connection, key: str) -> tuple[Site, str] | None:
    """The site a read or admin key belongs to, and which kind of key it is."""
    digest = hash_key(key)
    row = await conn.fetchrow(
        """SELECT site_id, name, timezone, domains,
                  CASE WHEN admin_key_hash = $1 THEN 'admin' ELSE 'read' END AS kind
           FROM site WHERE read_key_hash = $1 OR admin_key_hash = $1""",
        digest,
    )
    return (_site(row), row["kind"]) if row else None


async def list_sites(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT site_id AS id, name, timezone, domains, write_key, created_at FROM site ORDER BY site_id"
    )
    return [dict(r) for r in rows]


async def lock_site(conn: asyncpg.Connection, site_id: int) -> bool:
    """In a writer's transaction: the site still exists, and a purge waits until we commit."""
    return bool(await conn.fetchval("SELECT true FROM site WHERE site_id = $1 FOR KEY SHARE", site_id))


async def delete_site(conn: asyncpg.Connection, site_id: int) -> bool:
    """Purge a site: its events, derived state, keys and settings, in one transaction."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM site WHERE site_id = $1 FOR UPDATE", site_id):
            return False
        await lock_derivation(conn, site_id)  # no derivation of the site meanwhile
        for table in TENANT_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE site_id = $1", site_id)
        status = await conn.execute("DELETE FROM site WHERE site_id = $1", site_id)
    return bool(status.endswith(" 1"))
