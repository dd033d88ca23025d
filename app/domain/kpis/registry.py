"""The KPI registry (DESIGN §5): each KPI once, and each quantity its formula reads once. Pure: no I/O.

A bucket's *counts* hold quantities of three kinds, all mergeable across slots:
- counters: additive sums over the events (or sessions) that meet a condition: how many, the sum of
  their value in cents, or of their sessions' seconds;
- person sets: the distinct persons with an event that meets a condition (a count of a union);
- the "to date" figures (TO_DATE): a person set and a money counter over every event up to the
  bucket's end, and how many of those persons the bucket saw.
A KPI is a formula over them (the quantity itself, or a ratio). Conditions are data, evaluated in
Python (rollup deltas) and rendered as SQL (app.store.kpi_sql) from the same entry.

Every path reads the registry at call time: the event-path SQL, the rollup counters and sets, the
KPI answers and CSV columns, OpenAPI, target attainment and the dashboard. A KPI over existing
quantities is one entry in KPIS; a new counter or person set is one entry in COUNTERS or PERSON_SETS
too, and nothing else: the rollups store each row's quantities as arrays in the registry's order
(`layout`), the stored layout is recorded per site, and when it differs from the registry's the
rollups are rebuilt from the events (automatically, by the deriver; or `racetrack rollups rebuild`)
while reads come from the events. `REGISTRY.extended` adds entries for a while (tests).

Goals are data (each site's rules name them), so they are not registry entries: the GOAL_* quantities
are kept per goal (the rollups' `goal` dimension, whose groups are goal names).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from app.domain.kpis.funnel import RACE_STAGES
from app.domain.kpis.values import money, money_ratio, ratio

T = TypeVar("T")
Counts = dict[str, float]  # quantity name -> value, of one bucket and group (a missing name is 0)


class Unit(StrEnum):
    COUNT = "count"
    MONEY = "money"  # in the site's currency, to the cent
    RATIO = "ratio"
    SECONDS = "seconds"
    SCORE = "score"


class Direction(StrEnum):
    HIGHER = "higher"  # more is better (visitors, revenue, conversion_rate, ...)
    LOWER = "lower"  # less is better (bounce_rate)


# --- conditions --------------------------------------------------------------------------------

# The columns a condition may read: the event's (`event`) and the session's (`session`).
EVENT_CONDITION_COLUMNS = frozenset({
    "type", "channel", "stage", "goal", "value", "is_lead", "is_order", "is_first_event", "is_first_order",
    "is_repeat_order", "nps_score",
})  # fmt: skip
SESSION_CONDITION_COLUMNS = frozenset({"is_bounce"})
Op = Literal["is", "=", "in", ">=", "<=", "present"]
# Constants and columns are code, never data, and checked: safe as SQL and Python text by construction.
_CONSTANT = re.compile(r"[A-Za-z0-9_ .-]*")
_COLUMN = re.compile(r"[a-z_]+")


@dataclass(frozen=True, slots=True)
class ColumnCondition:
    """`column op value` over one stored event's (or session's) columns; null meets nothing but
    `is` false, as in SQL."""

    column: str
    op: Op
    value: str | float | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        assert _COLUMN.fullmatch(self.column), self.column
        constants = self.value if isinstance(self.value, tuple) else (self.value,)
        for constant in constants:
            assert not isinstance(constant, str) or _CONSTANT.fullmatch(constant), constant
            assert constant is None or isinstance(constant, str | int | float), constant

    def python(self, by_attribute: bool) -> str:
        """The condition as a Python expression over `row` (see `compiled`)."""
        read = f"row.{self.column}" if by_attribute else f"row[{self.column!r}]"
        if self.op == "is":
            return f"bool({read})"
        if self.op == "present":
            return f"({read} is not None)"
        if self.op in ("=", "in"):
            return f"({read} {'==' if self.op == '=' else 'in'} {self.value!r})"
        return f"({read} is not None and {read} {self.op} {self.value!r})"


Where = tuple[ColumnCondition, ...]  # all of them hold (none: every event)


def flag(column: str) -> ColumnCondition:
    return ColumnCondition(column, "is")


def equals(column: str, value: str) -> ColumnCondition:
    return ColumnCondition(column, "=", value)


def one_of(column: str, *values: str) -> ColumnCondition:
    return ColumnCondition(column, "in", values)


def at_least(column: str, value: float) -> ColumnCondition:
    return ColumnCondition(column, ">=", value)


def at_most(column: str, value: float) -> ColumnCondition:
    return ColumnCondition(column, "<=", value)


def present(column: str) -> ColumnCondition:
    return ColumnCondition(column, "present")


def python_test(where: Where, by_attribute: bool = False) -> str:
    """All of `where` as one Python expression over `row`: row[column], or row.column for an object."""
    return " and ".join(c.python(by_attribute) for c in where) or "True"


def compiled(expressions: Iterable[str], **names: Any) -> Callable[[Any], tuple[Any, ...]]:
    """One function of `row` giving these expressions' values (`python_test` text and `names`). Rollup
    deltas run it for every derived event: one call instead of a call per condition, as fast as
    hand-written code (the text comes from checked registry entries only)."""
    source = f"lambda row: ({', '.join(expressions)},)"
    function: Callable[[Any], tuple[Any, ...]] = eval(source, {"__builtins__": {"bool": bool}, **names})
    return function


def compiled_hits(tests: Iterable[str]) -> Callable[[Any], list[int]]:
    """One function of `row` giving the indexes of these `python_test`s that hold (as `compiled`)."""
    lines = [f"    if {test}: hits.append({i})" for i, test in enumerate(tests)]
    scope: dict[str, Any] = {"__builtins__": {"bool": bool}}
    exec("def hits_of(row):\n    hits = []\n" + "\n".join(lines) + "\n    return hits", scope)
    function: Callable[[Any], list[int]] = scope["hits_of"]
    return function


# --- quantities --------------------------------------------------------------------------------


class Measure(StrEnum):
    EVENTS = "events"  # how many events meet the condition
    CENTS = "cents"  # the sum of their value, in integer cents
    SESSIONS = "sessions"  # how many sessions starting in the bucket meet it
    SECONDS = "seconds"  # the sum of those sessions' last minus first event time


@dataclass(frozen=True, slots=True)
class Counter:
    name: str
    where: Where = ()
    measure: Measure = Measure.EVENTS

    @property
    def of_sessions(self) -> bool:
        return self.measure in (Measure.SESSIONS, Measure.SECONDS)

    @property
    def integral(self) -> bool:
        return self.measure is not Measure.SECONDS


@dataclass(frozen=True, slots=True)
class PersonSet:
    """The persons with an event that meets `where`; `stage`: the RACE funnel stage it stands for."""

    name: str
    where: Where = ()
    stage: str | None = None


@dataclass(frozen=True, slots=True)
class ToDate:
    """The figures over every event up to the bucket's end (from before the period on)."""

    customers: str = "customers_to_date"  # persons in the `persons` set up to the end
    revenue: str = "revenue_to_date"  # the `cents` counter up to the end
    active: str = "active_customers"  # of `customers`, those in the bucket's `seen` set
    persons: str = "order_persons"
    cents: str = "revenue"
    seen: str = "visitors"

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.customers, self.revenue, self.active)


TO_DATE = ToDate()

COUNTERS = (
    Counter("new_visitors", (flag("is_first_event"),)),
    Counter("pageviews", (one_of("type", "page", "screen"),)),
    Counter("act_events", (equals("stage", "act"),)),
    Counter("leads", (flag("is_lead"),)),
    Counter("orders", (flag("is_order"),)),
    Counter("revenue", (flag("is_order"),), Measure.CENTS),
    Counter("new_customers", (flag("is_first_order"),)),
    Counter("offline_orders", (flag("is_order"), equals("channel", "Offline"))),
    Counter("offline_revenue", (flag("is_order"), equals("channel", "Offline")), Measure.CENTS),
    Counter("engage_events", (equals("stage", "engage"),)),
    Counter("repeat_orders", (flag("is_repeat_order"),)),
    Counter("nps_responses", (equals("goal", "nps"), present("nps_score"))),
    Counter("nps_promoters", (equals("goal", "nps"), at_least("nps_score", 9))),
    Counter("nps_detractors", (equals("goal", "nps"), at_most("nps_score", 6))),
    Counter("sessions", (), Measure.SESSIONS),  # counted in the bucket where the session starts
    Counter("bounces", (flag("is_bounce"),), Measure.SESSIONS),
    Counter("session_seconds", (), Measure.SECONDS),
)
PERSON_SETS = (
    PersonSet("visitors", (), "reach"),
    PersonSet("lead_persons", (flag("is_lead"),)),
    PersonSet("order_persons", (flag("is_order"),)),
    PersonSet("repeat_customers", (flag("is_repeat_order"),)),
    PersonSet("act_persons", (equals("stage", "act"),), "act"),
    PersonSet("convert_persons", (equals("stage", "convert"),), "convert"),
    PersonSet("engage_persons", (equals("stage", "engage"),), "engage"),
)
# Per goal, over the events whose goal is the row's group (/v1/goals): completions, their value in
# cents, the distinct persons who completed it.
GOAL_COUNTERS = (Counter("completions"), Counter("goal_value", (), Measure.CENTS))
GOAL_SETS = (PersonSet("goal_persons"),)


@dataclass(frozen=True, slots=True)
class Layout:
    """The quantities one kind of rollup row stores, in order: `counters` and `sets` are the row's
    arrays. `quantities` describes each (name and definition): two layouts with the same description
    store the same numbers; `fingerprint` is a short hash of it, recorded beside the rollups."""

    counters: tuple[str, ...]
    sets: tuple[str, ...]
    quantities: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.quantities).encode()).hexdigest()[:16]


def describe(q: Counter | PersonSet) -> str:
    """A quantity's name and definition as text (its conditions, its measure): stable across runs."""
    where = " and ".join(f"{c.column} {c.op} {c.value!r}" if c.value is not None else f"{c.column} {c.op}"
                         for c in q.where) or "every"  # fmt: skip
    if isinstance(q, Counter):
        return f"counter {q.name}: {q.measure.value} where {where}"
    return f"set {q.name}: persons where {where}"


def layout_of(counters: Iterable[Counter], person_sets: Iterable[PersonSet]) -> Layout:
    counted, sets = tuple(counters), tuple(person_sets)
    quantities = tuple(describe(q) for q in counted) + tuple(describe(q) for q in sets)
    return Layout(tuple(c.name for c in counted), tuple(s.name for s in sets), quantities)


GOAL_LAYOUT = layout_of(GOAL_COUNTERS, GOAL_SETS)
ROLLUP_FAMILIES = ("kpi", "goal")  # the families whose rows are in `rollup`
# The deriver's report counters (app.store.report_counters): tables of their own, recorded and
# rebuilt as the rollups' families are. A change of what they hold changes its description here.
QUALITY_LAYOUT = Layout(("bots", "late", "unvalued_orders"), (), (
    "quality by 15-minute receipt slot and upper(btrim(currency)) ('' when absent)",
    "counter bots: events where is_bot",
    "counter late: events where event_at < received_at - 24 hours",
    "counter unvalued_orders: events where is_order and not is_bot and value absent and currency present",
))  # fmt: skip
COHORT_LAYOUT = Layout(("orders", "first_orders", "repeat_orders", "cents"), (), (
    "customer orders by person and 15-minute slot of event time, events where is_order and not is_bot",
    "counter orders: events", "counter first_orders: events where is_first_order",
    "counter repeat_orders: events where is_repeat_order", "counter cents: cents of value",
))  # fmt: skip


# --- KPIs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Value:
    """The quantity itself (money: cents written in currency units)."""

    quantity: str

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.quantity,)


@dataclass(frozen=True, slots=True)
class Ratio:
    """scale x (numerator - minus) / denominator; null when the denominator is 0 (money: to the cent)."""

    numerator: str
    denominator: str
    minus: str | None = None
    scale: float = 1

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.numerator, self.denominator, *((self.minus,) if self.minus else ()))


Text = Literal["integer", "percent", "money", "decimal", "duration"]  # how the dashboard writes a value
_TEXT_OF_UNIT: dict[Unit, Text] = {
    Unit.COUNT: "integer", Unit.MONEY: "money", Unit.RATIO: "percent", Unit.SECONDS: "duration",
    Unit.SCORE: "decimal",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    stage: str  # its RACE stage
    unit: Unit
    formula: Value | Ratio
    definition: str  # DESIGN §5's one line
    label: str  # as the dashboard names it
    direction: Direction = Direction.HIGHER
    text: Text | None = None  # how the dashboard writes it, when not as its unit says

    @property
    def shown_as(self) -> Text:
        return self.text or _TEXT_OF_UNIT[self.unit]

    @property
    def projected(self) -> bool:
        """A sum over the bucket's events grows through a month, so its month-end value is projected
        linearly; ratios, 'to date' figures and scores are already the trend."""
        return isinstance(self.formula, Value) and self.formula.quantity not in TO_DATE.names

    def value_of(self, counts: Mapping[str, float]) -> float | None:
        f = self.formula
        if isinstance(f, Value):
            found = counts.get(f.quantity, 0)
            if self.unit is Unit.MONEY:
                return money(int(found))
            return int(found) if self.unit is Unit.COUNT else float(found)
        numerator = counts.get(f.numerator, 0) - (counts.get(f.minus, 0) if f.minus else 0)
        if self.unit is Unit.MONEY:
            return money_ratio(int(numerator), counts.get(f.denominator, 0))
        return ratio(f.scale * numerator, counts.get(f.denominator, 0))


def _kpi(name: str, stage: str, unit: Unit, formula: Value | Ratio, label: str, definition: str,
         **more: Any) -> Kpi:  # fmt: skip
    return Kpi(name, stage, unit, formula, definition, label, **more)


KPIS = (
    _kpi("visitors", "reach", Unit.COUNT, Value("visitors"), "Visitors",
         "distinct persons with ≥1 event in the bucket"),
    _kpi("new_visitors", "reach", Unit.COUNT, Value("new_visitors"), "New visitors",
         "persons whose first event ever falls in the bucket"),
    _kpi("sessions", "reach", Unit.COUNT, Value("sessions"), "Sessions",
         "sessions whose first event falls in the bucket"),
    _kpi("pageviews", "reach", Unit.COUNT, Value("pageviews"), "Page views", "events of type page or screen"),
    _kpi("bounce_rate", "reach", Unit.RATIO, Ratio("bounces", "sessions"), "Bounce rate",
         "sessions (of the bucket) with exactly one event, that event a page view / sessions",
         direction=Direction.LOWER),
    _kpi("value_per_visit", "reach", Unit.MONEY, Ratio("revenue", "sessions"), "Value per visit",
         "revenue / sessions"),
    _kpi("act_events", "act", Unit.COUNT, Value("act_events"), "Act events", "events with stage act"),
    _kpi("leads", "act", Unit.COUNT, Value("leads"), "Leads", "events whose goal is flagged lead"),
    _kpi("lead_rate", "act", Unit.RATIO, Ratio("lead_persons", "visitors"), "Lead rate",
         "distinct persons with a lead event in the bucket / visitors"),
    _kpi("pages_per_session", "act", Unit.RATIO, Ratio("pageviews", "sessions"), "Pages per session",
         "pageviews / sessions", text="decimal"),
    _kpi("avg_session_seconds", "act", Unit.SECONDS, Ratio("session_seconds", "sessions"), "Avg. session",
         "mean, over the bucket's sessions, of last minus first event time"),
    _kpi("orders", "convert", Unit.COUNT, Value("orders"), "Orders",
         "events whose goal is flagged order (first and repeat purchases)"),
    _kpi("revenue", "convert", Unit.MONEY, Value("revenue"), "Revenue", "sum of the value of those events"),
    _kpi("aov", "convert", Unit.MONEY, Ratio("revenue", "orders"), "Average order value", "revenue / orders"),
    _kpi("new_customers", "convert", Unit.COUNT, Value("new_customers"), "New customers",
         "persons whose first order ever falls in the bucket"),
    _kpi("conversion_rate", "convert", Unit.RATIO, Ratio("order_persons", "visitors"), "Conversion rate",
         "distinct persons with an order in the bucket / visitors"),
    _kpi("offline_orders", "convert", Unit.COUNT, Value("offline_orders"), "Offline orders",
         "orders over channel Offline"),
    _kpi("offline_revenue", "convert", Unit.MONEY, Value("offline_revenue"), "Offline revenue",
         "revenue over channel Offline"),
    _kpi("engage_events", "engage", Unit.COUNT, Value("engage_events"), "Engage events",
         "events with stage engage"),
    _kpi("repeat_orders", "engage", Unit.COUNT, Value("repeat_orders"), "Repeat orders",
         "orders whose person had ≥1 earlier order"),
    _kpi("repeat_customers", "engage", Unit.COUNT, Value("repeat_customers"), "Repeat customers",
         "distinct persons with a repeat order in the bucket"),
    _kpi("repeat_purchase_rate", "engage", Unit.RATIO, Ratio("repeat_customers", "order_persons"),
         "Repeat purchase rate", "repeat_customers / distinct persons with an order in the bucket"),
    _kpi("customers_to_date", "engage", Unit.COUNT, Value(TO_DATE.customers), "Customers to date",
         "persons with ≥1 order at or before the bucket's end"),
    _kpi("active_customer_rate", "engage", Unit.RATIO, Ratio(TO_DATE.active, TO_DATE.customers),
         "Active customer rate", "customers to date with ≥1 event in the bucket / customers_to_date"),
    _kpi("clv", "engage", Unit.MONEY, Ratio(TO_DATE.revenue, TO_DATE.customers), "Customer lifetime value",
         "revenue of all orders at or before the bucket's end / customers_to_date"),
    _kpi("nps", "engage", Unit.SCORE, Ratio("nps_promoters", "nps_responses", "nps_detractors", 100), "NPS",
         "over nps goal events in the bucket, % scores 9-10 minus % scores 0-6"),
)  # fmt: skip


# --- the registry ------------------------------------------------------------------------------


class Registry:
    """The quantities and KPIs in force. What is derived from them (SQL text, compiled tests) is
    kept per state, so adding entries (`extended`) is seen everywhere at the next call."""

    def __init__(self, counters: Iterable[Counter], person_sets: Iterable[PersonSet], kpis: Iterable[Kpi]) -> None:
        self._set(tuple(counters), tuple(person_sets), tuple(kpis))

    def _set(self, counters: tuple[Counter, ...], person_sets: tuple[PersonSet, ...], kpis: tuple[Kpi, ...]) -> None:
        _check(counters, person_sets, kpis)
        self.counters, self.person_sets, self.kpis = counters, person_sets, kpis
        self._by_name = {k.name: k for k in kpis}
        self._derived: dict[Callable[[Registry], Any], Any] = {}

    def derived(self, build: Callable[[Registry], T]) -> T:
        """build(self), computed once per state of the registry."""
        if build not in self._derived:
            self._derived[build] = build(self)
        found: T = self._derived[build]
        return found

    @contextmanager
    def extended(
        self, counters: Iterable[Counter] = (), person_sets: Iterable[PersonSet] = (), kpis: Iterable[Kpi] = ()
    ) -> Iterator[None]:
        """These entries in force too, until the block ends."""
        before = (self.counters, self.person_sets, self.kpis)
        self._set((*self.counters, *counters), (*self.person_sets, *person_sets), (*self.kpis, *kpis))
        try:
            yield
        finally:
            self._set(*before)

    def kpi(self, name: str) -> Kpi:
        return self._by_name[name]

    def names(self) -> tuple[str, ...]:
        """Every KPI of /v1/kpis, by RACE stage: the order of its JSON fields and CSV columns."""
        return self.derived(_names)

    def stage_kpis(self) -> dict[str, tuple[str, ...]]:
        """Which KPIs each RACE stage shows (the one-pager, the dashboard), in order."""
        return self.derived(_stage_kpis)

    def event_counters(self) -> tuple[Counter, ...]:
        return tuple(c for c in self.counters if not c.of_sessions)

    def session_counters(self) -> tuple[Counter, ...]:
        return tuple(c for c in self.counters if c.of_sessions)

    def counter_names(self) -> tuple[str, ...]:
        """The stored counters: event counters, then session counters."""
        return self.derived(_counter_names)

    def set_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.person_sets)

    def layout(self) -> Layout:
        """The stored layout of every rollup row but the goal dimension's: counter_names(), set_names()."""
        return self.derived(_layout)

    def layouts(self) -> dict[str, Layout]:
        """Each family of rollup rows and its layout: 'kpi' (every breakdown dimension), 'goal'; and
        the report counters' families, 'quality' and 'cohort'."""
        return {"kpi": self.layout(), "goal": GOAL_LAYOUT, "quality": QUALITY_LAYOUT, "cohort": COHORT_LAYOUT}

    def person_set(self, name: str) -> PersonSet:
        return next(s for s in self.person_sets if s.name == name)

    def counter(self, name: str) -> Counter:
        return next(c for c in self.counters if c.name == name)

    def kpi_sets(self) -> tuple[str, ...]:
        """The person sets a KPI answer reads (the funnel's only sets are left out)."""
        return self.derived(_kpi_sets)

    def funnel_sets(self) -> dict[str, str]:
        """RACE stage -> the person set of the persons with an event of that stage (reach: any)."""
        return self.derived(_funnel_sets)


def _names(r: Registry) -> tuple[str, ...]:
    return tuple(name for names in r.stage_kpis().values() for name in names)


def _stage_kpis(r: Registry) -> dict[str, tuple[str, ...]]:
    return {stage: tuple(k.name for k in r.kpis if k.stage == stage) for stage in RACE_STAGES}


def _counter_names(r: Registry) -> tuple[str, ...]:
    return tuple(c.name for c in (*r.event_counters(), *r.session_counters()))


def _layout(r: Registry) -> Layout:
    return layout_of((*r.event_counters(), *r.session_counters()), r.person_sets)


def _kpi_sets(r: Registry) -> tuple[str, ...]:
    read = {q for k in r.kpis for q in k.formula.reads} | {TO_DATE.persons, TO_DATE.seen}
    return tuple(s.name for s in r.person_sets if s.name in read)


def _funnel_sets(r: Registry) -> dict[str, str]:
    by_stage = {s.stage: s.name for s in r.person_sets if s.stage}
    return {stage: by_stage[stage] for stage in RACE_STAGES}


def _check(counters: tuple[Counter, ...], person_sets: tuple[PersonSet, ...], kpis: tuple[Kpi, ...]) -> None:
    quantities = [c.name for c in counters] + [s.name for s in person_sets] + list(TO_DATE.names)
    assert len(set(quantities)) == len(quantities), "a quantity is defined twice"
    assert len({k.name for k in kpis}) == len(kpis), "a KPI is defined twice"
    for c in counters:
        columns = SESSION_CONDITION_COLUMNS if c.of_sessions else EVENT_CONDITION_COLUMNS
        assert all(w.column in columns for w in c.where), c
    for s in person_sets:
        assert all(w.column in EVENT_CONDITION_COLUMNS for w in s.where), s
    for k in kpis:
        assert k.stage in RACE_STAGES and set(k.formula.reads) <= set(quantities), k


REGISTRY = Registry(COUNTERS, PERSON_SETS, KPIS)


def kpis_of(counts: Mapping[str, float]) -> dict[str, float | int | None]:
    """Every KPI's value from one bucket's counts, in the order of REGISTRY.names()."""
    return {k.name: k.value_of(counts) for k in REGISTRY.derived(_ordered_kpis)}


def _ordered_kpis(r: Registry) -> tuple[Kpi, ...]:
    return tuple(r.kpi(name) for name in r.names())
