"""Report logic over what the store aggregated: goal-funnel steps and windows, person lookup, cohort
triangles, the RACE one-pager's changes and attainment. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from app.domain.kpis import REGISTRY, Bucket, ratio
from app.domain.person import ANONYMOUS_PREFIX, USER_PREFIX, anonymous_person, user_person
from app.domain.plan import attainment, direction, status

# ---- ordered goal funnel -------------------------------------------------------------------------

MAX_STEPS = 10
DEFAULT_WINDOW = "30d"
MAX_WINDOW = timedelta(days=366)
_WINDOW = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class FunnelStep:
    goal: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class StepLinks:
    """Where a step looks for its completion (indexes into the step list).

    after: the previous required step; between: the optional steps since it (their latest match, if
    any, is the step's lower bound); before: for an optional step, the next required step (its match
    is the upper bound)."""

    after: int | None
    between: tuple[int, ...]
    before: int | None


def parse_window(text: str) -> timedelta:
    """'30m', '12h', '7d', '2w', '90s': a positive duration of at most a year."""
    found = _WINDOW.match(text.strip())
    if not found:
        raise ValueError("must be a number and a unit s, m, h, d or w, like 30m, 12h or 7d")
    window = timedelta(**{_UNITS[found[2]]: int(found[1])})
    if not timedelta(0) < window <= MAX_WINDOW:
        raise ValueError("must be more than 0 and at most 366d")
    return window


def parse_steps(text: str) -> tuple[FunnelStep, ...]:
    """'product_view,add_to_cart?,purchase': goal names in order; a '?' suffix makes a step optional."""
    steps = []
    for part in text.split(","):
        name = part.strip()
        optional = name.endswith("?")
        goal = name.removesuffix("?").strip()
        if not goal:
            raise ValueError("every step needs a goal name (comma-separated, optional ones end in '?')")
        steps.append(FunnelStep(goal, optional))
    if len(steps) > MAX_STEPS:
        raise ValueError(f"at most {MAX_STEPS} steps")
    if steps[0].optional:
        raise ValueError("the first step is the entry and cannot be optional")
    return tuple(steps)


def step_links(steps: Sequence[FunnelStep]) -> list[StepLinks]:
    links = []
    for index, step in enumerate(steps):
        after = next((i for i in range(index - 1, -1, -1) if not steps[i].optional), None)
        between = tuple(range(after + 1, index)) if after is not None else ()
        before = next((i for i in range(index + 1, len(steps)) if not steps[i].optional), None)
        links.append(StepLinks(after, between, before if step.optional else None))
    return links


def goal_funnel(steps: Sequence[FunnelStep], found: Sequence[tuple[int, float | None]]) -> list[dict[str, Any]]:
    """found: (persons, median seconds from the previous matched step) per step, in step order.
    rate_from_previous compares with the previous *required* step (an optional step may be skipped)."""
    top = found[0][0] if found else 0
    links = step_links(steps)
    return [
        {
            "goal": step.goal,
            "optional": step.optional,
            "persons": persons,
            "rate_from_previous": None if link.after is None else ratio(persons, found[link.after][0]),
            "rate_from_top": ratio(persons, top),
            "median_seconds_from_previous": median,
        }
        for step, link, (persons, median) in zip(steps, links, found, strict=True)
    ]


# ---- persons -------------------------------------------------------------------------------------

STAGE_RANK = {"none": 0, "reach": 1, "act": 2, "convert": 3, "engage": 4}


def highest_stage(stages: Iterable[str | None]) -> str:
    """A person's current RACE stage: the highest ever reached (engage > convert > act > reach)."""
    return max((s or "none" for s in stages), key=lambda s: STAGE_RANK.get(s, 0), default="none")


def anonymous_part(given: str) -> str | None:
    """The anonymousId a person reference may name ('a:<id>' or a bare id), to resolve through links."""
    if given.startswith(USER_PREFIX):
        return None
    return given.removeprefix(ANONYMOUS_PREFIX)


def person_candidates(given: str, linked_user: str | None) -> list[str]:
    """Person ids to try, best first: 'u:X' as given; 'a:X' -> its linked user, else itself;
    a bare X -> user X, then the user anonymous id X is linked to, then anonymous X."""
    linked = [user_person(linked_user)] if linked_user else []
    if given.startswith(USER_PREFIX):
        return [given]
    if given.startswith(ANONYMOUS_PREFIX):
        return [*linked, given]
    return [user_person(given), *linked, anonymous_person(given)]


# ---- cohorts -------------------------------------------------------------------------------------


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_of_index(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def parse_month(text: str) -> date:
    """'YYYY-MM' -> the month's first day."""
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise ValueError("must be YYYY-MM")
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12 or year < 2000:
        raise ValueError("must be YYYY-MM with a month 01-12 and a year from 2000")
    return date(year, month, 1)


@dataclass(frozen=True, slots=True)
class CohortActivity:
    cohort: date  # first day of the cohort's month
    month: date  # first day of the month of activity
    active: int
    repeat_customers: int
    orders: int
    revenue: float


def cohort_table(
    sizes: Mapping[date, int], activity: Iterable[CohortActivity], first: date, last: date
) -> list[dict[str, Any]]:
    """Every cohort month first..last, each with months offset 0..(last - cohort), zero-filled."""
    found = {(a.cohort, a.month): a for a in activity}
    cohorts = []
    for cohort_index in range(month_index(first), month_index(last) + 1):
        cohort = month_of_index(cohort_index)
        customers = sizes.get(cohort, 0)
        months = []
        for offset in range(month_index(last) - cohort_index + 1):
            month = month_of_index(cohort_index + offset)
            got = found.get((cohort, month)) or CohortActivity(cohort, month, 0, 0, 0, 0.0)
            months.append(
                {
                    "offset": offset,
                    "month": month.strftime("%Y-%m"),
                    "active": got.active,
                    "active_share": ratio(got.active, customers),
                    "repeat_customers": got.repeat_customers,
                    "repeat_share": ratio(got.repeat_customers, customers),
                    "orders": got.orders,
                    "revenue": got.revenue,
                }
            )
        cohorts.append({"cohort": cohort.strftime("%Y-%m"), "customers": customers, "months": months})
    return cohorts


# ---- the RACE one-pager --------------------------------------------------------------------------


def change(value: float | None, previous: float | None) -> tuple[float | None, float | None]:
    """(absolute, relative) change; relative is null when the previous value is 0 or null."""
    if value is None or previous is None:
        return None, None
    return value - previous, ratio(value - previous, abs(previous))


def report_stages(
    current: Mapping[str, float | int | None],
    previous: Mapping[str, float | int | None],
    targets: Mapping[str, float],
    month: Bucket,
    now: datetime,
) -> list[dict[str, Any]]:
    """Each stage's KPIs: value, previous month, change, and the plan: target, the KPI's direction,
    attainment and status as in app/domain/plan.py (null without a target)."""
    stages = []
    for stage, names in REGISTRY.stage_kpis().items():
        rows = []
        for kpi in names:
            value, before = current.get(kpi), previous.get(kpi)
            absolute, relative = change(value, before)
            target = targets.get(kpi)
            rows.append(
                {
                    "kpi": kpi,
                    "value": value,
                    "previous": before,
                    "change": absolute,
                    "change_ratio": relative,
                    "target": target,
                    "direction": direction(kpi).value,
                    "attainment": None if target is None else attainment(kpi, value, target),
                    "status": None if target is None else status(kpi, value, target, month, now).value,
                }
            )
        stages.append({"stage": stage, "kpis": rows})
    return stages
