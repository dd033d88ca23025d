"""Rulesets per site: versioned rows; version 0 is the shipped default (app/rules/default.yaml)."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.store.locks import lock_key


async def latest_ruleset(conn: asyncpg.Connection, site_id: int) -> tuple[int, Any] | None:
    row = await conn.fetchrow(
        "SELECT version, document FROM ruleset WHERE site_id = $1 ORDER BY version DESC LIMIT 1", site_id
    )
    return (row["version"], row["document"]) if row else None


async def ruleset_version(conn: asyncpg.Connection, site_id: int, version: int) -> Any | None:
    return await conn.fetchval("SELECT document FROM ruleset WHERE site_id = $1 AND version = $2", site_id, version)


async def insert_ruleset(conn: asyncpg.Connection, site_id: int, document: Any) -> int:
    """A new version, one above the latest (the shipped default counts as version 0)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("ruleset", site_id, ""))  # one at a time
    version: int = await conn.fetchval(
        """INSERT INTO ruleset (site_id, version, document)
           SELECT $1, COALESCE(max(version), 0) + 1, $2 FROM ruleset WHERE site_id = $1
           RETURNING version""",
        site_id,
        document,
    )
    return version
