"""What one derivation changes in the rollups, computed from the facts it has just derived. Pure.

A person's *contribution* to the rollups is a function of their events' facts and their sessions
(which counters and sets, the KPI registry says: app.domain.kpis.registry):
counters per (15-minute slot, session groups), and their person number in the sets of every unit
(slot, hour, local day) and group their events fall in. A derivation knows, for every person it
touches, the contribution before and after:
- a person extended by later events adds the new events' counters and set memberships, and their
  sessions' new rows minus the old ones (counters only add; a set only gains members);
- a person derived again from all their events (a late event, a relink, an order copy that lost
  its place, a reclassification) subtracts the whole old contribution and adds the new one; set
  memberships that went away become removals, so distinct counts stay exact.
The result is one part per touched (dimension, unit, group): counter deltas, persons added and
persons removed (disjoint), which the store appends after the key's earlier parts.

Beside the breakdown dimensions (an event counts under its session's group), the `goal` dimension
groups events by their own goal and keeps the registry's per-goal quantities (GOAL_LAYOUT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pyroaring import BitMap

from app.domain.kpis import REGISTRY, cents
from app.domain.kpis.registry import (
    GOAL_COUNTERS,
    GOAL_LAYOUT,
    GOAL_SETS,
    Counter,
    Layout,
    Measure,
    Registry,
    compiled,
    compiled_hits,
    python_test,
)
from app.domain.rollup import (
    DAY,
    HOUR,
    QUARTER,
    Rollup,
    Unit,
    hour_of,
    local_day,
    on_quarter,
    quarter_of,
)

NO_VALUE = "(none)"
DIMENSIONS = ("", "channel", "peso", "source", "medium", "campaign", "device")  # '' is the undivided total
GOAL = "goal"  # the dimension whose groups are the events' goals
Groups = tuple[str, ...]  # one value per DIMENSIONS entry


def layout_of_dim(dim: str) -> Layout:
    """The layout a dimension's rows are stored in."""
    return GOAL_LAYOUT if dim == GOAL else REGISTRY.layout()


class SessionLike(Protocol):
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime: ...
    @property
    def is_bounce(self) -> bool: ...
    @property
    def channel(self) -> str: ...
    @property
    def peso(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def campaign_source(self) -> str | None: ...
    @property
    def campaign_medium(self) -> str | None: ...
    @property
    def campaign_name(self) -> str | None: ...


def groups_of(session: SessionLike) -> Groups:
    """A session's group in every dimension (an event counts under its session's groups)."""
    return ("", session.channel, session.peso, session.campaign_source or NO_VALUE,
            session.campaign_medium or NO_VALUE, session.campaign_name or NO_VALUE, session.device)  # fmt: skip


class EventColumns(Protocol):
    """A stored, non-bot event's columns by name (an `event` row, or the same of an event being
    derived): what the registry's conditions read, and `event_at`."""

    def __getitem__(self, column: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Tests:
    """The registry's counters and person sets as compiled Python, in REGISTRY order."""

    event_counters: Callable[[EventColumns], tuple[float, ...]]  # each counter's addition for the event
    session_counters: Callable[[SessionLike], tuple[float, ...]]
    sets: Callable[[EventColumns], list[int]]  # the indexes of the sets the event puts its person in
    goal_counters: Callable[[EventColumns], tuple[float, ...]]  # GOAL_COUNTERS, for an event with a goal
    goal_sets: Callable[[EventColumns], list[int]]


def _tests(registry: Registry) -> _Tests:
    def event_value(c: Counter) -> str:
        return f"(cents(row['value']) if {python_test(c.where)} else 0)" if c.measure is Measure.CENTS else (
            f"(1 if {python_test(c.where)} else 0)")  # fmt: skip

    def session_value(c: Counter) -> str:
        added = "(row.ended_at - row.started_at).total_seconds()" if c.measure is Measure.SECONDS else "1"
        return f"({added} if {python_test(c.where, by_attribute=True)} else 0)"

    return _Tests(
        compiled((event_value(c) for c in registry.event_counters()), cents=cents),
        compiled(session_value(c) for c in registry.session_counters()),
        compiled_hits(python_test(s.where) for s in registry.person_sets),
        compiled((event_value(c) for c in GOAL_COUNTERS), cents=cents),
        compiled_hits(python_test(s.where) for s in GOAL_SETS),
    )


class RollupDelta:
    """Accumulates one derivation's changes; `parts()` gives the rows to append."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._tests = REGISTRY.derived(_tests)
        self._set_names = REGISTRY.set_names()
        self._counter_names = REGISTRY.counter_names()
        self._event_width = len(REGISTRY.event_counters())
        self._goal_width = len(GOAL_COUNTERS)
        self._units: dict[datetime, tuple[Unit, ...]] = {}
        self._events: dict[tuple[datetime, Groups], list[float]] = {}
        self._sessions: dict[tuple[datetime, Groups], list[float]] = {}
        self._added: dict[tuple[datetime, Groups, int], set[int]] = {}  # per quarter: expanded later
        self._goals: dict[tuple[datetime, str], list[float]] = {}
        self._goal_added: dict[tuple[datetime, str, int], set[int]] = {}
        self._removed: dict[tuple[Unit, str, str, int], set[int]] = {}
        self._unit_added: dict[tuple[Unit, str, str, int], set[int]] = {}

    def units_of(self, quarter: datetime) -> tuple[Unit, ...]:
        units = self._units.get(quarter)
        if units is None:
            day = local_day(quarter, self._zone)
            units = ((QUARTER, quarter), (HOUR, hour_of(quarter)))
            if on_quarter(day[0]) and on_quarter(day[1]):
                units += ((DAY, day[0]),)
            self._units[quarter] = units
        return units

    # --- appended events: counters add, sets gain members -------------------------------------

    def add_events(self, number: int, facts: Iterable[tuple[EventColumns, Groups]]) -> None:
        """Events appended to a person: their counters, and the person in their sets."""
        for fact, groups in facts:
            quarter = self._count(fact, groups, 1)
            for s in self._tests.sets(fact):
                self._added.setdefault((quarter, groups, s), set()).add(number)
            goal = fact["goal"]
            if goal is not None:
                for s in self._tests.goal_sets(fact):
                    self._goal_added.setdefault((quarter, goal, s), set()).add(number)

    def _count(self, fact: EventColumns, groups: Groups, sign: int) -> datetime:
        quarter = quarter_of(fact["event_at"])
        counters = self._events.get((quarter, groups))
        if counters is None:
            counters = self._events[(quarter, groups)] = [0.0] * self._event_width
        for i, value in enumerate(self._tests.event_counters(fact)):
            if value:
                counters[i] += sign * value
        goal = fact["goal"]
        if goal is not None:
            per_goal = self._goals.get((quarter, goal))
            if per_goal is None:
                per_goal = self._goals[(quarter, goal)] = [0.0] * self._goal_width
            for i, value in enumerate(self._tests.goal_counters(fact)):
                if value:
                    per_goal[i] += sign * value
        return quarter

    def add_session(self, session: SessionLike, sign: int = 1) -> None:
        key = (quarter_of(session.started_at), groups_of(session))
        counters = self._sessions.get(key)
        if counters is None:
            counters = self._sessions[key] = [0.0] * (len(self._counter_names) - self._event_width)
        for i, value in enumerate(self._tests.session_counters(session)):
            if value:
                counters[i] += sign * value

    # --- a person derived again: the old contribution out, the new one in ----------------------

    def replace_person(
        self,
        old: Sequence[tuple[int, Sequence[tuple[EventColumns, Groups]], Sequence[SessionLike]]],
        new: Sequence[tuple[int, Sequence[tuple[EventColumns, Groups]], Sequence[SessionLike]]],
    ) -> None:
        """`old` and `new`: (person number, facts with their session groups, sessions) of the
        persons before and after; several when a relink merges persons."""
        if not any(facts or sessions for _, facts, sessions in old):  # nothing to take out: appends
            for number, facts, sessions in new:
                self.add_events(number, facts)
                for session in sessions:
                    self.add_session(session)
            return
        for sign, persons in ((-1, old), (1, new)):
            for _, facts, sessions in persons:
                for fact, groups in facts:
                    self._count(fact, groups, sign)
                for session in sessions:
                    self.add_session(session, sign)
        before, after = self._bases(old), self._bases(new)
        for n in before.keys() | after.keys():
            was, now = before.get(n, set()), after.get(n, set())
            if was == now:  # the same slots, groups and sets: the same memberships
                continue
            was_keys, now_keys = self._memberships(was), self._memberships(now)
            for key in was_keys - now_keys:
                self._removed.setdefault(key, set()).add(n)
            for key in now_keys - was_keys:
                self._unit_added.setdefault(key, set()).add(n)

    def _bases(
        self, persons: Sequence[tuple[int, Sequence[tuple[EventColumns, Groups]], Sequence[SessionLike]]]
    ) -> dict[int, set[tuple[datetime, Groups, int]]]:
        """Per person number, the (quarter, groups, set) their facts put them in (a session's facts
        mostly share these: memberships are expanded from them, once); a goal's set is
        (quarter, (goal,), set) of the goal dimension."""
        found: dict[int, set[tuple[datetime, Groups, int]]] = {}
        for n, facts, _ in persons:
            bases = found.setdefault(n, set())
            for fact, groups in facts:
                quarter = quarter_of(fact["event_at"])
                bases.update((quarter, groups, s) for s in self._tests.sets(fact))
                if fact["goal"] is not None:
                    bases.update((quarter, (fact["goal"],), s) for s in self._tests.goal_sets(fact))
        return found

    def _memberships(self, bases: set[tuple[datetime, Groups, int]]) -> set[tuple[Unit, str, str, int]]:
        """The (unit, dimension, group, set) memberships of (quarter, groups, set) bases."""
        keys: set[tuple[Unit, str, str, int]] = set()
        for quarter, groups, s in bases:
            dims = DIMENSIONS if len(groups) > 1 else (GOAL,)
            for unit in self.units_of(quarter):
                keys.update((unit, dim, grp, s) for dim, grp in zip(dims, groups, strict=True))
        return keys

    # --- the rows -------------------------------------------------------------------------------

    def changes(self) -> dict[tuple[str, Unit, str], Change]:
        """Per (dimension, unit, group) this delta changes: counter deltas in REGISTRY.counter_names()
        order, and the person numbers added to and removed from each set (indexes into
        REGISTRY.person_sets)."""
        width = len(self._counter_names)
        # first onto each dimension per quarter (many group tuples share a dimension's value), then
        # each quarter's rows onto its hour and day: 7 + 3 steps per entry instead of 7 x 3
        counters: dict[tuple[datetime, int, str], list[float]] = {}
        for counters_of, offset in ((self._events, 0), (self._sessions, self._event_width)):
            for (quarter, groups), values in counters_of.items():
                nonzero = [(offset + i, v) for i, v in enumerate(values) if v]
                if not nonzero:
                    continue
                for d, grp in enumerate(groups):
                    found = counters.get((quarter, d, grp))
                    if found is None:
                        found = counters[(quarter, d, grp)] = [0.0] * width
                    for i, v in nonzero:
                        found[i] += v
        members: dict[tuple[datetime, int, str, int], set[int]] = {}
        for (quarter, groups, s), numbers in self._added.items():
            for d, grp in enumerate(groups):
                found_set = members.get((quarter, d, grp, s))
                if found_set is None:
                    members[(quarter, d, grp, s)] = set(numbers)
                else:
                    found_set |= numbers
        out: dict[tuple[str, Unit, str], Change] = {}

        def change_of(key: tuple[str, Unit, str]) -> Change:
            change = out.get(key)
            if change is None:
                change = out[key] = Change([0.0] * (self._goal_width if key[0] == GOAL else width), {}, {})
            return change

        for (quarter, d, grp), values in counters.items():
            nonzero = [(i, v) for i, v in enumerate(values) if v]
            for unit in self.units_of(quarter):
                target = change_of((DIMENSIONS[d], unit, grp)).counters
                for i, v in nonzero:
                    target[i] += v
        for (quarter, d, grp, s), numbers in members.items():
            for unit in self.units_of(quarter):
                change_of((DIMENSIONS[d], unit, grp)).added.setdefault(s, set()).update(numbers)
        for (quarter, goal), values in self._goals.items():
            nonzero = [(i, v) for i, v in enumerate(values) if v]
            if nonzero:
                for unit in self.units_of(quarter):
                    target = change_of((GOAL, unit, goal)).counters
                    for i, v in nonzero:
                        target[i] += v
        for (quarter, goal, s), numbers in self._goal_added.items():
            for unit in self.units_of(quarter):
                change_of((GOAL, unit, goal)).added.setdefault(s, set()).update(numbers)
        for source, removing in ((self._unit_added, False), (self._removed, True)):
            for (unit, dim, grp, s), numbers in source.items():
                change = change_of((dim, unit, grp))
                (change.removed if removing else change.added).setdefault(s, set()).update(numbers)
        return out

    def parts(self) -> list[tuple[str, Unit, str, Rollup]]:
        """The changes as (dimension, unit, group, Rollup part)."""
        out = []
        for (dim, unit, grp), change in self.changes().items():
            layout = layout_of_dim(dim)
            r = Rollup(dict(zip(layout.counters, change.counters, strict=True)))
            r.sets = {layout.sets[s]: BitMap(numbers) for s, numbers in change.added.items()}
            r.removed = {layout.sets[s]: BitMap(numbers) for s, numbers in change.removed.items()}
            out.append((dim, unit, grp, r))
        return out


@dataclass(slots=True)
class Change:
    counters: list[float]
    added: dict[int, set[int]]
    removed: dict[int, set[int]]
