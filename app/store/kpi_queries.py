"""KPI counts straight from events and sessions, aggregated in SQL (one row per bucket and group).

Which counters and person sets are counted, and how, comes from the KPI registry
(app.domain.kpis.registry, rendered by app.store.kpi_sql). Group and bucket expressions come from
fixed whitelists, never from user text; every value of a request (site, period, granularity, time
zone, the top groups of a limited breakdown) is a bound parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from app.domain.kpis import REGISTRY, TO_DATE, Bucket, Counts, Granularity
from app.store.kpi_sql import counter_sql, distinct_persons_sql, where_sql

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
    def params(self) -> tuple[Any, ...]:
        """$1 site, $2 start, $3 end, $4 granularity and $5 time zone (not for a total), then the top
        groups (a limited breakdown): every value from the request travels as a parameter."""
        found: tuple[Any, ...] = (self.site_id, self.start, self.end)
        if self.granularity is not Granularity.TOTAL:
            found += (self.granularity.value, self.tz)
        return (*found, list(self.top)) if self.breakdown and self.top else found

    @property
    def group(self) -> str:
        if not self.breakdown:
            return NO_GROUP
        expression = BREAKDOWNS[self.breakdown]
        if not self.top:
            return expression
        return f"CASE WHEN {expression} = ANY(${len(self.params)}::text[]) THEN {expression} ELSE '{OTHER}' END"

    @property
    def join(self) -> str:
        return "JOIN session s ON s.site_id = e.site_id AND s.session_key = e.session_key" if self.breakdown else ""

    def bucket(self, column: str) -> str:
        if self.granularity is Granularity.TOTAL:
            return "$2::timestamptz"
        return f"date_trunc($4::text, {column}, $5::text)"


def _event_counts_sql(q: Query) -> str:
    columns = [f"{counter_sql(c, 'e')} AS {c.name}" for c in REGISTRY.event_counters()]
    columns += [f"{distinct_persons_sql(REGISTRY.person_set(name), 'e')} AS {name}" for name in REGISTRY.kpi_sets()]
    return f"""
SELECT {q.bucket("e.event_at")} AS bucket, {q.group} AS grp,
  {", ".join(columns)}
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND e.event_at >= $2 AND e.event_at < $3
GROUP BY 1, 2"""


def _session_counts_sql(q: Query) -> str:
    columns = [f"{counter_sql(c, 's')} AS {c.name}" for c in REGISTRY.session_counters()]
    return f"""
SELECT {q.bucket("s.started_at")} AS bucket, {q.group} AS grp,
  {", ".join(columns)}
FROM session s
WHERE s.site_id = $1 AND s.started_at >= $2 AND s.started_at < $3
GROUP BY 1, 2"""


def _first_orders_sql(q: Query) -> str:
    """Per group, each customer's first order (in that group) before the period's end (TO_DATE.persons)."""
    orders = where_sql(REGISTRY.person_set(TO_DATE.persons).where, "e")
    return f"""
SELECT {q.group} AS grp, e.person_id, min(e.event_at) AS first_at
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND {orders} AND e.event_at < $3
GROUP BY 1, 2"""


def _to_date_sql(q: Query) -> str:
    before = f"CASE WHEN {{col}} < $2 THEN NULL ELSE {q.bucket('{col}')} END"
    revenue = REGISTRY.counter(TO_DATE.cents)  # its condition in WHERE: only those events are grouped
    summed = counter_sql(replace(revenue, where=()), "e")
    return f"""
WITH f AS ({_first_orders_sql(q)})
SELECT {before.format(col="f.first_at")} AS bucket, f.grp, count(*) AS customers, 0::int8 AS revenue
FROM f GROUP BY 1, 2
UNION ALL
SELECT {before.format(col="e.event_at")} AS bucket, {q.group} AS grp, 0, {summed}
FROM event e {q.join}
WHERE e.site_id = $1 AND NOT e.is_bot AND {where_sql(revenue.where, "e")} AND e.event_at < $3
GROUP BY 1, 2"""


def _active_customers_sql(q: Query) -> str:
    n = len(q.params) + 1
    seen = where_sql(REGISTRY.person_set(TO_DATE.seen).where, "e")
    return f"""
WITH f AS ({_first_orders_sql(q)}),
seen AS (
  SELECT DISTINCT {q.bucket("e.event_at")} AS bucket, {q.group} AS grp, e.person_id
  FROM event e {q.join}
  WHERE e.site_id = $1 AND NOT e.is_bot AND e.event_at >= $2 AND e.event_at < $3 AND {seen}
)
SELECT seen.bucket, seen.grp, count(*) AS {TO_DATE.active}
FROM seen
JOIN f ON f.grp = seen.grp AND f.person_id = seen.person_id
JOIN unnest(${n}::timestamptz[], ${n + 1}::timestamptz[]) AS b(aligned, bucket_end) ON b.aligned = seen.bucket
WHERE f.first_at < b.bucket_end
GROUP BY 1, 2"""


async def event_counts(
    pool: asyncpg.Pool, q: Query, bucket_list: Sequence[Bucket], history: bool = True
) -> dict[tuple[datetime, str], Counts]:
    """Counts per (aligned bucket start, group) aggregated from the events and sessions; group ''
    when there is no breakdown. The four queries run at once, each on its own connection
    (PostgreSQL works them in parallel). history=False leaves out the two that read every order
    before the period (active and to-date customers, to-date revenue): for a count of the last
    minutes that needs none of them."""
    aligned = [b.aligned for b in bucket_list]
    ends = [b.end for b in bucket_list]
    queries = [_fetch(pool, _event_counts_sql(q), *q.params), _fetch(pool, _session_counts_sql(q), *q.params)]
    if history:
        queries.append(_fetch(pool, _active_customers_sql(q), *q.params, aligned, ends, hash_joins=True))
        queries.append(_fetch(pool, _to_date_sql(q), *q.params))
    found = await asyncio.gather(*queries)
    events, sessions = found[0], found[1]
    active, to_date = (found[2], found[3]) if history else ([], None)
    result: dict[tuple[datetime, str], Counts] = {}

    def slot(bucket: datetime, grp: str) -> Counts:
        return result.setdefault((bucket, grp), {})

    for row in (*events, *sessions, *active):
        counts = slot(row["bucket"], row["grp"])
        for name, value in row.items():
            if name not in ("bucket", "grp"):
                counts[name] = value
    if to_date is not None:
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
    """The to-date customers and revenue: running sums over the buckets, from before the period on."""
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
            counts[TO_DATE.customers], counts[TO_DATE.revenue] = customers, revenue
