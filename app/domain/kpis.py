"""KPI definitions (DESIGN §5) over counts, and the buckets of a period in a time zone. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


@dataclass(frozen=True, slots=True)
class Bucket:
    aligned: datetime  # the calendar start (date_trunc), the key rows are matched on
    start: datetime  # aligned clipped to the period's start
    end: datetime  # next calendar start clipped to the period's end


def _next_start(local: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.DAY:
        day = local.date() + timedelta(days=1)
    elif granularity is Granularity.WEEK:
        day = local.date() + timedelta(days=7)
    else:
        day = date(local.year + local.month // 12, local.month % 12 + 1, 1)
    return datetime.combine(day, time(), tzinfo=local.tzinfo)


def _floor(moment: datetime, granularity: Granularity, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    day = local.date()
    if granularity is Granularity.WEEK:
        day -= timedelta(days=day.weekday())
    elif granularity is Granularity.MONTH:
        day = day.replace(day=1)
    return datetime.combine(day, time(), tzinfo=zone)


def buckets(start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo) -> list[Bucket]:
    """Calendar buckets of [start, end) in zone; day/week (ISO, Monday)/month, or one total bucket."""
    if granularity is Granularity.TOTAL:
        return [Bucket(start, start, end)]
    out: list[Bucket] = []
    aligned = _floor(start, granularity, zone)
    while aligned < end:
        following = _next_start(aligned, granularity)
        out.append(Bucket(aligned, max(aligned, start), min(following, end)))
        aligned = following
    return out


def parse_bound(value: str, zone: ZoneInfo) -> datetime:
    """A date (local midnight in zone) or an ISO timestamp (zone applied when it has no offset)."""
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=zone)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


@dataclass(slots=True)
class Counts:
    """Additive and distinct counts of one bucket and group, as the store computes them."""

    visitors: int = 0
    new_visitors: int = 0
    sessions: int = 0
    pageviews: int = 0
    bounces: int = 0
    session_seconds: float = 0.0
    act_events: int = 0
    leads: int = 0
    lead_persons: int = 0
    orders: int = 0
    revenue: int = 0  # money in cents (minor units): sums are exact integers
    new_customers: int = 0
    order_persons: int = 0
    offline_orders: int = 0
    offline_revenue: int = 0  # cents
    engage_events: int = 0
    repeat_orders: int = 0
    repeat_customers: int = 0
    customers_to_date: int = 0
    active_customers: int = 0
    revenue_to_date: int = 0  # cents
    nps_responses: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0


def limited_groups(ranked: list[str], limit: int) -> list[str]:
    """The groups a `limit` keeps, from the limit + 1 groups with the most sessions: none when all of
    them fit (no '(other)' group is needed then)."""
    return ranked[:limit] if len(ranked) > limit else []


# The RACE one-pager (/v1/report): which KPIs each stage shows, in this order.
STAGE_KPIS: dict[str, tuple[str, ...]] = {
    "reach": ("visitors", "new_visitors", "sessions", "pageviews", "bounce_rate", "value_per_visit"),
    "act": ("act_events", "leads", "lead_rate", "pages_per_session", "avg_session_seconds"),
    "convert": ("orders", "revenue", "aov", "new_customers", "conversion_rate", "offline_orders", "offline_revenue"),
    "engage": (
        "engage_events",
        "repeat_orders",
        "repeat_customers",
        "repeat_purchase_rate",
        "customers_to_date",
        "active_customer_rate",
        "clv",
        "nps",
    ),
}

# Every KPI of /v1/kpis, in the order of its CSV columns.
KPI_NAMES = tuple(name for names in STAGE_KPIS.values() for name in names)


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


# Money is added up in cents (minor units, two decimals), as integers: exact, in every path (SQL
# over the events, rollups, Python), and written in currency units rounded to the cent, so the same
# revenue reads the same everywhere. A value with more decimals counts to the nearest cent.
MONEY_SCALE = 100


def cents(value: float | None) -> int:
    """An amount in cents, rounded as PostgreSQL's round(value * 100) rounds (to nearest, ties to even)."""
    return round((value or 0.0) * MONEY_SCALE)


def money(amount_cents: int) -> float:
    return amount_cents / MONEY_SCALE


def money_ratio(amount_cents: int, denominator: float) -> float | None:
    """Money per something (AOV, CLV, value per visit), rounded to the cent."""
    return None if denominator == 0 else round(amount_cents / denominator) / MONEY_SCALE


def kpis_of(c: Counts) -> dict[str, float | int | None]:
    nps = ratio(100 * (c.nps_promoters - c.nps_detractors), c.nps_responses)
    return {
        "visitors": c.visitors,
        "new_visitors": c.new_visitors,
        "sessions": c.sessions,
        "pageviews": c.pageviews,
        "bounce_rate": ratio(c.bounces, c.sessions),
        "value_per_visit": money_ratio(c.revenue, c.sessions),
        "act_events": c.act_events,
        "leads": c.leads,
        "lead_rate": ratio(c.lead_persons, c.visitors),
        "pages_per_session": ratio(c.pageviews, c.sessions),
        "avg_session_seconds": ratio(c.session_seconds, c.sessions),
        "orders": c.orders,
        "revenue": money(c.revenue),
        "aov": money_ratio(c.revenue, c.orders),
        "new_customers": c.new_customers,
        "conversion_rate": ratio(c.order_persons, c.visitors),
        "offline_orders": c.offline_orders,
        "offline_revenue": money(c.offline_revenue),
        "engage_events": c.engage_events,
        "repeat_orders": c.repeat_orders,
        "repeat_customers": c.repeat_customers,
        "repeat_purchase_rate": ratio(c.repeat_customers, c.order_persons),
        "customers_to_date": c.customers_to_date,
        "active_customer_rate": ratio(c.active_customers, c.customers_to_date),
        "clv": money_ratio(c.revenue_to_date, c.customers_to_date),
        "nps": nps,
    }


class FunnelKind(StrEnum):
    NESTED = "nested"  # persons who reached this stage and every earlier one (the default)
    INDEPENDENT = "independent"  # persons who reached this stage, whatever the others


RACE_STAGES = ("reach", "act", "convert", "engage")


def nested_counts(stage_persons: Mapping[str, Any]) -> dict[str, int]:
    """Persons in each RACE stage's set and in every earlier stage's set (reach: every person seen).
    Works on Python sets and on roaring bitmaps alike."""
    counts: dict[str, int] = {}
    running: Any = None
    for stage in RACE_STAGES:
        persons = stage_persons.get(stage, frozenset())
        running = persons if running is None else running & persons
        counts[stage] = len(running)
    return counts


def race_funnel(nested: Mapping[str, int], independent: Mapping[str, int], kind: FunnelKind) -> list[dict[str, object]]:
    """The RACE funnel's steps: `persons` and rates of the chosen kind, both counts beside."""
    chosen = nested if kind is FunnelKind.NESTED else independent
    steps = funnel_steps([(stage, chosen[stage]) for stage in RACE_STAGES])
    return [
        {"stage": stage, **{k: v for k, v in step.items() if k != "label"},
         "nested_persons": nested[stage], "independent_persons": independent[stage]}
        for stage, step in zip(RACE_STAGES, steps, strict=True)
    ]  # fmt: skip


def funnel_steps(counts: list[tuple[str, int]]) -> list[dict[str, object]]:
    """Each step's persons, rate against the previous step and against the top."""
    top = counts[0][1] if counts else 0
    steps: list[dict[str, object]] = []
    previous: int | None = None
    for label, persons in counts:
        steps.append(
            {
                "persons": persons,
                "rate_from_previous": None if previous is None else ratio(persons, previous),
                "rate_from_top": ratio(persons, top),
                "label": label,
            }
        )
        previous = persons
    return steps
