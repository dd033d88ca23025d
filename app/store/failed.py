"""Rejected messages, kept raw with their reason, for listing and replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app.domain.normalize import Rejection


async def list_failed(
    conn: asyncpg.Connection, site_id: int, limit: int, before_id: int | None, include_replayed: bool
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT failed_id, received_at, code, message, field, raw, replayed_at FROM failed_event
           WHERE site_id = $1 AND ($2::bigint IS NULL OR failed_id < $2) AND ($3 OR replayed_at IS NULL)
           ORDER BY failed_id DESC LIMIT $4""",
        site_id,
        before_id,
        include_replayed,
        limit,
    )
    return [dict(r) for r in rows]


async def pending_failed(
    conn: asyncpg.Connection, site_id: int, ids: Sequence[int] | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[Any] = await conn.fetch(
        """SELECT failed_id, raw, received_at FROM failed_event
           WHERE site_id = $1 AND replayed_at IS NULL AND ($2::bigint[] IS NULL OR failed_id = ANY($2))
           ORDER BY failed_id LIMIT $3""",
        site_id,
        list(ids) if ids is not None else None,
        limit,
    )
    return rows


async def mark_replayed(conn: asyncpg.Connection, site_id: int, ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE failed_event SET replayed_at = now() WHERE site_id = $1 AND failed_id = ANY($2::bigint[])",
        site_id,
        list(ids),
    )


async def update_reasons(conn: asyncpg.Connection, site_id: int, still: Sequence[tuple[int, Rejection]]) -> None:
    await conn.executemany(
        "UPDATE failed_event SET code = $3, message = $4, field = $5 WHERE site_id = $1 AND failed_id = $2",
        [(site_id, failed_id, r.code, r.message, r.field) for failed_id, r in still],
    )
