"""What one derivation changes in the rollups, computed from the facts it has just derived. Pure.

A person's *contribution* to the rollups is a function of their events' facts and their sessions:
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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from pyroaring import BitMap

from app.domain.kpis import cents
from app.domain.rollup import (
    COUNTERS,
    DAY,
    EVENT_COUNTERS,
    HOUR,
    QUARTER,
    SESSION_COUNTERS,
    Rollup,
    Unit,
    hour_of,
    local_day,
    on_quarter,
    quarter_of,
)

NO_VALUE = "(none)"
DIMENSIONS = ("", "channel", "peso", "source", "medium", "campaign", "device")  # '' is the undivided total
SET_OF = ("visitors", "lead_persons", "order_persons", "repeat_customers", "act_persons", "convert_persons",
          "engage_persons")  # fmt: skip
Groups = tuple[str, ...]  # one value per DIMENSIONS entry


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


@dataclass(frozen=True, slots=True)
class Fact:
    """What the rollups need of one stored, non-bot event."""

    event_at: datetime
    type: str
    channel: str
    stage: str
    goal: str | None
    value: float | None
    is_lead: bool
    is_order: bool
    is_first_event: bool
    is_first_order: bool
    is_repeat_order: bool
    nps_score: float | None


def _event_counters(f: Fact) -> list[float]:
    revenue = cents(f.value) if f.is_order else 0
    offline = f.is_order and f.channel == "Offline"
    nps = f.goal == "nps" and f.nps_score is not None
    return [
        f.is_first_event, f.type in ("page", "screen"), f.stage == "act", f.is_lead, f.is_order, revenue,
        f.is_first_order, offline, revenue if offline else 0, f.stage == "engage", f.is_repeat_order, nps,
        nps and f.nps_score is not None and f.nps_score >= 9, nps and f.nps_score is not None and f.nps_score <= 6,
    ]  # fmt: skip


def _sets_of(f: Fact) -> Iterable[int]:
    """Indexes into SET_OF of the person sets this event puts its person in."""
    yield 0
    if f.is_lead:
        yield 1
    if f.is_order:
        yield 2
    if f.is_repeat_order:
        yield 3
    if f.stage == "act":
        yield 4
    elif f.stage == "convert":
        yield 5
    elif f.stage == "engage":
        yield 6


def _bases(
    persons: Sequence[tuple[int, Sequence[tuple[Fact, Groups]], Sequence[SessionLike]]],
) -> dict[int, set[tuple[datetime, Groups, int]]]:
    """Per person number, the (quarter, groups, set) their facts put them in (a session's facts
    mostly share these: memberships are expanded from them, once)."""
    found: dict[int, set[tuple[datetime, Groups, int]]] = {}
    for n, facts, _ in persons:
        found.setdefault(n, set()).update(
            (quarter_of(fact.event_at), groups, s) for fact, groups in facts for s in _sets_of(fact)
        )
    return found


class RollupDelta:
    """Accumulates one derivation's changes; `parts()` gives the rows to append."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._units: dict[datetime, tuple[Unit, ...]] = {}
        self._events: dict[tuple[datetime, Groups], list[float]] = {}
        self._sessions: dict[tuple[datetime, Groups], list[float]] = {}
        self._added: dict[tuple[datetime, Groups, int], set[int]] = {}  # per quarter: expanded later
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

    def add_events(self, number: int, facts: Iterable[tuple[Fact, Groups]]) -> None:
        """Events appended to a person: their counters, and the person in their sets."""
        for fact, groups in facts:
            quarter = self._count(fact, groups, 1)
            for s in _sets_of(fact):
                self._added.setdefault((quarter, groups, s), set()).add(number)

    def _count(self, fact: Fact, groups: Groups, sign: int) -> datetime:
        quarter = quarter_of(fact.event_at)
        counters = self._events.get((quarter, groups))
        if counters is None:
            counters = self._events[(quarter, groups)] = [0.0] * len(EVENT_COUNTERS)
        for i, value in enumerate(_event_counters(fact)):
            if value:
                counters[i] += sign * value
        return quarter

    def add_session(self, session: SessionLike, sign: int = 1) -> None:
        key = (quarter_of(session.started_at), groups_of(session))
        counters = self._sessions.get(key)
        if counters is None:
            counters = self._sessions[key] = [0.0] * len(SESSION_COUNTERS)
        counters[0] += sign
        counters[1] += sign * session.is_bounce
        counters[2] += sign * (session.ended_at - session.started_at).total_seconds()

    # --- a person derived again: the old contribution out, the new one in ----------------------

    def replace_person(
        self,
        old: Sequence[tuple[int, Sequence[tuple[Fact, Groups]], Sequence[SessionLike]]],
        new: Sequence[tuple[int, Sequence[tuple[Fact, Groups]], Sequence[SessionLike]]],
    ) -> None:
        """`old` and `new`: (person number, facts with their session groups, sessions) of the
        persons before and after; several when a relink merges persons."""
        if not any(facts or sessions for _, facts, sessions in old):  # nothing to take out: appends
            for number, facts, sessions in new:
                self.add_events(number, facts)
                for session in sessions:
                    self.add_session(session)
            return
        # counters: only what differs (most of a re-derived person's facts and sessions are unchanged)
        old_facts = Counter(fg for _, facts, _ in old for fg in facts)
        new_facts = Counter(fg for _, facts, _ in new for fg in facts)
        old_sessions = Counter(s for _, _, sessions in old for s in sessions)
        new_sessions = Counter(s for _, _, sessions in new for s in sessions)
        for sign, fact_changes, session_changes in (
            (-1, old_facts - new_facts, old_sessions - new_sessions),
            (1, new_facts - old_facts, new_sessions - old_sessions),
        ):
            for (fact, groups), times in fact_changes.items():
                for _ in range(times):
                    self._count(fact, groups, sign)
            for session, count in session_changes.items():
                for _ in range(count):
                    self.add_session(session, sign)
        before, after = _bases(old), _bases(new)
        for n in before.keys() | after.keys():
            was, now = before.get(n, set()), after.get(n, set())
            if was == now:  # the same slots, groups and sets: the same memberships
                continue
            was_keys, now_keys = self._memberships(was), self._memberships(now)
            for key in was_keys - now_keys:
                self._removed.setdefault(key, set()).add(n)
            for key in now_keys - was_keys:
                self._unit_added.setdefault(key, set()).add(n)

    def _memberships(self, bases: set[tuple[datetime, Groups, int]]) -> set[tuple[Unit, str, str, int]]:
        """The (unit, dimension, group, set) memberships of (quarter, groups, set) bases."""
        keys: set[tuple[Unit, str, str, int]] = set()
        for quarter, groups, s in bases:
            for unit in self.units_of(quarter):
                keys.update((unit, dim, grp, s) for dim, grp in zip(DIMENSIONS, groups, strict=True))
        return keys

    # --- the rows -------------------------------------------------------------------------------

    def changes(self) -> dict[tuple[str, Unit, str], Change]:
        """Per (dimension, unit, group) this delta changes: counter deltas in COUNTERS order, and the
        person numbers added to and removed from each set (indexes into SET_OF)."""
        width = len(EVENT_COUNTERS) + len(SESSION_COUNTERS)
        # first onto each dimension per quarter (many group tuples share a dimension's value), then
        # each quarter's rows onto its hour and day: 7 + 3 steps per entry instead of 7 x 3
        counters: dict[tuple[datetime, int, str], list[float]] = {}
        for counters_of, offset in ((self._events, 0), (self._sessions, len(EVENT_COUNTERS))):
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
                change = out[key] = Change([0.0] * width, {}, {})
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
        for source, removing in ((self._unit_added, False), (self._removed, True)):
            for (unit, dim, grp, s), numbers in source.items():
                change = change_of((dim, unit, grp))
                (change.removed if removing else change.added).setdefault(s, set()).update(numbers)
        return out

    def parts(self) -> list[tuple[str, Unit, str, Rollup]]:
        """The changes as (dimension, unit, group, Rollup part)."""
        out = []
        for (dim, unit, grp), change in self.changes().items():
            r = Rollup(dict(zip(COUNTERS, change.counters, strict=True)))
            r.sets = {SET_OF[s]: BitMap(numbers) for s, numbers in change.added.items()}
            r.removed = {SET_OF[s]: BitMap(numbers) for s, numbers in change.removed.items()}
            out.append((dim, unit, grp, r))
        return out


@dataclass(slots=True)
class Change:
    counters: list[float]
    added: dict[int, set[int]]
    removed: dict[int, set[int]]
