"""Job rows: a reclassification's parameters, status and progress (days done of total)."""

from __future__ import annotations

from typing import Any

import asyncpg

JOB_COLUMNS = "site_id, job_id, kind, params, status, done, total, error, created_at, updated_at"


async def create_job(
    conn: asyncpg.Connection, site_id: int, kind: str, params: dict[str, Any], total: int
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"INSERT INTO job (site_id, kind, params, total, status) VALUES ($1, $2, $3, $4, 'running') "
        f"RETURNING {JOB_COLUMNS}",
        site_id,
        kind,
        params,
        total,
    )
    return dict(row)


async def get_job(conn: asyncpg.Connection, site_id: int, job_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM job WHERE site_id = $1 AND job_id = $2", site_id, job_id)
    return dict(row) if row else None


async def list_jobs(conn: asyncpg.Connection, site_id: int, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The site's jobs, newest first (optionally of one status)."""
    rows = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM job WHERE site_id = $1 AND ($2::text IS NULL OR status = $2) "
        "ORDER BY job_id DESC LIMIT $3",
        site_id,
        status,
        limit,
    )
    return [dict(r) for r in rows]


async def unfinished_jobs(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {JOB_COLUMNS} FROM job WHERE status IN ('queued', 'running') ORDER BY job_id")
    return [dict(r) for r in rows]


async def advance_job(conn: asyncpg.Connection, site_id: int, job_id: int, done: int) -> None:
    await conn.execute(
        "UPDATE job SET done = $3, updated_at = now() WHERE site_id = $1 AND job_id = $2", site_id, job_id, done
    )


async def finish_job(
    conn: asyncpg.Connection, site_id: int, job_id: int, status: str, error: str | None = None
) -> None:
    await conn.execute(
        "UPDATE job SET status = $3, error = $4, updated_at = now() WHERE site_id = $1 AND job_id = $2",
        site_id,
        job_id,
        status,
        error,
    )
