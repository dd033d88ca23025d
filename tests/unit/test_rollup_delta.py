"""Rollup deltas computed from derived facts (pure): appends add counters and set members in the
slot, hour and local day of every dimension; a person derived again has the old contribution
taken out and the new one put in, with removals where a person left a set; parts fold in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pyroaring import BitMap

from app.domain.person import SessionFacts
from app.domain.rollup import DAY, HOUR, QUARTER, Rollup, folded
from app.domain.rollup_delta import DIMENSIONS, GOAL, EventColumns, RollupDelta, groups_of

AT = datetime(2026, 5, 1, 10, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def _session(key: str, channel: str = "Direct", start: datetime = AT, events: int = 1) -> SessionFacts:
    return SessionFacts(key, start, start + timedelta(minutes=events - 1), events, events == 1, channel, "Owned",
                        "desktop", None, None, None)  # fmt: skip


def _event(at: datetime, type: str, stage: str, goal: str, value: float | None = None, first: bool = False,
           order: bool = False, first_order: bool = False, repeat: bool = False) -> EventColumns:  # fmt: skip
    """An event's stored columns, as derivation hands them to the rollups."""
    return {"event_at": at, "type": type, "channel": "Direct", "stage": stage, "goal": goal, "value": value,
            "is_lead": False, "is_order": order, "is_first_event": first, "is_first_order": first_order,
            "is_repeat_order": repeat, "nps_score": None}  # fmt: skip


def _page(at: datetime = AT, first: bool = False) -> EventColumns:
    return _event(at, "page", "reach", "page_view", first=first)


def _order(at: datetime, value: float, repeat: bool) -> EventColumns:
    stage = "engage" if repeat else "convert"
    return _event(at, "track", stage, "purchase", value, order=True, first_order=not repeat, repeat=repeat)


def _units(delta: RollupDelta, at: datetime) -> tuple[tuple[str, datetime], ...]:
    return delta.units_of(at - (at - datetime(2000, 1, 1, tzinfo=UTC)) % timedelta(minutes=15))


def test_appended_events_count_in_their_slot_hour_and_local_day_of_every_dimension() -> None:
    delta = RollupDelta(BERLIN)
    session = _session("a|s|1", "Email")
    groups = groups_of(session)
    delta.add_events(7, [(_page(first=True), groups), (_order(AT + timedelta(minutes=1), 40.0, False), groups)])
    delta.add_session(session)
    changes = delta.changes()
    units = _units(delta, AT)
    assert [u[0] for u in units] == [QUARTER, HOUR, DAY]
    assert units[2][1] == datetime(2026, 4, 30, 22, tzinfo=UTC)  # Berlin's midnight
    by_session = {(dim, unit, grp) for unit in units for dim, grp in zip(DIMENSIONS, groups, strict=True)}
    by_goal = {(GOAL, unit, goal) for unit in units for goal in ("page_view", "purchase")}
    assert set(changes) == by_session | by_goal
    for key in by_session:
        change = changes[key]
        counters = dict(zip(Rollup().counters, change.counters, strict=True))
        picked = (counters["pageviews"], counters["orders"], counters["revenue"], counters["new_customers"])
        assert picked == (1, 1, 4000, 1)  # revenue in cents
        assert (counters["sessions"], counters["new_visitors"]) == (1, 1)
        assert change.added == {0: {7}, 2: {7}, 5: {7}} and change.removed == {}  # visitors, customers, convert
    for unit in units:  # per goal: completions, value in cents, the person
        purchase, page_view = changes[(GOAL, unit, "purchase")], changes[(GOAL, unit, "page_view")]
        assert (purchase.counters, purchase.added) == ([1, 4000], {0: {7}})
        assert (page_view.counters, page_view.added) == ([1, 0], {0: {7}})


def test_a_goal_that_changes_on_rederivation_moves_its_person_and_completion() -> None:
    """A person's order re-derived as a repeat purchase: out of the purchase goal's rows (completion
    and person), into repeat_purchase's."""
    delta = RollupDelta(ZoneInfo("UTC"))
    session = _session("a|s|1", events=2)
    first = _order(AT, 10.0, False)
    old = [(4, [(first, groups_of(session))], [session])]
    new = [(4, [({**first, "goal": "repeat_purchase", "is_repeat_order": True}, groups_of(session))], [session])]
    delta.replace_person(old, new)
    changes = delta.changes()
    for unit in _units(delta, AT):
        gone, came = changes[(GOAL, unit, "purchase")], changes[(GOAL, unit, "repeat_purchase")]
        assert (gone.counters, gone.added, gone.removed) == ([-1, -1000], {}, {0: {4}})
        assert (came.counters, came.added, came.removed) == ([1, 1000], {0: {4}}, {})


def test_a_relinked_person_moves_to_the_users_number_with_counters_unchanged() -> None:
    """An anonymous history (person 3) becomes user 9's: the same facts, a new number. Counters net
    to nothing, the sets swap the person."""
    delta = RollupDelta(ZoneInfo("UTC"))
    old_session, new_session = _session("a:x|s|1", events=2), _session("u:y|s|1", events=2)
    facts = [_page(first=True), _page(AT + timedelta(minutes=1))]
    old = [(3, [(f, groups_of(old_session)) for f in facts], [old_session])]
    new = [(9, [(f, groups_of(new_session)) for f in facts], [new_session])]
    delta.replace_person(old, new)
    changes = delta.changes()
    assert changes
    for change in changes.values():
        assert not any(change.counters)
        assert change.added == {0: {9}} and change.removed == {0: {3}}


def test_a_late_earlier_order_moves_a_customer_out_of_a_slot_only_where_no_order_is_left() -> None:
    """Before: one order at 10:05 (first). After a late order at 09:00 arrives: 09:00 is the first,
    10:05 a repeat. The person stays in the 10:00 slot's customers (still an order there) and joins
    the 09:00 slot; the repeat counters move."""
    delta = RollupDelta(ZoneInfo("UTC"))
    session = _session("p|s|1")
    groups = groups_of(session)
    early = AT - timedelta(hours=1, minutes=5)
    old = [(5, [(_order(AT, 10.0, False), groups)], [session])]
    new = [(5, [(_order(early, 20.0, False), groups), (_order(AT, 10.0, True), groups)], [session])]
    delta.replace_person(old, new)
    changes = delta.changes()
    ten = changes[("", (QUARTER, datetime(2026, 5, 1, 10, tzinfo=UTC)), "")]
    nine = changes[("", (QUARTER, datetime(2026, 5, 1, 9, tzinfo=UTC)), "")]
    c10 = dict(zip(Rollup().counters, ten.counters, strict=True))
    assert (c10["orders"], c10["new_customers"], c10["repeat_orders"], c10["revenue"]) == (0, -1, 1, 0)
    assert ten.added == {3: {5}, 6: {5}} and ten.removed == {5: {5}}  # repeat customer, engage in; convert out
    assert nine.added == {0: {5}, 2: {5}, 5: {5}} and nine.removed == {}
    day = changes[("", (DAY, datetime(2026, 5, 1, tzinfo=UTC)), "")]
    assert 2 not in day.removed  # still a customer that day


def test_parts_fold_in_commit_order() -> None:
    base = Rollup()
    base.counters["pageviews"] = 2
    base.sets["visitors"] = BitMap([1, 2])
    relink = Rollup()
    relink.sets["visitors"], relink.removed["visitors"] = BitMap([9]), BitMap([2])
    back = Rollup()
    back.counters["pageviews"] = 1
    back.sets["visitors"] = BitMap([2])
    state = folded([base, relink, back])
    assert state.counters["pageviews"] == 3
    assert set(state.sets["visitors"]) == {1, 2, 9}
    assert set(folded([base, back, relink]).sets["visitors"]) == {1, 9}  # order matters: removal last
    assert set(base.sets["visitors"]) == {1, 2}  # inputs untouched
