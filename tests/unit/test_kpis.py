"""Buckets of a period in a time zone, bound parsing, and the KPI ratios (DESIGN §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import get_args
from zoneinfo import ZoneInfo

import pytest

from app.api.params import Breakdown
from app.domain.kpis import Bucket, Counts, Granularity, buckets, funnel_steps, kpis_of, parse_bound
from app.domain.rollup_delta import DIMENSIONS
from app.store.kpi_queries import BREAKDOWNS
from tests.oracle import KPI_NAMES

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(bucket: Bucket) -> float:
    """Real elapsed hours (aware datetimes of one zone subtract as wall clock, so go through UTC)."""
    return (bucket.end.astimezone(UTC) - bucket.start.astimezone(UTC)) / H


def assert_tiles(result: list[Bucket], start: datetime, end: datetime) -> None:
    """Buckets cover [start, end) exactly, in order, without gaps or overlaps."""
    assert result, "no buckets"
    assert result[0].start == start
    assert result[-1].end == end
    for before, after in pairwise(result):
        assert before.end == after.start == after.aligned
    assert all(b.start < b.end for b in result)


# ---- day / week / month / total -----------------------------------------------------------------


def test_day_buckets_in_utc() -> None:
    start, end = utc(2024, 5, 1), utc(2024, 5, 4)
    result = buckets(start, end, Granularity.DAY, ZoneInfo("UTC"))
    assert [b.aligned for b in result] == [utc(2024, 5, 1), utc(2024, 5, 2), utc(2024, 5, 3)]
    assert [b.start for b in result] == [b.aligned for b in result]
    assert [b.end for b in result] == [utc(2024, 5, 2), utc(2024, 5, 3), utc(2024, 5, 4)]
    assert_tiles(result, start, end)


def test_day_buckets_are_clipped_to_the_period() -> None:
    start, end = utc(2024, 5, 1, 10), utc(2024, 5, 3, 6)
    result = buckets(start, end, Granularity.DAY, ZoneInfo("UTC"))
    assert len(result) == 3
    assert (result[0].aligned, result[0].start, result[0].end) == (utc(2024, 5, 1), start, utc(2024, 5, 2))
    assert (result[-1].aligned, result[-1].start, result[-1].end) == (utc(2024, 5, 3), utc(2024, 5, 3), end)
    assert_tiles(result, start, end)


def test_empty_period_has_no_buckets() -> None:
    moment = utc(2024, 5, 1)
    assert buckets(moment, moment, Granularity.DAY, ZoneInfo("UTC")) == []
    assert buckets(moment, moment, Granularity.MONTH, ZoneInfo("UTC")) == []


def test_week_buckets_start_on_monday_and_are_clipped() -> None:
    start, end = utc(2024, 5, 1), utc(2024, 5, 20)  # Wednesday .. Monday
    result = buckets(start, end, Granularity.WEEK, ZoneInfo("UTC"))
    assert [b.aligned for b in result] == [utc(2024, 4, 29), utc(2024, 5, 6), utc(2024, 5, 13)]
    assert all(b.aligned.weekday() == 0 for b in result)
    assert result[0].start == start
    assert result[-1].end == end
    assert_tiles(result, start, end)


def test_a_week_starting_on_monday_is_not_split() -> None:
    start = utc(2024, 4, 29)
    result = buckets(start, start + timedelta(days=7), Granularity.WEEK, ZoneInfo("UTC"))
    assert result == [Bucket(start, start, start + timedelta(days=7))]


def test_month_buckets_across_a_year_end_are_clipped() -> None:
    start, end = utc(2023, 11, 15), utc(2024, 2, 10)
    result = buckets(start, end, Granularity.MONTH, ZoneInfo("UTC"))
    assert [b.aligned for b in result] == [utc(2023, 11, 1), utc(2023, 12, 1), utc(2024, 1, 1), utc(2024, 2, 1)]
    assert [b.end for b in result] == [utc(2023, 12, 1), utc(2024, 1, 1), utc(2024, 2, 1), end]
    assert result[0].start == start
    assert_tiles(result, start, end)


def test_month_lengths_including_a_leap_february() -> None:
    result = buckets(utc(2024, 1, 1), utc(2025, 1, 1), Granularity.MONTH, ZoneInfo("UTC"))
    assert [round(hours(b) / 24) for b in result] == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_total_is_one_bucket_of_the_whole_period() -> None:
    start, end = utc(2024, 5, 1, 10), utc(2024, 7, 3)
    assert buckets(start, end, Granularity.TOTAL, BERLIN) == [Bucket(start, start, end)]


# ---- time zones ---------------------------------------------------------------------------------


def test_half_hour_zone_day_buckets_start_at_local_midnight() -> None:
    start = parse_bound("2024-05-01", KOLKATA)
    end = parse_bound("2024-05-03", KOLKATA)
    result = buckets(start, end, Granularity.DAY, KOLKATA)
    assert [b.start.astimezone(UTC) for b in result] == [utc(2024, 4, 30, 18, 30), utc(2024, 5, 1, 18, 30)]
    assert all((b.aligned.hour, b.aligned.minute) == (0, 0) for b in result)
    assert [hours(b) for b in result] == [24, 24]
    assert_tiles(result, start, end)


def test_half_hour_zone_floors_a_utc_start_to_the_local_day() -> None:
    # 2024-05-01 18:29 UTC is 23:59 on May 1st in Kolkata; 18:30 UTC is already May 2nd
    before = buckets(utc(2024, 5, 1, 18, 29), utc(2024, 5, 1, 18, 31), Granularity.DAY, KOLKATA)
    assert [b.aligned.date().isoformat() for b in before] == ["2024-05-01", "2024-05-02"]
    assert before[0].end.astimezone(UTC) == utc(2024, 5, 1, 18, 30)
    assert before[1].end == utc(2024, 5, 1, 18, 31)


@pytest.mark.parametrize(
    ("first", "last", "lengths"),
    [
        ("2024-03-30", "2024-04-02", [24, 23, 24]),  # clocks go forward on Sunday 31 March
        ("2024-10-26", "2024-10-29", [24, 25, 24]),  # and back on Sunday 27 October
    ],
)
def test_dst_day_buckets_in_berlin(first: str, last: str, lengths: list[int]) -> None:
    start, end = parse_bound(first, BERLIN), parse_bound(last, BERLIN)
    result = buckets(start, end, Granularity.DAY, BERLIN)
    assert [hours(b) for b in result] == lengths
    assert all((b.aligned.hour, b.aligned.minute) == (0, 0) for b in result)
    assert_tiles(result, start, end)


def test_dst_spring_forward_utc_boundaries() -> None:
    result = buckets(parse_bound("2024-03-31", BERLIN), parse_bound("2024-04-01", BERLIN), Granularity.DAY, BERLIN)
    (day,) = result
    assert day.start.astimezone(UTC) == utc(2024, 3, 30, 23)  # CET, +01:00
    assert day.end.astimezone(UTC) == utc(2024, 3, 31, 22)  # CEST, +02:00


def test_dst_week_and_month_buckets_in_berlin() -> None:
    week = buckets(parse_bound("2024-03-25", BERLIN), parse_bound("2024-04-01", BERLIN), Granularity.WEEK, BERLIN)
    assert [hours(b) for b in week] == [7 * 24 - 1]
    october = buckets(parse_bound("2024-10-01", BERLIN), parse_bound("2024-11-01", BERLIN), Granularity.MONTH, BERLIN)
    assert [hours(b) for b in october] == [31 * 24 + 1]


def test_utc_bounds_are_bucketed_by_local_calendar() -> None:
    # 2024-03-10 is the US spring-forward day: a 23-hour local day
    start, end = utc(2024, 3, 10, 12), utc(2024, 3, 12, 3)
    result = buckets(start, end, Granularity.DAY, NEW_YORK)
    assert [b.aligned.date().isoformat() for b in result] == ["2024-03-10", "2024-03-11"]
    assert result[0].aligned.astimezone(UTC) == utc(2024, 3, 10, 5)  # EST midnight
    assert result[0].end.astimezone(UTC) == utc(2024, 3, 11, 4)  # EDT midnight
    assert_tiles(result, start, end)


# ---- parse_bound --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        ("2024-05-01", BERLIN, utc(2024, 4, 30, 22)),  # local midnight
        ("2024-05-01", KOLKATA, utc(2024, 4, 30, 18, 30)),
        ("2024-01-15", BERLIN, utc(2024, 1, 14, 23)),
        ("2024-05-01T10:00:00", BERLIN, utc(2024, 5, 1, 8)),  # no offset: the zone applies
        ("2024-05-01T10:00:00Z", BERLIN, utc(2024, 5, 1, 10)),
        ("2024-05-01T10:00:00+05:30", BERLIN, utc(2024, 5, 1, 4, 30)),
    ],
)
def test_parse_bound(value: str, zone: ZoneInfo, expected: datetime) -> None:
    parsed = parse_bound(value, zone)
    assert parsed.tzinfo is not None
    assert parsed == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "2024-05-01T25:00"])
def test_parse_bound_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        parse_bound(value, BERLIN)


# ---- kpis_of ------------------------------------------------------------------------------------

RATIOS = (
    "bounce_rate",
    "value_per_visit",
    "lead_rate",
    "pages_per_session",
    "avg_session_seconds",
    "aov",
    "conversion_rate",
    "repeat_purchase_rate",
    "active_customer_rate",
    "clv",
    "nps",
)


def test_kpis_of_names_every_kpi_of_design_in_its_order() -> None:
    assert tuple(kpis_of(Counts())) == KPI_NAMES  # the oracle's list, written from DESIGN §5


def test_ratios_are_null_on_zero_denominators() -> None:
    values = kpis_of(Counts())
    for name in RATIOS:
        assert values[name] is None, name
    for name in set(KPI_NAMES) - set(RATIOS):
        assert values[name] == 0, name


def test_ratios_are_null_when_only_their_denominator_is_zero() -> None:
    values = kpis_of(Counts(pageviews=5, bounces=1, revenue=50.0, lead_persons=1, order_persons=1, nps_promoters=1))
    assert values["pages_per_session"] is None  # sessions 0
    assert values["bounce_rate"] is None
    assert values["value_per_visit"] is None
    assert values["lead_rate"] is None  # visitors 0
    assert values["aov"] is None  # orders 0
    assert values["nps"] is None  # responses 0


def test_money_is_summed_in_cents_and_written_to_the_cent() -> None:
    """Floats would sum 0.1 + 0.2 to 0.30000000000000004 and drift across endpoints; cents do not."""
    from app.domain.kpis import cents, money, money_ratio

    assert sum(cents(v) for v in (0.1, 0.2, 3419.65, 19.99)) == 10 + 20 + 341965 + 1999
    assert money(cents(0.1) + cents(0.2)) == 0.3
    assert money_ratio(1000, 3) == 3.33 and money_ratio(1000, 0) is None
    assert cents(2.675) == 268  # 2.675 * 100 is 267.5 in float8, then to even: as PostgreSQL rounds it


def test_kpis_of_values() -> None:
    counts = Counts(
        visitors=10,
        new_visitors=4,
        sessions=20,
        pageviews=50,
        bounces=5,
        session_seconds=1200.0,
        act_events=7,
        leads=3,
        lead_persons=2,
        orders=4,
        revenue=20000,  # cents
        new_customers=2,
        order_persons=3,
        offline_orders=1,
        offline_revenue=2500,
        engage_events=6,
        repeat_orders=1,
        repeat_customers=1,
        customers_to_date=8,
        active_customers=2,
        revenue_to_date=80000,
        nps_responses=10,
        nps_promoters=6,
        nps_detractors=2,
    )
    values = kpis_of(counts)
    assert values == {
        "visitors": 10,
        "new_visitors": 4,
        "sessions": 20,
        "pageviews": 50,
        "bounce_rate": 0.25,
        "value_per_visit": 10.0,
        "act_events": 7,
        "leads": 3,
        "lead_rate": 0.2,
        "pages_per_session": 2.5,
        "avg_session_seconds": 60.0,
        "orders": 4,
        "revenue": 200.0,
        "aov": 50.0,
        "new_customers": 2,
        "conversion_rate": 0.3,
        "offline_orders": 1,
        "offline_revenue": 25.0,
        "engage_events": 6,
        "repeat_orders": 1,
        "repeat_customers": 1,
        "repeat_purchase_rate": pytest.approx(1 / 3),
        "customers_to_date": 8,
        "active_customer_rate": 0.25,
        "clv": 100.0,
        "nps": 40.0,
    }


@pytest.mark.parametrize(
    ("responses", "promoters", "detractors", "nps"),
    [
        (10, 10, 0, 100.0),
        (10, 0, 10, -100.0),
        (10, 0, 0, 0.0),  # all passives
        (4, 1, 2, -25.0),
        (3, 2, 0, pytest.approx(200 / 3)),
        (0, 0, 0, None),
    ],
)
def test_nps(responses: int, promoters: int, detractors: int, nps: float | None) -> None:
    counts = Counts(nps_responses=responses, nps_promoters=promoters, nps_detractors=detractors)
    assert kpis_of(counts)["nps"] == nps


# ---- funnel -------------------------------------------------------------------------------------


def test_funnel_steps_rates_against_previous_and_top() -> None:
    steps = funnel_steps([("reach", 200), ("act", 50), ("convert", 10), ("engage", 5)])
    assert steps == [
        {"label": "reach", "persons": 200, "rate_from_previous": None, "rate_from_top": 1.0},
        {"label": "act", "persons": 50, "rate_from_previous": 0.25, "rate_from_top": 0.25},
        {"label": "convert", "persons": 10, "rate_from_previous": 0.2, "rate_from_top": 0.05},
        {"label": "engage", "persons": 5, "rate_from_previous": 0.5, "rate_from_top": 0.025},
    ]


def test_funnel_steps_null_rates_on_zero() -> None:
    steps = funnel_steps([("reach", 0), ("act", 0)])
    assert [(s["rate_from_previous"], s["rate_from_top"]) for s in steps] == [(None, None), (None, None)]
    steps = funnel_steps([("reach", 10), ("act", 0), ("convert", 0)])
    assert [s["rate_from_previous"] for s in steps] == [None, 0.0, None]
    assert [s["rate_from_top"] for s in steps] == [1.0, 0.0, 0.0]


def test_funnel_steps_of_nothing() -> None:
    assert funnel_steps([]) == []


def test_nested_funnel_counts_persons_in_every_earlier_stage() -> None:
    from pyroaring import BitMap

    from app.domain.kpis import nested_counts

    stages = {"reach": {1, 2, 3, 4, 5}, "act": {1, 2, 3}, "convert": {1, 4}, "engage": {4, 1, 5}}
    assert nested_counts(stages) == {"reach": 5, "act": 3, "convert": 1, "engage": 1}
    assert nested_counts({k: BitMap(v) for k, v in stages.items()}) == nested_counts(stages)
    assert nested_counts({"reach": {1}}) == {"reach": 1, "act": 0, "convert": 0, "engage": 0}


def test_race_funnel_says_which_kind_persons_and_rates_are() -> None:
    from app.domain.kpis import FunnelKind, race_funnel

    nested = {"reach": 10, "act": 4, "convert": 1, "engage": 0}
    independent = {"reach": 10, "act": 4, "convert": 3, "engage": 2}
    steps = race_funnel(nested, independent, FunnelKind.NESTED)
    assert [s["stage"] for s in steps] == ["reach", "act", "convert", "engage"]
    assert [(s["persons"], s["nested_persons"], s["independent_persons"]) for s in steps] == [
        (10, 10, 10),
        (4, 4, 4),
        (1, 1, 3),
        (0, 0, 2),
    ]
    assert steps[2]["rate_from_previous"] == 0.25
    flat = race_funnel(nested, independent, FunnelKind.INDEPENDENT)
    assert [s["persons"] for s in flat] == [10, 4, 3, 2] and flat[2]["rate_from_previous"] == 0.75


def test_the_breakdowns_are_one_list() -> None:
    """The parameter's values, the event path's SQL and the rollups' dimensions name the same breakdowns."""
    names, _ = get_args(get_args(Breakdown)[0])  # Literal[...] | None
    assert get_args(names) == tuple(BREAKDOWNS) == DIMENSIONS[1:]
