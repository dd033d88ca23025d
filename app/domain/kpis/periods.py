"""The buckets of a period in a time zone (DESIGN §5), and the groups a limited breakdown keeps. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
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


def limited_groups(ranked: list[str], limit: int) -> list[str]:
    """The groups a `limit` keeps, from the limit + 1 groups with the most sessions: none when all of
    them fit (no '(other)' group is needed then)."""
    return ranked[:limit] if len(ranked) > limit else []
