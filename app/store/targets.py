"""Plan targets: one value per site, KPI and calendar month."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg


async def upsert_targets(conn: asyncpg.Connection, site_id: int, rows: Sequence[tuple[str, date, float]]) -> None:
    await conn.execute(
        """INSERT INTO target (site_id, kpi, month, value)
           SELECT $1, k, m, v FROM unnest($2::text[], $3::date[], $4::float8[]) AS t(k, m, v)
           ON CONFLICT (site_id, kpi, month) DO UPDATE SET value = EXCLUDED.value""",
        site_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )


async def targets_between(
    conn: asyncpg.Connection, site_id: int, first: date, last: date
) -> dict[tuple[str, date], float]:
    rows = await conn.fetch(
        "SELECT kpi, month, value FROM target WHERE site_id = $1 AND month BETWEEN $2 AND $3 ORDER BY month, kpi",
        site_id,
        first,
        last,
    )
    return {(r["kpi"], r["month"]): r["value"] for r in rows}
