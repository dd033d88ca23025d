"""Pure report logic: funnel steps and windows, person lookup order, cohort triangles, changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.domain.kpis import REGISTRY, Bucket
from app.domain.reports import (
    CohortActivity,
    FunnelStep,
    StepLinks,
    change,
    cohort_table,
    goal_funnel,
    highest_stage,
    parse_month,
    parse_steps,
    parse_window,
    person_candidates,
    report_stages,
    step_links,
)
from tests.oracle import KPI_NAMES


@pytest.mark.parametrize(
    ("text", "window"),
    [("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)), ("7d", timedelta(days=7)), ("2w", timedelta(14)),
     ("90s", timedelta(seconds=90)), ("366d", timedelta(366))],
)  # fmt: skip
def test_windows(text: str, window: timedelta) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "-1d", "0h", "367d", "1.5h", "7D", "1y"])
def test_bad_windows(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def test_steps_and_their_links() -> None:
    steps = parse_steps(" page_view, product_view? ,add_to_cart?,purchase,review? ")
    assert steps == (
        FunnelStep("page_view"),
        FunnelStep("product_view", True),
        FunnelStep("add_to_cart", True),
        FunnelStep("purchase"),
        FunnelStep("review", True),
    )
    assert step_links(steps) == [
        StepLinks(None, (), None),
        StepLinks(0, (), 3),
        StepLinks(0, (1,), 3),
        StepLinks(0, (1, 2), None),
        StepLinks(3, (), None),
    ]


@pytest.mark.parametrize("text", ["", ",a", "a,,b", "a?,b", "?", ",".join("abcdefghijk")])
def test_bad_steps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_steps(text)


def test_goal_funnel_rates_skip_optional_steps() -> None:
    steps = parse_steps("view,cart?,buy")
    got = goal_funnel(steps, [(10, None), (4, 30.0), (6, 90.0)])
    assert [(s["persons"], s["rate_from_previous"], s["rate_from_top"]) for s in got] == [
        (10, None, 1.0),
        (4, 0.4, 0.4),
        (6, 0.6, 0.6),  # against the view step, not the skippable cart step
    ]
    assert goal_funnel(parse_steps("a,b"), [(0, None), (0, None)])[1]["rate_from_previous"] is None


def test_highest_stage() -> None:
    assert highest_stage(["reach", "engage", "act"]) == "engage"
    assert highest_stage(["act", "convert", None]) == "convert"
    assert highest_stage(["none"]) == highest_stage([]) == "none"


def test_person_candidates_in_order() -> None:
    assert person_candidates("u:42", None) == ["u:42"]
    assert person_candidates("a:x", "42") == ["u:42", "a:x"]
    assert person_candidates("a:x", None) == ["a:x"]
    assert person_candidates("x", "42") == ["u:x", "u:42", "a:x"]
    assert person_candidates("x", None) == ["u:x", "a:x"]


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "1999-12", "2026/01", ""])
def test_bad_months(text: str) -> None:
    with pytest.raises(ValueError):
        parse_month(text)


def test_cohort_table_is_a_zero_filled_triangle() -> None:
    jan, mar = date(2026, 1, 1), date(2026, 3, 1)
    activity = [CohortActivity(jan, jan, 4, 1, 5, 50.0), CohortActivity(jan, mar, 2, 2, 2, 20.0)]
    table = cohort_table({jan: 4}, activity, jan, mar)
    assert [(c["cohort"], c["customers"], len(c["months"])) for c in table] == [
        ("2026-01", 4, 3),
        ("2026-02", 0, 2),
        ("2026-03", 0, 1),
    ]
    months = table[0]["months"]
    assert [(m["month"], m["active"], m["active_share"], m["repeat_share"]) for m in months] == [
        ("2026-01", 4, 1.0, 0.25),
        ("2026-02", 0, 0.0, 0.0),
        ("2026-03", 2, 0.5, 0.5),
    ]
    assert table[1]["months"][0]["active_share"] is None
    assert cohort_table({}, [], date(2025, 12, 1), jan)[0]["months"][1]["month"] == "2026-01"


def test_change_and_report_rows() -> None:
    assert change(15, 10) == (5, 0.5)
    assert change(-25.0, -50.0) == (25.0, 0.5)  # NPS up from -50 to -25 is an improvement
    assert change(3, 0) == (3, None)
    assert change(None, 1) == change(1, None) == (None, None)
    assert [k for names in REGISTRY.stage_kpis().values() for k in names] == list(KPI_NAMES)
    current = dict.fromkeys(KPI_NAMES, 2.0)
    march = Bucket(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    targets = {"revenue": 4.0, "orders": 0.0, "bounce_rate": 4.0}
    stages = report_stages(current, dict.fromkeys(KPI_NAMES, 1.0), targets, march, datetime(2026, 5, 1, tzinfo=UTC))
    rows = {k["kpi"]: k for s in stages for k in s["kpis"]}
    assert rows["revenue"] == {
        "kpi": "revenue",
        "value": 2.0,
        "previous": 1.0,
        "change": 1.0,
        "change_ratio": 1.0,
        "target": 4.0,
        "direction": "higher",
        "attainment": 0.5,
        "status": "missed",
    }
    assert rows["orders"]["attainment"] is None and rows["visitors"]["target"] is None
    assert (rows["orders"]["status"], rows["visitors"]["status"]) == ("met", None)  # 2 orders >= 0
    assert (rows["bounce_rate"]["direction"], rows["bounce_rate"]["attainment"]) == ("lower", 2.0)
    assert rows["bounce_rate"]["status"] == "met"  # 2.0 <= 4.0
