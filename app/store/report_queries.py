"""Report queries over `event`, `session`, `failed_event` and `ingest_counter`, aggregated in SQL:
goals, the RACE and ordered goal funnels, a person's profile, data quality, order cohorts.

Bucket expressions come from kpi_queries.Query; goal names, periods and windows are parameters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from app.domain.reports import CohortActivity, FunnelStep, step_links
from app.store.kpi_queries import Query

PERSON_EVENTS_LIMIT = 100
LATE_AFTER = "24 hours"


async def goal_counts(conn: asyncpg.Connection, q: Query) -> list[asyncpg.Record]:
    """(bucket, goal, completions, persons, value) of non-bot events with a goal."""
    rows: list[Any] = await conn.fetch(
        f"""SELECT {q.bucket("event_at")} AS bucket, goal, count(*) AS completions,
                   count(DISTINCT person_id) AS persons, (COALESCE(sum(round(value * 100)), 0) / 100)::float8 AS value
            FROM event
            WHERE site_id = $1 AND NOT is_bot AND goal IS NOT NULL AND event_at >= $2 AND event_at < $3
            GROUP BY 1, 2 ORDER BY 1, 2""",
        *q.params,
    )
    return rows


_STAGES = ("reach", "act", "convert", "engage")


async def stage_funnel(
    conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime
) -> dict[str, tuple[int, int, float | None]]:
    """Per RACE stage: persons with an event of it in the period (reach: any event), persons with
    an event of it and of every earlier stage (nested), and the median over persons of (their first
    event of the stage - their first event of the previous stage)."""
    row = await conn.fetchrow(
        """WITH firsts AS (
             SELECT person_id, min(event_at) AS reach,
                    min(event_at) FILTER (WHERE stage = 'act') AS act,
                    min(event_at) FILTER (WHERE stage = 'convert') AS convert,
                    min(event_at) FILTER (WHERE stage = 'engage') AS engage
             FROM event WHERE site_id = $1 AND NOT is_bot AND event_at >= $2 AND event_at < $3
             GROUP BY person_id)
           SELECT count(*) AS reach, count(act) AS act, count(convert) AS convert, count(engage) AS engage,
             count(*) AS nested_reach, count(act) AS nested_act,
             count(*) FILTER (WHERE act IS NOT NULL AND convert IS NOT NULL) AS nested_convert,
             count(*) FILTER (WHERE act IS NOT NULL AND convert IS NOT NULL AND engage IS NOT NULL)
               AS nested_engage,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM act - reach)::float8) AS act_median,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM convert - act)::float8) AS convert_median,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM engage - convert)::float8)
               AS engage_median
           FROM firsts""",
        site_id,
        start,
        end,
    )
    return {
        stage: (row[stage], row[f"nested_{stage}"], None if stage == "reach" else row[f"{stage}_median"])
        for stage in _STAGES
    }


def _ordered_funnel_sql(steps: Sequence[FunnelStep]) -> str:
    """One CTE per step (required steps first: an optional step is bounded by the next required one),
    each a GROUP BY person over that goal's events; then persons and the median gap per step."""
    links = step_links(steps)

    def goal(i: int) -> str:
        return f"${5 + i}"

    def lower(i: int) -> str:
        link = links[i]
        return ", ".join([*(f"o{k}.t" for k in reversed(link.between)), "p.t"])

    def joins(i: int) -> str:
        link = links[i]
        return " ".join(f"LEFT JOIN s{k} o{k} ON o{k}.person_id = p.person_id" for k in link.between)

    ctes = [
        f"""s0 AS (SELECT person_id, min(event_at) AS t0, min(event_at) AS t FROM event
            WHERE site_id = $1 AND NOT is_bot AND goal = {goal(0)} AND event_at >= $2 AND event_at < $3
            GROUP BY person_id)"""
    ]
    order = [i for i, s in enumerate(steps) if i and not s.optional] + [i for i, s in enumerate(steps) if s.optional]
    for i in order:
        link = links[i]
        bound = ""
        if steps[i].optional and link.before is not None:
            bound = f"LEFT JOIN s{link.before} n ON n.person_id = p.person_id"
        ctes.append(
            f"""s{i} AS (SELECT p.person_id, p.t0, min(e.event_at) AS t
                FROM s{link.after} p {joins(i) if steps[i].optional else ""} {bound}
                JOIN event e ON e.site_id = $1 AND e.person_id = p.person_id AND NOT e.is_bot
                  AND e.goal = {goal(i)} AND e.event_at <= p.t0 + $4::interval
                  AND e.event_at > {f"COALESCE({lower(i)})" if steps[i].optional else "p.t"}
                  {"AND (n.t IS NULL OR e.event_at < n.t)" if bound else ""}
                GROUP BY p.person_id, p.t0)"""
        )
    # the condition types $4 (the window) when no later step uses it (a one-step funnel)
    stats = ["SELECT 0 AS step, count(*) AS persons, NULL::float8 AS median FROM s0 WHERE $4::interval IS NOT NULL"]
    for i in range(1, len(steps)):
        gap = f"extract(epoch FROM c.t - COALESCE({lower(i)}))::float8"
        stats.append(
            f"""SELECT {i}, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY {gap})
                FROM s{i} c JOIN s{links[i].after} p ON p.person_id = c.person_id {joins(i)}"""
        )
    return f"WITH {', '.join(ctes)}\n{' UNION ALL '.join(stats)} ORDER BY step"


async def ordered_funnel(
    conn: asyncpg.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    steps: Sequence[FunnelStep],
    window: timedelta,
) -> list[tuple[int, float | None]]:
    """(persons, median seconds from the previous matched step) per step; see app.api.kpis.funnel."""
    rows = await conn.fetch(_ordered_funnel_sql(steps), site_id, start, end, window, *(step.goal for step in steps))
    return [(r["persons"], r["median"]) for r in rows]


# ---- persons -------------------------------------------------------------------------------------


async def first_existing_person(conn: asyncpg.Connection, site_id: int, candidates: Sequence[str]) -> str | None:
    found: str | None = await conn.fetchval(
        """SELECT c.p FROM unnest($2::text[]) WITH ORDINALITY AS c(p, n)
           WHERE EXISTS (SELECT 1 FROM event WHERE site_id = $1 AND person_id = c.p)
           ORDER BY c.n LIMIT 1""",
        site_id,
        list(candidates),
    )
    return found


async def person_summary(conn: asyncpg.Connection, site_id: int, person_id: str) -> dict[str, Any]:
    """Facts over the person's non-bot events; identities and event count over all of them."""
    row = await conn.fetchrow(
        """SELECT min(event_at) FILTER (WHERE NOT is_bot) AS first_seen,
                  max(event_at) FILTER (WHERE NOT is_bot) AS last_seen,
                  count(*) FILTER (WHERE is_order AND NOT is_bot) AS orders,
                  (COALESCE(sum(round(value * 100)) FILTER (WHERE is_order AND NOT is_bot), 0) / 100)::float8
                    AS revenue,
                  count(*) FILTER (WHERE is_lead AND NOT is_bot) AS leads,
                  COALESCE(array_agg(DISTINCT stage) FILTER (WHERE NOT is_bot), '{}') AS stages,
                  COALESCE(array_agg(DISTINCT anonymous_id ORDER BY anonymous_id)
                    FILTER (WHERE anonymous_id IS NOT NULL), '{}') AS anonymous_ids,
                  count(*) AS events,
                  (SELECT count(*) FROM session s WHERE s.site_id = $1 AND s.person_id = $2) AS sessions
           FROM event WHERE site_id = $1 AND person_id = $2""",
        site_id,
        person_id,
    )
    return dict(row)


async def person_events(conn: asyncpg.Connection, site_id: int, person_id: str) -> list[asyncpg.Record]:
    """The person's latest events, newest first."""
    rows: list[Any] = await conn.fetch(
        """SELECT event_at, type, COALESCE(event_name, name) AS event, stage, goal, value, is_bot
           FROM event WHERE site_id = $1 AND person_id = $2
           ORDER BY event_at DESC, message_id DESC LIMIT $3""",
        site_id,
        person_id,
        PERSON_EVENTS_LIMIT,
    )
    return rows


# ---- data quality --------------------------------------------------------------------------------


def _quality_events_sql(q: Query) -> str:
    return f"""SELECT {q.bucket("received_at")} AS bucket, count(*) FILTER (WHERE is_bot) AS bots,
                   count(*) FILTER (WHERE event_at < received_at - interval '{LATE_AFTER}') AS late,
                   count(*) FILTER (WHERE is_order AND NOT is_bot AND value IS NULL
                                      AND upper(btrim(properties->>'currency'))
                                          <> (SELECT currency FROM site WHERE site_id = $1)) AS other_currency_orders
            FROM event WHERE site_id = $1 AND received_at >= $2 AND received_at < $3 GROUP BY 1"""


def _quality_counted_sql(q: Query) -> str:
    """The same from the deriver's receipt slots (app.store.report_counters): exact when the
    buckets' edges are on quarter hours."""
    return f"""SELECT {q.bucket("slot")} AS bucket, sum(bots)::bigint AS bots, sum(late)::bigint AS late,
                   COALESCE(sum(unvalued_orders) FILTER (
                     WHERE currency <> (SELECT currency FROM site WHERE site_id = $1)), 0)::bigint
                     AS other_currency_orders
            FROM quality_counter WHERE site_id = $1 AND slot >= $2 AND slot < $3 GROUP BY 1"""


async def quality_counts(conn: asyncpg.Connection, q: Query, counted: bool = False) -> dict[str, list[asyncpg.Record]]:
    """By receipt: ingestion counters (per UTC hour, bucketed by the hour's start), rejections per
    reason, bot events, late events (event time more than 24 h before receipt), and stored copies of
    an order id that an earlier copy beat. `counted`: the event counts from the deriver's counters."""
    counters = await conn.fetch(
        f"""SELECT {q.bucket("hour")} AS bucket, sum(accepted)::bigint AS accepted,
                   sum(duplicates)::bigint AS duplicates, sum(rejected)::bigint AS rejected
            FROM ingest_counter WHERE site_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1""",
        *q.params,
    )
    reasons = await conn.fetch(
        f"""SELECT {q.bucket("received_at")} AS bucket, code, count(*) AS n
            FROM failed_event WHERE site_id = $1 AND received_at >= $2 AND received_at < $3
            GROUP BY 1, 2 ORDER BY 1, 2""",
        *q.params,
    )
    events = await conn.fetch((_quality_counted_sql if counted else _quality_events_sql)(q), *q.params)
    orders = await conn.fetch(
        f"""SELECT {q.bucket("received_at")} AS bucket, count(*) AS n
            FROM duplicate_order WHERE site_id = $1 AND received_at >= $2 AND received_at < $3 GROUP BY 1""",
        *q.params,
    )
    return {"counters": counters, "reasons": reasons, "events": events, "duplicate_orders": orders}


# ---- cohorts -------------------------------------------------------------------------------------


_COHORTS_FROM_EVENTS = """WITH cohort AS (
             SELECT person_id, min(date_trunc('month', event_at AT TIME ZONE $4))::date AS cohort
             FROM event
             WHERE site_id = $1 AND is_first_order AND NOT is_bot AND event_at >= $2 AND event_at < $3
             GROUP BY person_id)
           SELECT c.cohort, date_trunc('month', e.event_at AT TIME ZONE $4)::date AS month,
                  count(DISTINCT e.person_id) AS active,
                  count(DISTINCT e.person_id) FILTER (WHERE e.is_repeat_order) AS repeat_customers,
                  count(*) AS orders, (COALESCE(sum(round(e.value * 100)), 0) / 100)::float8 AS revenue
           FROM cohort c
           JOIN event e ON e.site_id = $1 AND e.person_id = c.person_id AND e.is_order AND NOT e.is_bot
             AND e.event_at < $3
           GROUP BY 1, 2"""
# The same from the deriver's per-customer slots (app.store.report_counters): exact when $2, $3 and
# every local month start between them are on quarter hours. A customer's slots, month by month.
_COHORTS_FROM_COUNTERS = """WITH cohort AS (
             SELECT person_id, min(date_trunc('month', slot AT TIME ZONE $4))::date AS cohort
             FROM customer_orders
             WHERE site_id = $1 AND first_orders > 0 AND slot >= $2 AND slot < $3
             GROUP BY person_id),
           monthly AS (
             SELECT c.cohort, c.person_id, date_trunc('month', o.slot AT TIME ZONE $4)::date AS month,
                    bool_or(o.repeat_orders > 0) AS repeated, sum(o.orders) AS orders, sum(o.cents) AS cents
             FROM cohort c
             CROSS JOIN LATERAL (SELECT slot, orders, repeat_orders, cents FROM customer_orders o
                                 WHERE o.site_id = $1 AND o.person_id = c.person_id AND o.slot < $3 OFFSET 0) o
             GROUP BY 1, 2, 3)
           SELECT cohort, month, count(*) AS active, count(*) FILTER (WHERE repeated) AS repeat_customers,
                  sum(orders)::bigint AS orders, (sum(cents) / 100)::float8 AS revenue
           FROM monthly GROUP BY 1, 2"""


async def cohort_months(conn: asyncpg.Connection, site_id: int, first: date, end: date) -> list[CohortActivity]:
    """cohort_activity of the site-local months [first, end) from the deriver's cohort months."""
    rows = await conn.fetch(
        """SELECT cohort, month, active, repeat_customers, orders, (cents / 100)::float8 AS revenue
           FROM cohort_month WHERE site_id = $1 AND cohort >= $2 AND cohort < $3 AND month < $3 AND active > 0""",
        site_id, first, end,
    )  # fmt: skip
    return _activity(rows)


def _activity(rows: Sequence[Any]) -> list[CohortActivity]:
    return [
        CohortActivity(r["cohort"], r["month"], r["active"], r["repeat_customers"], r["orders"], r["revenue"])
        for r in rows
    ]


async def cohort_activity(
    conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime, tz: str, counted: bool = False
) -> list[CohortActivity]:
    """Customers whose first order is in [start, end), by the local month of that order (their
    cohort); per cohort and local month until `end`: customers with an order, customers with a
    repeat order, orders and revenue. Month 0's `active` is the cohort's size (its first orders).
    `counted`: from the deriver's customer counters."""
    rows = await conn.fetch(_COHORTS_FROM_COUNTERS if counted else _COHORTS_FROM_EVENTS, site_id, start, end, tz)
    return _activity(rows)
