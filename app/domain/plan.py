"""Plan targets against actuals: attainment by each KPI's direction, status and the month-end
projection (which KPIs are projected and which are better lower: the KPI registry). Pure: no I/O
(the caller passes `now`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from app.domain.kpis import REGISTRY, Bucket, Direction


def direction(kpi: str) -> Direction:
    """Whether more or less of the KPI is better (bounce_rate: less)."""
    return REGISTRY.kpi(kpi).direction


# A projection is offered once this share of the month has passed (a week of a 28-day month): nine
# hours into a month, one busy morning would be multiplied by 80.
PACING_MIN_SHARE = 0.25


class Status(StrEnum):
    MET = "met"  # the month is over and the target was reached
    MISSED = "missed"  # the month is over and it was not
    ON_TRACK = "on_track"  # running: the projection reaches the target
    OFF_TRACK = "off_track"  # running: the projection does not
    TOO_EARLY = "too_early"  # running, less than PACING_MIN_SHARE of it passed: no projection yet
    NOT_STARTED = "not_started"  # the month lies ahead
    NO_DATA = "no_data"  # the actual is null (a ratio over nothing)


def attainment(kpi: str, actual: float | None, target: float) -> float | None:
    """How far the target is reached, 1.0 = exactly, above 1 = better than planned, whatever the
    direction: actual / target when higher is better, target / actual when lower is better (a bounce
    rate of 0.20 against a 0.40 target attains 2.0). Null when a denominator is 0 or actual is null."""
    if actual is None:
        return None
    numerator, denominator = (target, actual) if direction(kpi) is Direction.LOWER else (actual, target)
    return None if denominator == 0 else float(numerator) / float(denominator)


def reaches(kpi: str, actual: float, target: float) -> bool:
    return actual <= target if direction(kpi) is Direction.LOWER else actual >= target


def elapsed_share(bucket: Bucket, now: datetime) -> float:
    """The share of the bucket that has passed at now, 0..1."""
    if now <= bucket.start:
        return 0.0
    if now >= bucket.end:
        return 1.0
    return (now - bucket.start) / (bucket.end - bucket.start)


def pacing(kpi: str, actual: float | None, bucket: Bucket, now: datetime) -> float | None:
    """The value at the bucket's end if the trend so far holds; None unless the bucket is running and
    at least PACING_MIN_SHARE of it has passed."""
    share = elapsed_share(bucket, now)
    if actual is None or not 0 < share < 1 or share < PACING_MIN_SHARE:
        return None
    if not REGISTRY.kpi(kpi).projected:
        return actual
    return actual / share


def status(kpi: str, actual: float | None, target: float, bucket: Bucket, now: datetime) -> Status:
    share = elapsed_share(bucket, now)
    if share == 0:
        return Status.NOT_STARTED
    if actual is None:
        return Status.NO_DATA
    if share == 1:
        return Status.MET if reaches(kpi, actual, target) else Status.MISSED
    projected = pacing(kpi, actual, bucket, now)
    if projected is None:
        return Status.TOO_EARLY
    return Status.ON_TRACK if reaches(kpi, projected, target) else Status.OFF_TRACK


def plan(kpi: str, actual: float | None, target: float, bucket: Bucket, now: datetime) -> dict[str, Any]:
    """A month bucket's plan entry for one KPI: target, direction, attainment, status, and for the
    running month the share of it that has passed (`elapsed_share`) and, once that share is at least
    PACING_MIN_SHARE, `pacing` (projected month-end value) with its `pacing_attainment`."""
    entry: dict[str, Any] = {
        "target": target,
        "direction": direction(kpi).value,
        "attainment": attainment(kpi, actual, target),
        "status": status(kpi, actual, target, bucket, now).value,
    }
    share = elapsed_share(bucket, now)
    if 0 < share < 1:
        entry["elapsed_share"] = share
        projected = pacing(kpi, actual, bucket, now)
        if projected is not None:
            entry |= {"pacing": projected, "pacing_attainment": attainment(kpi, projected, target)}
    return entry
