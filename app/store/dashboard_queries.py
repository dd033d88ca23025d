"""The few reads the dashboard needs beside the KPI endpoints: a signed-in site's key hashes (they
sign its session cookie) and how fresh its numbers are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.store import inbox
from app.store.sites import Site


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """A site, and the hashes of its newest read and admin keys: they sign its dashboard sessions."""

    site: Site
    read_key_hash: str
    admin_key_hash: str


async def signing_keys(conn: asyncpg.Connection, site_id: int) -> SigningKeys | None:
    # the newest valid key of each kind signs the session: rotating or revoking it ends the sessions
    current = """(SELECT k.key_hash FROM site_key k WHERE k.site_id = s.site_id AND k.kind = '{kind}'
                    AND (k.expires_at IS NULL OR k.expires_at > now()) ORDER BY k.key_id DESC LIMIT 1)"""
    row = await conn.fetchrow(
        f"""SELECT s.site_id, s.name, s.timezone, s.domains, {current.format(kind="read")} AS read_key_hash,
                   {current.format(kind="admin")} AS admin_key_hash
            FROM site s WHERE s.site_id = $1""",
        site_id,
    )
    if row is None:
        return None
    site = Site(row["site_id"], row["name"], row["timezone"], tuple(row["domains"] or ()))
    return SigningKeys(site, row["read_key_hash"], row["admin_key_hash"])


@dataclass(frozen=True, slots=True)
class Freshness:
    last_received_at: datetime | None  # the newest stored event
    oldest_pending_at: datetime | None  # the oldest write the rollups do not include yet


async def freshness(conn: asyncpg.Connection, site_id: int) -> Freshness:
    last: datetime | None = await conn.fetchval("SELECT max(received_at) FROM event WHERE site_id = $1", site_id)
    return Freshness(last, await inbox.oldest_received(conn, site_id))  # read from scan_from, as reads wait
