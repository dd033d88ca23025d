"""The audit log: one row per admin or root action (who by key id, never the key; what; when)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def insert_audit(
    conn: asyncpg.Connection, site_id: int, actor: str, key_id: int | None, action: str, summary: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO audit_event (site_id, actor, key_id, action, summary) VALUES ($1, $2, $3, $4, $5)",
        site_id,
        actor,
        key_id,
        action,
        summary,
    )


async def list_audit(
    conn: asyncpg.Connection, site_id: int, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT audit_id AS id, at, actor, key_id, action, summary FROM audit_event
           WHERE site_id = $1 AND ($2::bigint IS NULL OR audit_id < $2)
           ORDER BY audit_id DESC LIMIT $3""",
        site_id,
        before,
        limit,
    )
    return [dict(r) for r in rows]
