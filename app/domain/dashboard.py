"""The dashboard's view logic. Pure: period presets and their comparison periods, plan status
colours, and how each KPI is written as text (its label, unit and direction: the KPI registry).
No I/O, no clock (callers pass `today` / `now`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from app.domain.kpis import REGISTRY, Direction
from app.domain.reports import month_index, month_of_index

PRESETS = {
    "this_month": "This month",
    "last_month": "Last month",
    "last_7": "Last 7 days",
    "last_30": "Last 30 days",
    "last_90": "Last 90 days",
    "custom": "Custom",
}
MAX_CUSTOM_DAYS = 731


def _lower_is_better(kpi: str) -> bool:
    return REGISTRY.kpi(kpi).direction is Direction.LOWER



# Plan status: the projected (running month) or actual value against the target.
GREEN_FROM = 1.0  # on or beyond target
AMBER_FROM = 0.9  # within 10 % of it

Status = Literal["green", "amber", "red"]


@dataclass(frozen=True, slots=True)
class Period:
    """Calendar days [start, end) in the view's time zone."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return month_of_index(month_index(day) + 1)


def preset_period(preset: str, today: date, first: date | None = None, last: date | None = None) -> Period:
    """The period a preset names on `today` (today included); custom: first..last, both included."""
    tomorrow = today + timedelta(days=1)
    if preset == "this_month":
        return Period(_month_start(today), tomorrow)
    if preset == "last_month":
        this_month = _month_start(today)
        return Period(month_of_index(month_index(this_month) - 1), this_month)
    if preset.startswith("last_") and preset in PRESETS:
        return Period(tomorrow - timedelta(days=int(preset.removeprefix("last_"))), tomorrow)
    if preset == "custom":
        if first is None or last is None:
            raise ValueError("a custom period needs both its first and last day")
        if last < first:
            raise ValueError("the last day must not be before the first")
        if (last - first).days >= MAX_CUSTOM_DAYS:
            raise ValueError(f"at most {MAX_CUSTOM_DAYS} days")
        return Period(first, last + timedelta(days=1))
    raise ValueError(f"unknown period {preset!r}")


def previous_period(preset: str, period: Period) -> Period:
    """What a period is compared with: the month before for calendar months (month to date: the same
    days of the month before), else the same number of days just before."""
    if preset in ("this_month", "last_month"):
        start = month_of_index(month_index(period.start) - 1)
        if preset == "last_month":
            return Period(start, period.start)
        return Period(start, min(start + timedelta(days=period.days), period.start))
    return Period(period.start - timedelta(days=period.days), period.start)


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def year_before(period: Period) -> Period:
    return Period(_year_before(period.start), _year_before(period.end))


def plan_month(period: Period) -> Period:
    """The calendar month whose targets the page shows: the month of the period's last day."""
    start = _month_start(period.last)
    return Period(start, _next_month(start))


def cohort_months(period: Period, months: int = 6) -> Period:
    """The cohort grid: the `months` calendar months up to the period's last day."""
    end = _next_month(_month_start(period.last))
    return Period(month_of_index(month_index(end) - months), end)


def plan_status(kpi: str, value: float | None, target: float | None) -> Status | None:
    """Red / amber / green of a value against its target, knowing which KPIs are better lower."""
    if value is None or target is None:
        return None
    if _lower_is_better(kpi):
        if value <= target:
            return "green"
        return "amber" if target > 0 and target / value >= AMBER_FROM else "red"
    if target <= 0:
        return "green" if value >= target else "red"
    share = value / target
    return "green" if share >= GREEN_FROM else "amber" if share >= AMBER_FROM else "red"


def change_ratio(value: float | None, before: float | None) -> float | None:
    if value is None or before is None or before == 0:
        return None
    return (value - before) / abs(before)


def trend(kpi: str, ratio: float | None) -> Literal["better", "worse", "same"] | None:
    """Whether a change is good news (the arrow's colour)."""
    if ratio is None:
        return None
    if ratio == 0:
        return "same"
    up = ratio > 0
    return "better" if up != _lower_is_better(kpi) else "worse"


class KpiLabels(Mapping[str, str]):
    """Each KPI's label, as the registry has it (a template reads labels[kpi])."""

    def __getitem__(self, kpi: str) -> str:
        return REGISTRY.kpi(kpi).label

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY.names())

    def __len__(self) -> int:
        return len(REGISTRY.names())


KPI_LABELS = KpiLabels()


def kpi_text(kpi: str, value: float | None) -> str:
    """A KPI's value as the page writes it ('—' for a ratio over nothing)."""
    if value is None:
        return "—"
    shown_as = REGISTRY.kpi(kpi).shown_as
    if shown_as == "percent":
        return f"{value * 100:.1f} %"
    if shown_as == "money":
        return f"{value:,.2f}"
    if shown_as == "decimal":
        return f"{value:,.1f}"
    if shown_as == "duration":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min {seconds:02d} s"
    return f"{round(value):,}"


def ratio_text(ratio: float | None, signed: bool = False) -> str:
    if ratio is None:
        return "—"
    return f"{ratio * 100:+.1f} %" if signed else f"{ratio * 100:.1f} %"
