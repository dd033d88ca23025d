"""Targets against actuals: direction, attainment, status and when a projection is offered (app/domain/plan.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.kpis import REGISTRY, Bucket, Direction
from app.domain.plan import (
    PACING_MIN_SHARE,
    attainment,
    direction,
    elapsed_share,
    pacing,
    plan,
    status,
)

MARCH_START, APRIL_START = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
MARCH = Bucket(MARCH_START, MARCH_START, APRIL_START)
DAY_11 = datetime(2026, 3, 11, tzinfo=UTC)  # 10 of 31 days gone
NINE_HOURS_IN = MARCH_START + timedelta(hours=9)


def test_every_kpi_knows_its_direction_and_bounce_rate_is_lower_is_better() -> None:
    assert [k for k in REGISTRY.names() if direction(k) is Direction.LOWER] == ["bounce_rate"]
    assert direction("conversion_rate") is Direction.HIGHER


@pytest.mark.parametrize(
    ("kpi", "actual", "target", "expected"),
    [
        ("revenue", 150.0, 300.0, 0.5),
        ("revenue", 600.0, 300.0, 2.0),
        ("bounce_rate", 0.076, 0.40, 0.40 / 0.076),  # far better than planned: well above 1
        ("bounce_rate", 0.80, 0.40, 0.5),  # twice the planned bounce rate: half attained
        ("bounce_rate", 0.40, 0.40, 1.0),
        ("bounce_rate", 0.0, 0.40, None),  # no bounce at all: unbounded, status says met
        ("revenue", 10.0, 0.0, None),
        ("revenue", None, 10.0, None),
    ],
)
def test_attainment_follows_the_direction(
    kpi: str, actual: float | None, target: float, expected: float | None
) -> None:
    assert attainment(kpi, actual, target) == (None if expected is None else pytest.approx(expected))


def test_status_of_a_month_that_is_over_follows_the_direction() -> None:
    after = datetime(2026, 4, 2, tzinfo=UTC)
    assert status("bounce_rate", 0.076, 0.40, MARCH, after) == "met"
    assert status("bounce_rate", 0.5, 0.40, MARCH, after) == "missed"
    assert status("bounce_rate", 0.0, 0.40, MARCH, after) == "met"
    assert status("revenue", 300.0, 300.0, MARCH, after) == "met"
    assert status("revenue", 299.0, 300.0, MARCH, after) == "missed"
    assert status("conversion_rate", None, 0.02, MARCH, after) == "no_data"
    assert status("revenue", 0.0, 300.0, MARCH, datetime(2026, 2, 27, tzinfo=UTC)) == "not_started"


def test_pacing_projects_counts_linearly_and_carries_ratios_in_the_running_month() -> None:
    assert pacing("revenue", 100.0, MARCH, DAY_11) == pytest.approx(310.0)
    assert pacing("conversion_rate", 0.05, MARCH, DAY_11) == 0.05
    assert pacing("revenue", None, MARCH, DAY_11) is None
    assert pacing("revenue", 100.0, MARCH, datetime(2026, 4, 2, tzinfo=UTC)) is None  # not running


def test_no_projection_before_a_meaningful_share_of_the_month() -> None:
    # the case: nine hours into a month, 573 orders would project to 47,351
    assert elapsed_share(MARCH, NINE_HOURS_IN) < PACING_MIN_SHARE
    assert pacing("orders", 573.0, MARCH, NINE_HOURS_IN) is None
    assert status("orders", 573.0, 30000.0, MARCH, NINE_HOURS_IN) == "too_early"
    just_before = MARCH_START + (APRIL_START - MARCH_START) * PACING_MIN_SHARE - timedelta(seconds=1)
    assert pacing("orders", 10.0, MARCH, just_before) is None
    at_share = MARCH_START + (APRIL_START - MARCH_START) * PACING_MIN_SHARE
    assert pacing("orders", 10.0, MARCH, at_share) == pytest.approx(10.0 / PACING_MIN_SHARE)


def test_running_status_follows_the_projection_and_the_direction() -> None:
    assert status("revenue", 100.0, 300.0, MARCH, DAY_11) == "on_track"  # projects 310
    assert status("revenue", 90.0, 300.0, MARCH, DAY_11) == "off_track"  # projects 279
    assert status("bounce_rate", 0.35, 0.40, MARCH, DAY_11) == "on_track"
    assert status("bounce_rate", 0.45, 0.40, MARCH, DAY_11) == "off_track"


def test_plan_entry_says_what_the_projection_rests_on() -> None:
    running = plan("revenue", 100.0, 300.0, MARCH, DAY_11)
    assert running == {
        "target": 300.0,
        "direction": "higher",
        "attainment": pytest.approx(1 / 3),
        "status": "on_track",
        "elapsed_share": pytest.approx(10 / 31),
        "pacing": pytest.approx(310.0),
        "pacing_attainment": pytest.approx(310 / 300),
    }
    early = plan("bounce_rate", 0.5, 0.4, MARCH, NINE_HOURS_IN)
    assert early == {
        "target": 0.4,
        "direction": "lower",
        "attainment": pytest.approx(0.8),
        "status": "too_early",
        "elapsed_share": pytest.approx(9 / (31 * 24)),
    }
    over = plan("bounce_rate", 0.2, 0.4, MARCH, datetime(2026, 4, 5, tzinfo=UTC))
    assert over == {"target": 0.4, "direction": "lower", "attainment": 2.0, "status": "met"}
