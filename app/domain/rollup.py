"""Rollups (DESIGN §7): counters and exact person sets per slot, merged into any bucket. Pure: no I/O.

A rollup row holds, for one slot and breakdown group, the additive counters of the KPIs and the
sets of person numbers (compressed bitmaps) behind the distinct counts, as the KPI registry
(app.domain.kpis.registry) names them (a goal's row: the registry's per-goal quantities). Slots
come in three levels: 15-minute slots (every IANA offset is a multiple of 15 minutes), UTC hours,
and the site's local days. A bucket [start, end) whose ends are on 15-minute boundaries is the
disjoint union of the largest slots that fit in it, so merging their rows gives the bucket's exact
counts, distinct persons included (a union of sets, not a sum).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pyroaring import BitMap

from app.domain.kpis import REGISTRY, TO_DATE, Bucket, Counts
from app.domain.kpis.registry import GOAL_LAYOUT, Registry

QUARTER, HOUR, DAY = "q", "h", "d"
QUARTER_SPAN = timedelta(minutes=15)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _zero_counters() -> dict[str, float]:
    return dict.fromkeys(REGISTRY.counter_names(), 0)


@dataclass(slots=True)
class Rollup:
    """Counters and person sets of one slot (or of merged slots) and one group."""

    counters: dict[str, float] = field(default_factory=_zero_counters)  # REGISTRY.counter_names()
    sets: dict[str, BitMap] = field(default_factory=dict)
    removed: dict[str, BitMap] = field(default_factory=dict)  # a delta part's persons that left a set

    def add(self, other: Rollup) -> None:
        counters = self.counters
        for name, value in other.counters.items():
            counters[name] = counters.get(name, 0) + value  # a goal row's counters are not the registry's
        for name, persons in other.sets.items():
            mine = self.sets.get(name)
            if mine is None:
                self.sets[name] = BitMap(persons)
            else:
                mine |= persons

    def persons(self, name: str) -> BitMap:
        return self.sets.get(name) or BitMap()

    def is_empty(self) -> bool:
        return not any(self.counters.values()) and not any(self.sets.values()) and not any(self.removed.values())


def folded(parts: Iterable[Rollup]) -> Rollup:
    """One key's state from its parts in commit order (the base first): counters added, each part's
    persons added to and removed from the sets. The result shares nothing with the parts."""
    total = Rollup()
    for part in parts:
        total.add(part)
        for name, persons in part.removed.items():
            if name in total.sets:
                total.sets[name] -= persons
    return total


def merged(rollups: Iterable[Rollup]) -> Rollup:
    """One rollup of many: counters added, person sets unioned in one pass each. The result may
    share a set with an input when only one input has it: treat it as read-only."""
    parts = list(rollups)
    if len(parts) == 1:
        return parts[0]
    total = Rollup()
    counters = total.counters
    for r in parts:
        for name, value in r.counters.items():
            counters[name] = counters.get(name, 0) + value
    for name in {name for r in parts for name in r.sets}:
        found = [r.sets[name] for r in parts if name in r.sets]
        total.sets[name] = found[0] if len(found) == 1 else BitMap.union(*found)
    return total


# --- slots -------------------------------------------------------------------------------------


def quarter_of(moment: datetime) -> datetime:
    return moment - (moment - _EPOCH) % QUARTER_SPAN


def on_quarter(moment: datetime) -> bool:
    return (moment - _EPOCH) % QUARTER_SPAN == timedelta(0)


def hour_of(moment: datetime) -> datetime:
    return moment - (moment - _EPOCH) % timedelta(hours=1)


def local_day(moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The site-local day holding moment, as UTC instants [start, end)."""
    day = moment.astimezone(zone).date()
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return start, end


def months_on_quarters(start: datetime, end: datetime, zone: ZoneInfo) -> bool:
    """Whether every local month start in (start, end) is on a quarter boundary (then a 15-minute
    slot lies in one local month, as its events do)."""
    month = start.astimezone(zone).date().replace(day=1)
    while True:
        month = (month + timedelta(days=32)).replace(day=1)
        at = datetime.combine(month, time(), tzinfo=zone)
        if at >= end:
            return True
        if not on_quarter(at):
            return False


def month_starting(moment: datetime, zone: ZoneInfo) -> date | None:
    """The local month (its first day) that starts at this moment, if one does."""
    day = moment.astimezone(zone).date()
    return day if day.day == 1 and datetime.combine(day, time(), tzinfo=zone) == moment else None


Unit = tuple[str, datetime]  # (level, slot start in UTC)


def cover(start: datetime, end: datetime, zone: ZoneInfo, levels: str = DAY + HOUR + QUARTER) -> list[Unit]:
    """The largest slots (site-local days, then UTC hours, then quarters) that tile [start, end);
    both ends must be on quarter boundaries."""
    assert on_quarter(start) and on_quarter(end), (start, end)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    days: list[tuple[datetime, datetime]] = []
    if DAY in levels:
        day = local_day(start, zone)
        if day[0] < start:
            day = local_day(day[1], zone)
        while day[1] <= end and on_quarter(day[0]) and on_quarter(day[1]):
            days.append(day)
            day = local_day(day[1], zone)
    units: list[Unit] = []
    at = start
    for day_start, day_end in days:
        units += _hours_and_quarters(at, day_start, levels)
        units.append((DAY, day_start))
        at = day_end
    return units + _hours_and_quarters(at, end, levels)


def _hours_and_quarters(start: datetime, end: datetime, levels: str) -> list[Unit]:
    units: list[Unit] = []
    at = start
    while at < end:
        if HOUR in levels and hour_of(at) == at and at + timedelta(hours=1) <= end:
            units.append((HOUR, at))
            at += timedelta(hours=1)
        else:
            units.append((QUARTER, at))
            at += QUARTER_SPAN
    return units


def parents(quarters: Iterable[datetime], zone: ZoneInfo) -> tuple[set[datetime], set[tuple[datetime, datetime]]]:
    """The hours and local days whose rows a change of these quarters makes stale."""
    hours = {hour_of(q) for q in quarters}
    days = {local_day(q, zone) for q in quarters}
    return hours, {d for d in days if on_quarter(d[0]) and on_quarter(d[1])}


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What one KPI answer reads: each bucket's units, and the units before the period (for the
    'to date' figures)."""

    buckets: list[tuple[Bucket, list[Unit]]]
    before: list[Unit]

    @property
    def units(self) -> set[Unit]:
        return {u for _, units in self.buckets for u in units} | set(self.before)


def read_plan(bucket_list: Sequence[Bucket], zone: ZoneInfo, first_slot: datetime | None) -> ReadPlan | None:
    """None when a bucket edge is not on a quarter boundary (the caller computes from events)."""
    if not all(on_quarter(b.start) and on_quarter(b.end) for b in bucket_list):
        return None
    start = bucket_list[0].start
    before = cover(first_slot, start, zone) if first_slot is not None and first_slot < start else []
    return ReadPlan([(b, cover(b.start, b.end, zone)) for b in bucket_list], before)


Rows = dict[Unit, dict[str, Rollup]]  # unit -> group -> rollup


def top_groups(rows: Rows, p: ReadPlan, limit: int) -> list[str]:
    """The groups with the most sessions starting in the period, most first (ties by name)."""
    sessions: dict[str, float] = {}
    for _, units in p.buckets:
        for unit in units:
            for grp, r in rows.get(unit, {}).items():
                sessions[grp] = sessions.get(grp, 0) + r.counters["sessions"]
    ranked = sorted((g for g, n in sessions.items() if n > 0), key=lambda g: (-sessions[g], g))
    return ranked[:limit]


def merged_counts(rows: Rows, p: ReadPlan, rename: dict[str, str] | None = None) -> dict[tuple[datetime, str], Counts]:
    """Counts per (aligned bucket start, group) from merged rollup rows, the same as computed from the
    events. `rename` folds groups together (the '(other)' group of a limited breakdown)."""

    def by_group(units: Iterable[Unit]) -> dict[str, Rollup]:
        parts: dict[str, list[Rollup]] = {}
        for unit in units:
            for grp, r in rows.get(unit, {}).items():
                parts.setdefault(rename.get(grp, grp) if rename else grp, []).append(r)
        return {grp: merged(rs) for grp, rs in parts.items()}

    # per group: the to-date money and persons before the current bucket's end, grown in place
    persons, money = TO_DATE.persons, TO_DATE.cents
    history = {grp: _to_date_only(r) for grp, r in by_group(p.before).items() if r.persons(persons)}
    per_bucket = [(bucket, by_group(units)) for bucket, units in p.buckets]
    groups = set(history).union(*(found for _, found in per_bucket))
    counted = _counted_quantities(REGISTRY)
    result: dict[tuple[datetime, str], Counts] = {}
    empty = Rollup()
    for bucket, found in per_bucket:
        for grp in groups:
            r = found.get(grp, empty)
            past = history.setdefault(grp, Rollup())
            past.counters[money] += r.counters[money]
            if persons in r.sets:
                mine = past.sets.get(persons)  # history's own copy: grown in place
                if mine is None:
                    past.sets[persons] = BitMap(r.sets[persons])
                else:
                    mine |= r.sets[persons]
            result[(bucket.aligned, grp)] = _counts(r, past, counted)
    return result


def _to_date_only(r: Rollup) -> Rollup:
    out = Rollup()
    out.counters[TO_DATE.cents] = r.counters[TO_DATE.cents]
    out.sets[TO_DATE.persons] = BitMap(r.persons(TO_DATE.persons))  # a copy: history grows
    return out


Counted = tuple[tuple[tuple[str, type[int] | type[float]], ...], tuple[str, ...]]


def _counted_quantities(registry: Registry) -> Counted:
    """The counters (each as int or float) and the person sets a KPI answer reads."""
    return registry.derived(_counters_and_sets)


def _counters_and_sets(registry: Registry) -> Counted:
    counters = tuple((c.name, int if c.integral else float) for c in registry.counters)
    return counters, registry.kpi_sets()


def _counts(r: Rollup, history: Rollup, counted: Counted) -> Counts:
    counters, sets = counted
    c = r.counters
    counts: Counts = {name: kind(c[name]) for name, kind in counters}
    for name in sets:
        counts[name] = len(r.persons(name))
    customers = history.persons(TO_DATE.persons)
    counts[TO_DATE.customers] = len(customers)
    counts[TO_DATE.active] = r.persons(TO_DATE.seen).intersection_cardinality(customers)
    counts[TO_DATE.revenue] = int(history.counters[TO_DATE.cents])
    return counts


def stage_persons(rows: Rows, units: Iterable[Unit]) -> dict[str, BitMap]:
    """The persons with an event of each RACE stage over the units (reach: any event)."""
    total = merged(r for unit in units for r in rows.get(unit, {}).values())
    return {stage: total.persons(name) for stage, name in REGISTRY.funnel_sets().items()}


def goal_counts(rows: Rows, p: ReadPlan) -> dict[tuple[datetime, str], tuple[int, int, int]]:
    """Per (aligned bucket start, goal) from the goal dimension's rows: completions, distinct persons
    and value in cents (goals without a completion in a bucket are left out)."""
    found: dict[tuple[datetime, str], tuple[int, int, int]] = {}
    completions, value = GOAL_LAYOUT.counters
    (persons,) = GOAL_LAYOUT.sets
    for bucket, units in p.buckets:
        per_goal: dict[str, list[Rollup]] = {}
        for unit in units:
            for goal, r in rows.get(unit, {}).items():
                per_goal.setdefault(goal, []).append(r)
        for goal, parts in per_goal.items():
            total = merged(parts)
            n = int(total.counters.get(completions, 0))
            if n:
                found[(bucket.aligned, goal)] = (n, len(total.persons(persons)), int(total.counters.get(value, 0)))
    return found
