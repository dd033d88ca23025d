"""Rollup slots and merging (app.domain.rollup): tiling a period, and counts merged from day, hour and
quarter rows equal to counts taken straight from the quarters (brute force over person sets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from app.domain.kpis import REGISTRY, Granularity, buckets
from app.domain.rollup import (
    DAY,
    HOUR,
    QUARTER,
    QUARTER_SPAN,
    Rollup,
    Rows,
    cover,
    local_day,
    merged,
    merged_counts,
    on_quarter,
    read_plan,
    stage_persons,
    top_groups,
)

ZONES = ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe"]
BASE = datetime(2026, 3, 1, tzinfo=UTC)
SPAN = {DAY: None, HOUR: timedelta(hours=1), QUARTER: QUARTER_SPAN}


def _end(unit: tuple[str, datetime], zone: ZoneInfo) -> datetime:
    level, start = unit
    return local_day(start, zone)[1] if level == DAY else start + SPAN[level]  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 24 * 4 * 70), st.integers(0, 24 * 4 * 40), st.sampled_from(ZONES)
)  # quarters from BASE; length in quarters
def test_cover_tiles_the_period_with_the_largest_slots(offset: int, length: int, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    start = BASE + offset * QUARTER_SPAN
    end = start + length * QUARTER_SPAN
    units = cover(start, end, zone)
    at = start
    for unit in units:
        assert unit[1] == at
        at = _end(unit, zone)
        if unit[0] == DAY:
            assert local_day(unit[1], zone)[0] == unit[1]
    assert at == end
    whole_days = sum(1 for u in units if u[0] == DAY)
    assert whole_days >= length // (4 * 25) - 1  # every whole local day is one row
    assert len(units) - whole_days <= 2 * (24 + 3)  # hours and quarters only at the two ends


def test_local_days_of_a_half_hour_zone_are_used_whole() -> None:
    zone = ZoneInfo("Asia/Kolkata")
    start = datetime(2026, 3, 1, tzinfo=zone)
    units = cover(start, start + timedelta(days=3), zone)
    assert units == [(DAY, (start + timedelta(days=d)).astimezone(UTC)) for d in range(3)]
    assert not on_quarter(datetime(2026, 3, 1, 0, 7, tzinfo=UTC))


def _random_quarters(seed: int, quarters: int, groups: list[str]) -> dict[tuple[datetime, str], Rollup]:
    import random

    rng = random.Random(seed)
    data: dict[tuple[datetime, str], Rollup] = {}
    for q in range(quarters):
        for grp in groups:
            if rng.random() < 0.35:
                continue
            r = Rollup()
            for name in REGISTRY.counter_names():
                r.counters[name] = rng.randint(0, 5)
            r.counters["revenue"] = r.counters["orders"] * rng.randint(0, 10_000)  # cents; no orders, no revenue
            for name in ("visitors", "lead_persons", "order_persons", "repeat_customers", "act_persons"):
                r.sets[name] = BitMap(rng.sample(range(60), rng.randint(0, 8)))
            if not r.counters["orders"]:
                r.sets["order_persons"] = BitMap()
            data[(BASE + q * QUARTER_SPAN, grp)] = r
    return data


def _rows_at_every_level(data: dict[tuple[datetime, str], Rollup], zone: ZoneInfo) -> Rows:
    """What the refresher stores: quarter rows, and hour and local-day rows merged from them."""
    rows: Rows = {}
    for (slot, grp), r in data.items():
        rows.setdefault((QUARTER, slot), {})[grp] = r
        hour = slot.replace(minute=0)
        rows.setdefault((HOUR, hour), {}).setdefault(grp, Rollup()).add(r)
        day = local_day(slot, zone)[0]
        rows.setdefault((DAY, day), {}).setdefault(grp, Rollup()).add(r)
    return rows


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(ZONES), st.sampled_from(["day", "week", "total"]), st.integers(2, 20))
def test_counts_from_merged_rows_equal_brute_force(seed: int, zone_name: str, granularity: str, skip: int) -> None:
    zone = ZoneInfo(zone_name)
    groups = ["a", "b", "c"]
    data = _random_quarters(seed, 4 * 24 * 9, groups)
    rows = _rows_at_every_level(data, zone)
    start = datetime(2026, 3, 3, tzinfo=zone) + skip * QUARTER_SPAN
    end = datetime(2026, 3, 8, tzinfo=zone)
    bucket_list = buckets(start, end, Granularity(granularity), zone)
    p = read_plan(bucket_list, zone, BASE)
    assert p is not None
    got = merged_counts(rows, p)
    for b in bucket_list:
        for grp in groups:
            inside = [r for (slot, g), r in data.items() if g == grp and b.start <= slot < b.end]
            upto = [r for (slot, g), r in data.items() if g == grp and slot < b.end]
            total = merged(inside)
            customers = merged(upto).persons("order_persons")
            c = got[(b.aligned, grp)]
            assert c["visitors"] == len(total.persons("visitors"))
            assert c["pageviews"] == total.counters["pageviews"]
            assert abs(c["revenue"] - total.counters["revenue"]) < 1e-6
            assert c["repeat_customers"] == len(total.persons("repeat_customers"))
            assert c["customers_to_date"] == len(customers)
            assert c["active_customers"] == len(total.persons("visitors") & customers)
            assert abs(c["revenue_to_date"] - merged(upto).counters["revenue"]) < 1e-6


def test_other_group_is_a_union_not_a_sum() -> None:
    zone = ZoneInfo("UTC")
    a, b = Rollup(), Rollup()
    a.counters["sessions"], b.counters["sessions"] = 3, 1
    a.sets["visitors"], b.sets["visitors"] = BitMap([1, 2]), BitMap([2, 3])
    c = Rollup()
    c.counters["sessions"] = 2
    c.sets["visitors"] = BitMap([9])
    rows: Rows = {(QUARTER, BASE): {"x": a, "y": b, "z": c}}
    bucket_list = buckets(BASE, BASE + QUARTER_SPAN, Granularity.TOTAL, zone)
    p = read_plan(bucket_list, zone, BASE)
    assert p is not None
    assert top_groups(rows, p, 2) == ["x", "z"]
    got = merged_counts(rows, p, {"y": "(other)", "z": "(other)"})
    assert got[(BASE, "(other)")]["visitors"] == 3  # {2, 3} | {9}
    assert got[(BASE, "(other)")]["sessions"] == 3
    assert got[(BASE, "x")]["visitors"] == 2
    assert len(stage_persons(rows, [(QUARTER, BASE)])["reach"]) == 4


def test_periods_off_the_quarter_hour_are_not_planned() -> None:
    zone = ZoneInfo("UTC")
    start = BASE + timedelta(minutes=7)
    assert read_plan(buckets(start, start + timedelta(days=1), Granularity.DAY, zone), zone, None) is None
