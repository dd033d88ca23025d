"""KPI counts straight from events and sessions, aggregated in SQL (one row per bucket and group).

Group and bucket expressions come from fixed whitelists, never from user text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.domain.kpis import Bucket, Counts, Granularity

BREAKDOWNS = {
    "channel": "s.channel",
    "peso": "s.peso",
    "source": "COALESCE(s.campaign_source, '(none)')",
    "medium": "COALESCE(s.campaign_medium, '(none)')",
    "campaign": "COALESCE(s.campaign_name, '(none)')",
    "device": "s.device",
}
NO_GROUP = "''"
OTHER = "(other)"


def _text_literal(value: str) -> str:
    """A group value (campaign names come from trackers) as an escape-string literal: backslashes and
    quotes escaped, so it is safe whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def top_groups(conn: asyncpg.Connection, q: Query, limit: int) -> list[str]:
    """The breakdown's groups with the most sessions starting in the period, most first; ties by
    name in code-point order (as the rollups break them), whatever the database's collation."""
    expression = BREAKDOWNS[q.breakdown or "channel"]
    rows = await conn.fetch(
        f"""SELECT {expression} AS grp, count(*) AS sessions FROM session s
            WHERE s.site_id = $1 AND s.started_at >= $2 AND s.started_at < $3
            GROUP BY 1 ORDER BY 2 DESC, {expression} COLLATE "C" LIMIT $4""",
        q.site_id, q.start, q.end, limit,
    )  # fmt: skip
    return [r["grp"] for r in rows]


@dataclass(frozen=True, slots=True)
class Query:
    site_id: int
    start: datetime
    end: datetime
    tz: str
    granularity: Granularity
    breakdown: str | None
    top: tuple[str, ...] = ()  # with a breakdown: these groups by name, every other one as OTHER

    @property
    def group(self) -> str:
        if not self.breakdown:
            return NO_GROUP
        expression = BREAKDOWNS[self.breakdown]
        if not self.top:
            return expression
        listed = ", ".join(_text_literal(value) for value in self.top)
        return f"CASE WHEN {expression} IN ({listed}) THEN {expression} ELSE '{OTHER}' END"

    @property
    def join(self) -> str:
        return "JOIN session s ON s.site_id = e.site_id AND s.session_key = e.session_key" if self.breakdown else ""

    def bucket(self, column: str) -> str:
        if self.granularity is Granularity.TOTAL:
            return "$2::timestamptz"
        return f"date_trunc('{self.granularity.value}', {column}, $4::text)"

    @property
    def params(self) -> tuple[Any, ...]:
        base = (self.site_id, self.start, self.end)
        return base if self.granularity is Granularity.TOTAL else (*base, self.tz)


def _event_counts_sql(q: Query) -> str:
    return f"""
SELECT {q.bucket("e.event_at")} AS bucket, {q.group} AS grp,
  count(DISTINCT e.person_id) AS visitors,
  count(DISTINCT e.person_id) FILTER (WHERE e.is_first_event) AS new_visitors,
  count(*) FILTER (WHERE e.type IN ('page', 'screen')) AS pageviews,
  count(*) FILTER (WHERE e.stage = 'act') AS act_events,
  count(*) FILTER (WHERE e.is_lead) AS leads,
  count(DISTINCT e.person_id) FILTER (WHERE e.is_lead) AS lead_persons,
  count(*) FILTER (WHERE e.is_order) AS orders,
  COALESCE(sum(round(e.value * 100)) FILTER (WHERE e.is_order), 0)::int8 AS revenue,  -- cents (MONEY_SCALE)
  count(DISTINCT e.person_id) FILTER (WHERE e.is_first_order) AS new_customers,
  count(DISTINCT e.person_id) FILTER (WHERE e.is_order) AS order_persons,
  count(*) FILTER (WHERE e.is_order AND e.channel = 'Offline') AS offline_orders,
  COALESCE(sum(round(e.value * 100)) FILTER (WHERE e.is_order AND e.channel = 'Offline'), 0)::int8 AS offline_revenue,
  count(*) FILTER (WHERE e.stage = 'engage') AS engage_events,
  count(*) FILTER (WHERE e.is_repeat_order) AS repeat_orders,
  count(DISTINCT e.person_id) FILTER (WHERE e.is_repeat_order) AS repeat_customers,
  count(e.nps_score) FILTER (WHERE e.goal = 'nps') AS nps_responses,
  count(*) FILTER (WHERE e.goal = 'nps' AND e.nps_score >= 9) AS nps_promoters,
  count(*) FILTER (WHERE e.goal = 'nps' AND e.nps_score <= 6) AS nps_detractors
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND e.event_at >= $2 AND e.event_at < $3
GROUP BY 1, 2"""


def _session_counts_sql(q: Query) -> str:
    return f"""
SELECT {q.bucket("s.started_at")} AS bucket, {q.group} AS grp,
  count(*) AS sessions,
  count(*) FILTER (WHERE s.is_bounce) AS bounces,
  COALESCE(sum(extract(epoch FROM s.ended_at - s.started_at)), 0)::float8 AS session_seconds
FROM session s
WHERE s.site_id = $1 AND s.started_at >= $2 AND s.started_at < $3
GROUP BY 1, 2"""


def _first_orders_sql(q: Query) -> str:
    """Per group, each customer's first order (in that group) before the period's end."""
    return f"""
SELECT {q.group} AS grp, e.person_id, min(e.event_at) AS first_at
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND e.is_order AND e.event_at < $3
GROUP BY 1, 2"""


def _to_date_sql(q: Query) -> str:
    before = f"CASE WHEN {{col}} < $2 THEN NULL ELSE {q.bucket('{col}')} END"
    return f"""
WITH f AS ({_first_orders_sql(q)})
SELECT {before.format(col="f.first_at")} AS bucket, f.grp, count(*) AS customers, 0::int8 AS revenue
FROM f GROUP BY 1, 2
UNION ALL
SELECT {before.format(col="e.event_at")} AS bucket, {q.group} AS grp, 0, COALESCE(sum(round(e.value * 100)), 0)::int8
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND e.is_order AND e.event_at < $3
GROUP BY 1, 2"""


def _active_customers_sql(q: Query) -> str:
    n = len(q.params) + 1
    return f"""
WITH f AS ({_first_orders_sql(q)}),
seen AS (
  SELECT DISTINCT {q.bucket("e.event_at")} AS bucket, {q.group} AS grp, e.person_id
  FROM event e {q.join}
  WHERE e.site_id = $1 AND NOT e.is_bot AND e.event_at >= $2 AND e.event_at < $3
)
SELECT seen.bucket, seen.grp, count(*) AS active_customers
FROM seen
JOIN f ON f.grp = seen.grp AND f.person_id = seen.person_id
JOIN unnest(${n}::timestamptz[], ${n + 1}::timestamptz[]) AS b(aligned, bucket_end) ON b.aligned = seen.bucket
WHERE f.first_at < b.bucket_end
GROUP BY 1, 2"""


async def kpi_counts(pool: asyncpg.Pool, q: Query, bucket_list: Sequence[Bucket]) -> dict[tuple[datetime, str], Counts]:
    """Counts per (aligned bucket start, group); group '' when there is no breakdown. The four
    queries run at once, each on its own connection (PostgreSQL works them in parallel)."""
    aligned = [b.aligned for b in bucket_list]
    ends = [b.end for b in bucket_list]
    events, sessions, active, to_date = await asyncio.gather(
        _fetch(pool, _event_counts_sql(q), *q.params),
        _fetch(pool, _session_counts_sql(q), *q.params),
        _fetch(pool, _active_customers_sql(q), *q.params, aligned, ends, hash_joins=True),
        _fetch(pool, _to_date_sql(q), *q.params),
    )
    result: dict[tuple[datetime, str], Counts] = {}

    def slot(bucket: datetime, grp: str) -> Counts:
        return result.setdefault((bucket, grp), Counts())

    for row in events:
        counts = slot(row["bucket"], row["grp"])
        for name, value in row.items():
            if name not in ("bucket", "grp"):
                setattr(counts, name, value)
    for row in sessions:
        counts = slot(row["bucket"], row["grp"])
        counts.sessions, counts.bounces, counts.session_seconds = (
            row["sessions"],
            row["bounces"],
            row["session_seconds"],
        )
    for row in active:
        slot(row["bucket"], row["grp"]).active_customers = row["active_customers"]
    _add_to_date(to_date, aligned, slot)
    return result


async def _fetch(pool: asyncpg.Pool, sql: str, *params: Any, hash_joins: bool = False) -> list[Any]:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        if hash_joins:
            # With stale statistics (a freshly loaded table) the planner picks a nested loop over
            # persons x customers for active customers, quadratic in events; hash joins suit every size.
            await conn.execute("SET LOCAL enable_nestloop = off")
        rows: list[Any] = await conn.fetch(sql, *params)
        return rows


def _add_to_date(rows: Sequence[Any], aligned: list[datetime], slot: Any) -> None:
    """customers_to_date and revenue_to_date: running sums over the buckets, from before the period on."""
    per_group: dict[str, dict[datetime | None, tuple[int, int]]] = {}
    for row in rows:
        customers, revenue = per_group.setdefault(row["grp"], {}).get(row["bucket"], (0, 0))
        per_group[row["grp"]][row["bucket"]] = (customers + row["customers"], revenue + row["revenue"])
    for grp, by_bucket in per_group.items():
        customers, revenue = by_bucket.get(None, (0, 0))
        for start in aligned:
            add_customers, add_revenue = by_bucket.get(start, (0, 0))
            customers, revenue = customers + add_customers, revenue + add_revenue
            counts = slot(start, grp)
            counts.customers_to_date, counts.revenue_to_date = customers, revenue
