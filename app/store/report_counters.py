"""The deriver's report counters (SQL only): what /v1/quality and /v1/cohorts read instead of the
period's events. Both are additive, kept in the derivation's transaction (so they hold exactly the
derived events, as the rollups do) and rebuilt from the events like the rollups (app.rollups).

- `quality_counter`, per 15-minute *receipt* slot and currency text: stored events that are bots,
  events that came more than 24 h after their event time (bots included), and non-bot orders
  without a value (per the currency they were sent in: whether it is another than the site's is
  decided when reading, so a change of the site's currency needs no rebuild). Any bucket whose
  edges are on quarter hours is a union of slots: exact in every zone.
- `customer_orders`, per customer and 15-minute slot of *event* time: their non-bot orders, first
  orders, repeat orders and the orders' value in cents. A cohort read aggregates the customers of
  the period, not its events. A row depends only on the customer's own events of its slot.

Appended events add to both in the statement that moves them into `event` (app.store.inbox);
a stored event that leaves `event` (a demoted order copy, an erasure) is subtracted in the
statement or transaction that deletes it; a stored event whose facts change is subtracted before
and added after (`recount_stored`); a person derived again has their customer rows recomputed
(`recount_customers`).

Every statement here uses $1 for the site id (they are composed into statements that do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from app.store.report_queries import LATE_AFTER
from app.store.rollups import SLOT

# The columns of `event` a quality count reads, as a row source for `quality_add` gives them
QUALITY_COLUMNS = "received_at, event_at, is_bot, is_order, value, upper(btrim(properties->>'currency')) AS currency"
CUSTOMER_COLUMNS = "person_id, event_at, is_bot, is_order, is_first_order, is_repeat_order, value"
COUNTED_COLUMNS = f"{QUALITY_COLUMNS}, person_id, is_first_order, is_repeat_order"  # both
_UNVALUED = "s.is_order AND NOT s.is_bot AND s.value IS NULL AND s.currency IS NOT NULL"
_LATE = f"s.event_at < s.received_at - interval '{LATE_AFTER}'"


def quality_add(source: str, sign: str = "") -> str:
    """An upsert adding (sign '') or subtracting (sign '-') the quality counts of the rows of
    `source` (a CTE or subquery with QUALITY_COLUMNS) to their slots."""
    return f"""INSERT INTO quality_counter AS c (site_id, slot, currency, bots, late, unvalued_orders)
  SELECT $1, {SLOT.format(col="s.received_at")}, COALESCE(s.currency, ''), {sign}count(*) FILTER (WHERE s.is_bot),
         {sign}count(*) FILTER (WHERE {_LATE}), {sign}count(*) FILTER (WHERE {_UNVALUED})
  FROM {source} s
  GROUP BY 2, 3 HAVING count(*) FILTER (WHERE s.is_bot OR {_LATE} OR {_UNVALUED}) > 0
  ON CONFLICT (site_id, slot, currency) DO UPDATE SET bots = c.bots + EXCLUDED.bots,
    late = c.late + EXCLUDED.late, unvalued_orders = c.unvalued_orders + EXCLUDED.unvalued_orders"""


def customers_add(source: str) -> str:
    """An upsert adding the orders among the rows of `source` (CUSTOMER_COLUMNS) to their
    customers' slots."""
    return f"""INSERT INTO customer_orders AS c (site_id, person_id, slot, orders, first_orders, repeat_orders, cents)
  SELECT $1, s.person_id, {SLOT.format(col="s.event_at")}, count(*), count(*) FILTER (WHERE s.is_first_order),
         count(*) FILTER (WHERE s.is_repeat_order), COALESCE(sum(round(s.value * 100)), 0)
  FROM {source} s WHERE s.is_order AND NOT s.is_bot
  GROUP BY 2, 3
  ON CONFLICT (site_id, person_id, slot) DO UPDATE SET orders = c.orders + EXCLUDED.orders,
    first_orders = c.first_orders + EXCLUDED.first_orders, repeat_orders = c.repeat_orders + EXCLUDED.repeat_orders,
    cents = c.cents + EXCLUDED.cents"""


def _cohorts_add(rows: str, sign: str, zone: str = "$3") -> str:
    """An upsert adding (sign '') or subtracting ('-') what the customer_orders rows of `rows`
    (whole customers' rows) make of their customers in `cohort_month`, months in the zone `zone`
    (a parameter)."""
    return f"""WITH r AS {rows},
  firsts AS (SELECT person_id, date_trunc('month', min(slot) FILTER (WHERE first_orders > 0) AT TIME ZONE {zone})::date
               AS cohort
             FROM r GROUP BY 1),
  monthly AS (SELECT f.cohort, r.person_id, date_trunc('month', r.slot AT TIME ZONE {zone})::date AS month,
                     bool_or(r.repeat_orders > 0) AS repeated, sum(r.orders) AS orders, sum(r.cents) AS cents
              FROM r JOIN firsts f ON f.person_id = r.person_id WHERE f.cohort IS NOT NULL GROUP BY 1, 2, 3)
  INSERT INTO cohort_month AS c (site_id, cohort, month, active, repeat_customers, orders, cents)
  SELECT $1, cohort, month, {sign}count(*), {sign}count(*) FILTER (WHERE repeated), {sign}sum(orders), {sign}sum(cents)
  FROM monthly GROUP BY 2, 3
  ON CONFLICT (site_id, cohort, month) DO UPDATE SET active = c.active + EXCLUDED.active,
    repeat_customers = c.repeat_customers + EXCLUDED.repeat_customers, orders = c.orders + EXCLUDED.orders,
    cents = c.cents + EXCLUDED.cents"""


_CUSTOMER_ROW = "person_id, slot, orders, first_orders, repeat_orders, cents"
_CUSTOMERS_OF = f"""(SELECT o.* FROM unnest($2::text[]) AS p(person_id) CROSS JOIN LATERAL
     (SELECT {_CUSTOMER_ROW} FROM customer_orders WHERE site_id = $1 AND person_id = p.person_id OFFSET 0) o)"""
_COHORTS_OUT, _COHORTS_IN = _cohorts_add(_CUSTOMERS_OF, "-"), _cohorts_add(_CUSTOMERS_OF, "")


async def count_cohorts(
    conn: asyncpg.Connection, site_id: int, zone: str, person_ids: Sequence[str], sign: str
) -> None:
    """Take these customers out of `cohort_month` ('-': before their customer rows change) or put
    them in ('': after), months in the site's zone."""
    if person_ids:
        await conn.execute(_COHORTS_OUT if sign else _COHORTS_IN, site_id, sorted(set(person_ids)), zone)


def _stored(columns: str) -> str:
    """These columns of the stored events whose ids are $2, one primary-key probe each."""
    return f"""(SELECT e.* FROM unnest($2::int8[]) AS k(event_id) CROSS JOIN LATERAL
               (SELECT {columns} FROM event WHERE site_id = $1 AND event_id = k.event_id OFFSET 0) e)"""


async def recount_stored(conn: asyncpg.Connection, site_id: int, event_ids: Sequence[int], sign: str) -> None:
    """Subtract ('-') or add ('') the quality counts of these stored events (their facts change
    in between)."""
    if event_ids:
        await conn.execute(quality_add(_stored(QUALITY_COLUMNS), sign), site_id, list(event_ids))


async def recount_customers(conn: asyncpg.Connection, site_id: int, person_ids: Sequence[str]) -> None:
    """These persons' customer rows recomputed from their stored events (a person derived again:
    facts, person ids or order copies changed)."""
    if not person_ids:
        return
    persons = sorted(set(person_ids))
    await conn.execute(
        """DELETE FROM customer_orders WHERE ctid = ANY(ARRAY(
             SELECT t.tid FROM unnest($2::text[]) AS p(person_id) CROSS JOIN LATERAL
               (SELECT ctid AS tid FROM customer_orders WHERE site_id = $1 AND person_id = p.person_id OFFSET 0) t))""",
        site_id, persons,
    )  # fmt: skip
    orders = f"""(SELECT e.* FROM unnest($2::text[]) AS p(person_id) CROSS JOIN LATERAL
                 (SELECT {CUSTOMER_COLUMNS} FROM event
                  WHERE site_id = $1 AND person_id = p.person_id AND is_order AND NOT is_bot OFFSET 0) e)"""
    await conn.execute(customers_add(orders), site_id, persons)


async def forget_person(conn: asyncpg.Connection, site_id: int, zone: str, person_id: str) -> None:
    """Before an erasure deletes the person's events: their quality counts and cohort months out,
    their customer rows gone."""
    events = f"(SELECT {QUALITY_COLUMNS} FROM event WHERE site_id = $1 AND person_id = $2)"
    await conn.execute(quality_add(events, "-"), site_id, person_id)
    await count_cohorts(conn, site_id, zone, [person_id], "-")
    await conn.execute("DELETE FROM customer_orders WHERE site_id = $1 AND person_id = $2", site_id, person_id)


# --- rebuilds (app.rollups: under the site's derivation lock, a day per transaction) ---------------


async def rebuild_quality(conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime) -> None:
    """The quality slots of [start, end) (quarter boundaries) recomputed from the events received then."""
    await conn.execute(
        "DELETE FROM quality_counter WHERE site_id = $1 AND slot >= $2 AND slot < $3", site_id, start, end
    )
    events = f"""(SELECT {QUALITY_COLUMNS} FROM event
                 WHERE site_id = $1 AND received_at >= $2::timestamptz AND received_at < $3::timestamptz)"""
    await conn.execute(quality_add(events), site_id, start, end)


async def rebuild_customers(conn: asyncpg.Connection, site_id: int, start: datetime, end: datetime) -> None:
    """The customer rows of the slots of [start, end) recomputed from the orders of that time."""
    await conn.execute(
        "DELETE FROM customer_orders WHERE site_id = $1 AND slot >= $2 AND slot < $3", site_id, start, end
    )
    orders = f"""(SELECT {CUSTOMER_COLUMNS} FROM event WHERE site_id = $1 AND is_order AND NOT is_bot
                 AND event_at >= $2::timestamptz AND event_at < $3::timestamptz)"""
    await conn.execute(customers_add(orders), site_id, start, end)


async def rebuild_cohort_months(conn: asyncpg.Connection, site_id: int, zone: str) -> None:
    """`cohort_month` recomputed from every customer row of the site (once those are exact)."""
    await conn.execute("DELETE FROM cohort_month WHERE site_id = $1", site_id)
    rows = f"(SELECT {_CUSTOMER_ROW} FROM customer_orders WHERE site_id = $1)"
    await conn.execute(_cohorts_add(rows, "", "$2"), site_id, zone)


async def quality_span(conn: asyncpg.Connection, site_id: int) -> tuple[datetime | None, datetime | None]:
    """The first and last receipt time of the site's events or quality slots."""
    row = await conn.fetchrow(
        """SELECT LEAST((SELECT min(received_at) FROM event WHERE site_id = $1),
                        (SELECT min(slot) FROM quality_counter WHERE site_id = $1)) AS first,
                  GREATEST((SELECT max(received_at) FROM event WHERE site_id = $1),
                           (SELECT max(slot) FROM quality_counter WHERE site_id = $1)) AS last""",
        site_id,
    )
    return row["first"], row["last"]


async def customer_span(conn: asyncpg.Connection, site_id: int) -> tuple[datetime | None, datetime | None]:
    """The first and last event time of the site's orders or customer slots."""
    row = await conn.fetchrow(
        """SELECT LEAST((SELECT min(event_at) FROM event WHERE site_id = $1 AND is_order AND NOT is_bot),
                        (SELECT min(slot) FROM customer_orders WHERE site_id = $1)) AS first,
                  GREATEST((SELECT max(event_at) FROM event WHERE site_id = $1 AND is_order AND NOT is_bot),
                           (SELECT max(slot) FROM customer_orders WHERE site_id = $1)) AS last""",
        site_id,
    )
    return row["first"], row["last"]
