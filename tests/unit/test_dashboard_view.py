"""The dashboard's pure view logic: periods and their comparisons, plan status, KPI text."""

from __future__ import annotations

from datetime import date

import pytest

from app.domain.dashboard import (
    Period,
    cohort_months,
    kpi_text,
    plan_month,
    plan_status,
    preset_period,
    previous_period,
    trend,
    year_before,
)

TODAY = date(2026, 3, 15)


@pytest.mark.parametrize(
    ("preset", "expected", "before"),
    [
        ("this_month", Period(date(2026, 3, 1), date(2026, 3, 16)), Period(date(2026, 2, 1), date(2026, 2, 16))),
        ("last_month", Period(date(2026, 2, 1), date(2026, 3, 1)), Period(date(2026, 1, 1), date(2026, 2, 1))),
        ("last_7", Period(date(2026, 3, 9), date(2026, 3, 16)), Period(date(2026, 3, 2), date(2026, 3, 9))),
        ("last_90", Period(date(2025, 12, 16), date(2026, 3, 16)), Period(date(2025, 9, 17), date(2025, 12, 16))),
    ],
)
def test_presets_and_what_they_are_compared_with(preset: str, expected: Period, before: Period) -> None:
    assert preset_period(preset, TODAY) == expected
    assert previous_period(preset, expected) == before


def test_month_to_date_is_compared_with_as_many_days_clipped_to_the_month_before() -> None:
    period = preset_period("this_month", date(2026, 3, 31))
    assert previous_period("this_month", period) == Period(date(2026, 2, 1), date(2026, 3, 1))


def test_custom_periods_include_their_last_day_and_refuse_nonsense() -> None:
    one_day = Period(date(2026, 1, 1), date(2026, 1, 2))
    assert preset_period("custom", TODAY, date(2026, 1, 1), date(2026, 1, 1)) == one_day
    with pytest.raises(ValueError, match="before"):
        preset_period("custom", TODAY, date(2026, 1, 2), date(2026, 1, 1))
    with pytest.raises(ValueError, match="both"):
        preset_period("custom", TODAY, date(2026, 1, 2), None)
    with pytest.raises(ValueError, match="unknown"):
        preset_period("last_8", TODAY)


def test_year_before_plan_month_and_cohorts() -> None:
    assert year_before(Period(date(2024, 2, 29), date(2024, 3, 1))) == Period(date(2023, 2, 28), date(2023, 3, 1))
    assert plan_month(Period(date(2026, 2, 20), date(2026, 3, 1))) == Period(date(2026, 2, 1), date(2026, 3, 1))
    assert cohort_months(Period(date(2026, 3, 1), date(2026, 3, 16))) == Period(date(2025, 10, 1), date(2026, 4, 1))


@pytest.mark.parametrize(
    ("kpi", "value", "target", "status"),
    [
        ("revenue", 1000, 1000, "green"),
        ("revenue", 950, 1000, "amber"),
        ("revenue", 800, 1000, "red"),
        ("bounce_rate", 0.30, 0.40, "green"),  # lower is better: under target is good
        ("bounce_rate", 0.42, 0.40, "amber"),
        ("bounce_rate", 0.60, 0.40, "red"),
        ("revenue", None, 1000, None),
    ],
)
def test_plan_status_knows_lower_is_better(kpi: str, value: float | None, target: float, status: str | None) -> None:
    assert plan_status(kpi, value, target) == status


def test_trend_and_text() -> None:
    assert trend("visitors", 0.1) == "better" and trend("bounce_rate", 0.1) == "worse"
    assert trend("bounce_rate", -0.1) == "better" and trend("visitors", None) is None
    assert kpi_text("bounce_rate", 0.4567) == "45.7 %"
    assert kpi_text("revenue", 12345.678) == "12,345.68"
    assert kpi_text("avg_session_seconds", 125) == "2 min 05 s"
    assert kpi_text("visitors", 1234) == "1,234"
    assert kpi_text("aov", None) == "—"
