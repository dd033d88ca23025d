"""Sites and their keys. Keys are stored as SHA-256 hashes (random 144- and 192-bit tokens, so a fast
hash is enough); the write key is public by design and also kept in clear. A site may have several
keys of a kind at once while a rotated write key is in its grace period."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    "rollup_layout",
    "quality_counter",
    "customer_orders",
    "cohort_month",
    "person_number",
    "inbox",
    "duplicate_order",
    "pipeline_watermark",
    "site_key",
    "audit_event",  # the purge itself is recorded after it (app/api/sites.py)
)


KINDS = ("write", "read", "admin")
PREFIXES = {"write": "wk_", "read": "rk_", "admin": "ak_"}
PREFIX_LENGTH = 7  # "wk_" and 4 random characters: enough to tell keys apart in a log, useless to guess


@dataclass(frozen=True, slots=True)
class KeyHit:
    """The site a valid key names, which kind of key it is, and its id (for logs and the audit)."""

    site: Site
    kind: str
    key_id: int
    prefix: str
    expires_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def _site(row: asyncpg.Record) -> Site:
    return Site(row["site_id"], row["name"], row["timezone"], tuple(row["domains"] or ()))


def _new_secret(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(18 if kind == "write" else 24)


async def _insert_key(conn: asyncpg.Connection, site_id: int, kind: str) -> str:
    key = _new_secret(kind)
    await conn.execute(
        """INSERT INTO site_key (site_id, kind, key_hash, public_key, prefix) VALUES ($1, $2, $3, $4, $5)""",
        site_id,
        kind,
        hash_key(key),
        key if kind == "write" else None,
        key_prefix(key),
    )
    return key


async def create_site(
    conn: asyncpg.Connection, name: str, timezone: str, domains: list[str], currency: str | None = None
) -> tuple[Site, NewSiteKeys]:
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO site (name, timezone, domains, currency) VALUES ($1, $2, $3, $4)
               RETURNING site_id, name, timezone, domains""",
            name,
            timezone,
            domains,
            currency,
        )
        site = _site(row)
        made = {kind: await _insert_key(conn, site.site_id, kind) for kind in KINDS}
    return site, NewSiteKeys(write_key=made["write"], read_key=made["read"], admin_key=made["admin"])


async def _key_hit(conn: asyncpg.Connection, key: str, kinds: tuple[str, ...]) -> KeyHit | None:
    row = await conn.fetchrow(
        """SELECT s.site_id, s.name, s.timezone, s.domains, k.kind, k.key_id, k.prefix, k.expires_at
           FROM site_key k JOIN site s ON s.site_id = k.site_id
           WHERE k.key_hash = $1 AND k.kind = ANY($2::text[]) AND (k.expires_at IS NULL OR k.expires_at > now())""",
        hash_key(key),
        list(kinds),
    )
    return KeyHit(_site(row), row["kind"], row["key_id"], row["prefix"], row["expires_at"]) if row else None


async def write_key_hit(conn: asyncpg.Connection, write_key: str) -> KeyHit | None:
    return await _key_hit(conn, write_key, ("write",))


async def site_by_write_key(conn: asyncpg.Connection, write_key: str) -> Site | None:
    hit = await write_key_hit(conn, write_key)
    return hit.site if hit else None


async def secret_key_hit(conn: asyncpg.Connection, key: str) -> KeyHit | None:
    """The site a valid read or admin key belongs to, and which kind of key it is."""
    return await _key_hit(conn, key, ("read", "admin"))


async def site_by_secret_key(conn: asyncpg.Connection, key: str) -> tuple[Site, str] | None:
    hit = await secret_key_hit(conn, key)
    return (hit.site, hit.kind) if hit else None


async def derivation_settings(conn: asyncpg.Connection, site_id: int) -> tuple[str, str | None]:
    """What derivation needs of a site: its time zone and its currency (None: any)."""
    row = await conn.fetchrow("SELECT timezone, currency FROM site WHERE site_id = $1", site_id)
    return (row["timezone"] or "UTC", row["currency"]) if row else ("UTC", None)


async def list_sites(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT s.site_id AS id, s.name, s.timezone, s.domains,
                  (SELECT k.public_key FROM site_key k
                   WHERE k.site_id = s.site_id AND k.kind = 'write' AND k.expires_at IS NULL
                   ORDER BY k.key_id DESC LIMIT 1) AS write_key,
                  s.created_at
           FROM site s ORDER BY s.site_id"""
    )
    return [dict(r) for r in rows]


async def all_domains(conn: asyncpg.Connection) -> list[str]:
    return [r["domain"] for r in await conn.fetch("SELECT DISTINCT unnest(domains) AS domain FROM site")]


async def site_exists(conn: asyncpg.Connection, site_id: int) -> bool:
    return bool(await conn.fetchval("SELECT true FROM site WHERE site_id = $1", site_id))


async def rotate_keys(
    conn: asyncpg.Connection, site_id: int, kinds: list[str], write_grace: timedelta
) -> dict[str, str]:
    """New keys of these kinds; the old ones stop now, except a write key, which works for write_grace
    more (it is deployed in pages and apps). Answers {kind: new key}."""
    made: dict[str, str] = {}
    async with conn.transaction():
        for kind in kinds:
            await conn.execute(
                """UPDATE site_key SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + $3::interval)
                   WHERE site_id = $1 AND kind = $2 AND (expires_at IS NULL OR expires_at > now())""",
                site_id,
                kind,
                write_grace if kind == "write" else timedelta(0),
            )
            made[kind] = await _insert_key(conn, site_id, kind)
    return made


async def revoke_key(conn: asyncpg.Connection, site_id: int, key_id: int) -> str | None:
    """Stop a key now (a rotated write key in its grace period too); its kind, or None if not valid."""
    kind: str | None = await conn.fetchval(
        """UPDATE site_key SET expires_at = now()
           WHERE site_id = $1 AND key_id = $2 AND (expires_at IS NULL OR expires_at > now()) RETURNING kind""",
        site_id,
        key_id,
    )
    return kind


async def list_keys(conn: asyncpg.Connection, site_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT key_id AS id, kind, prefix, created_at, expires_at,
                  (expires_at IS NULL OR expires_at > now()) AS valid
           FROM site_key WHERE site_id = $1 ORDER BY key_id""",
        site_id,
    )
    return [dict(r) for r in rows]


async def lock_site_against_purge(conn: asyncpg.Connection, site_id: int) -> bool:
    """In a writer's transaction: the site still exists, and a purge waits until we commit."""
    return bool(await conn.fetchval("SELECT true FROM site WHERE site_id = $1 FOR KEY SHARE", site_id))


async def delete_site(conn: asyncpg.Connection, site_id: int) -> bool:
    """Purge a site: its events, derived state, keys and settings, in one transaction."""
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")  # a deliberate root action on a big site
        if not await conn.fetchval("SELECT true FROM site WHERE site_id = $1 FOR UPDATE", site_id):
            return False
        await lock_derivation(conn, site_id)  # no derivation of the site meanwhile
        for table in TENANT_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE site_id = $1", site_id)
        status = await conn.execute("DELETE FROM site WHERE site_id = $1", site_id)
    return bool(status.endswith(" 1"))
