"""An independent, deliberately naive oracle of DESIGN §3-§5: persons, RACE facts, sessions, every KPI
and the RACE funnel, computed in plain Python from the raw Segment messages.

It shares no code with app/ except the channel lists (app.domain.channels.channel_of, unit-tested on
its own). Everything is recomputed by brute force from the message list, so it is slow but obvious.

Interpretations where DESIGN is ambiguous (the same ones the service documents):
- event time = message `timestamp` (messages with `sentAt` are not supported here);
  a person's events are totally ordered by (event time, messageId);
- person = userId; else the userId linked to the anonymousId by the earliest message carrying both
  ids (ties: smallest userId; an alias's previousId is its anonymousId); else the anonymousId.
  Keys "u:<id>" / "a:<id>";
- bot messages (user agent containing "bot"/"crawler"/"spider") are excluded from everything;
- sessions: one per (person, context.sessionId); a person's events without a sessionId are cut where
  more than 30 minutes pass between consecutive ones; a session's channel is its first event's;
- "at or before the bucket's end" means event time < the (clipped) bucket end;
- breakdown: per-event facts are decided over all of the person's events, then every definition is
  applied to the events (and sessions) whose session's channel is the group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from app.domain.channels import channel_of

GAP = timedelta(minutes=30)
BOT_MARKERS = ("bot", "crawler", "spider")

ORDER_NAMES = {"Order Completed", "purchase"}
# event name -> (goal, stage, lead)
TRACK_GOALS: dict[str, tuple[str, str, bool]] = {
    "Signed Up": ("signup", "act", True),
    "signup": ("signup", "act", True),
    "Newsletter Subscribed": ("newsletter", "act", True),
    "newsletter_signup": ("newsletter", "act", True),
    "Product Added": ("add_to_cart", "act", False),
    "add_to_cart": ("add_to_cart", "act", False),
    "Product Viewed": ("product_view", "act", False),
    "product_view": ("product_view", "act", False),
    "Product Shared": ("social", "act", False),
    "Comment Posted": ("social", "act", False),
    "Content Liked": ("social", "act", False),
    "Product Reviewed": ("review", "engage", False),
    "review": ("review", "engage", False),
}

KPI_NAMES = (
    "visitors",
    "new_visitors",
    "sessions",
    "pageviews",
    "bounce_rate",
    "value_per_visit",
    "act_events",
    "leads",
    "lead_rate",
    "pages_per_session",
    "avg_session_seconds",
    "orders",
    "revenue",
    "aov",
    "new_customers",
    "conversion_rate",
    "offline_orders",
    "offline_revenue",
    "engage_events",
    "repeat_orders",
    "repeat_customers",
    "repeat_purchase_rate",
    "customers_to_date",
    "active_customer_rate",
    "clv",
    "nps",
)


# Not DESIGN §5's: KPIs a test registers in the service on top of it (tests/integration/
# test_kpi_registry.py), to show one registry entry reaches every answer. Computed here by hand.
# add_to_cart_rate: distinct persons with an add_to_cart goal event in the bucket / visitors (a
# persons rate, like lead_rate and conversion_rate).
TEST_ONLY_KPI_NAMES = ("add_to_cart_rate",)


def parse_ts(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def is_bot_agent(agent: Any) -> bool:
    return isinstance(agent, str) and any(m in agent.lower() for m in BOT_MARKERS)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass
class OEvent:
    mid: str
    type: str
    name: str | None
    at: datetime  # UTC
    anon: str | None
    user: str | None
    props: dict[str, Any]
    channel: str
    session_id: str | None
    bot: bool
    person: str = ""
    # facts
    stage: str = "none"
    goal: str | None = None
    lead: bool = False
    order: bool = False
    value: float = 0.0
    first_event: bool = False
    first_order: bool = False
    repeat_order: bool = False
    session: int = -1  # index into Oracle.sessions


@dataclass
class OSession:
    person: str
    events: list[OEvent]

    @property
    def start(self) -> datetime:
        return self.events[0].at

    @property
    def channel(self) -> str:
        return self.events[0].channel

    @property
    def seconds(self) -> float:
        return (self.events[-1].at - self.events[0].at).total_seconds()

    @property
    def bounce(self) -> bool:
        return len(self.events) == 1 and self.events[0].type in ("page", "screen")


def _event(msg: dict[str, Any]) -> OEvent:
    if msg.get("sentAt"):
        raise NotImplementedError("the oracle takes event time = timestamp; no sentAt support")
    ctx = msg.get("context") or {}
    page = ctx.get("page") or {}
    campaign = ctx.get("campaign") or {}
    return OEvent(
        mid=str(msg["messageId"]),
        type=msg["type"],
        name=msg.get("event"),
        at=parse_ts(msg["timestamp"]),
        anon=(msg.get("previousId") if msg["type"] == "alias" else None) or msg.get("anonymousId") or None,
        user=msg.get("userId") or None,
        props=dict(msg.get("properties") or {}),
        channel=channel_of(
            context_channel=ctx.get("channel"),
            medium=campaign.get("medium"),
            referrer=page.get("referrer"),
            page_url=page.get("url"),
            site_domains=(),
        ),
        session_id=ctx.get("sessionId") or None,
        bot=is_bot_agent(ctx.get("userAgent")),
    )


def _classify(e: OEvent, orders_before: int) -> None:
    if e.type in ("page", "screen"):
        e.stage, e.goal = "reach", "page_view"
        return
    if e.type != "track":
        return  # identify / alias / group: no rule matches
    if e.name in ORDER_NAMES:
        e.order = True
        e.goal, e.stage = ("repeat_purchase", "engage") if orders_before >= 1 else ("purchase", "convert")
        for key in ("revenue", "total", "value"):
            number = _number(e.props.get(key))
            if number is not None:
                e.value = number
                break
        return
    if e.name in TRACK_GOALS:
        e.goal, e.stage, e.lead = TRACK_GOALS[e.name]
        return
    if e.name == "Survey Answered" and "score" in e.props:
        e.goal, e.stage = "nps", "engage"


@dataclass(frozen=True)
class OBucket:
    start: datetime  # UTC, clipped
    end: datetime  # UTC, clipped


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def make_buckets(frm: date, to: date, granularity: str, zone: ZoneInfo) -> list[OBucket]:
    """Calendar buckets of [from, to) (local midnights), clipped to the period."""
    if granularity == "total":
        return [OBucket(local_midnight(frm, zone), local_midnight(to, zone))]
    if granularity == "day":
        first = frm
    elif granularity == "week":
        first = frm - timedelta(days=frm.weekday())
    elif granularity == "month":
        first = frm.replace(day=1)
    else:
        raise ValueError(granularity)
    starts: list[date] = []
    day = first
    while day < to:
        starts.append(day)
        if granularity == "day":
            day = day + timedelta(days=1)
        elif granularity == "week":
            day = day + timedelta(days=7)
        else:
            day = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    starts.append(day)
    out = []
    for a, b in pairwise(starts):
        out.append(OBucket(local_midnight(max(a, frm), zone), local_midnight(min(b, to), zone)))
    return out


def _ratio(n: float, d: float) -> float | None:
    return None if d == 0 else n / d


class Oracle:
    def __init__(self, messages: Iterable[dict[str, Any]]) -> None:
        seen: set[str] = set()
        self.all_events: list[OEvent] = []
        for msg in messages:
            if str(msg["messageId"]) in seen:
                continue  # idempotency: first copy wins
            seen.add(str(msg["messageId"]))
            self.all_events.append(_event(msg))

        # identity links: the earliest message (by event time, then smallest userId) carrying both ids
        link: dict[str, tuple[datetime, str]] = {}
        for e in self.all_events:
            if e.anon and e.user:
                candidate = (e.at, e.user)
                if e.anon not in link or candidate < link[e.anon]:
                    link[e.anon] = candidate
        self.links = {a: u for a, (_, u) in link.items()}
        for e in self.all_events:
            if e.user:
                e.person = f"u:{e.user}"
            elif e.anon in self.links:
                e.person = f"u:{self.links[e.anon]}"
            else:
                e.person = f"a:{e.anon}"

        self.events = [e for e in self.all_events if not e.bot]
        self.by_person: dict[str, list[OEvent]] = defaultdict(list)
        for e in self.events:
            self.by_person[e.person].append(e)

        self.sessions: list[OSession] = []
        for person, evs in self.by_person.items():
            evs.sort(key=lambda e: (e.at, e.mid))
            orders = 0
            for i, e in enumerate(evs):
                _classify(e, orders)
                e.first_event = i == 0
                if e.order:
                    e.first_order = orders == 0
                    e.repeat_order = orders > 0
                    orders += 1
            explicit: dict[str, OSession] = {}
            current: OSession | None = None
            previous: OEvent | None = None
            for e in evs:
                if e.session_id is not None:
                    if e.session_id not in explicit:
                        explicit[e.session_id] = OSession(person, [])
                        self.sessions.append(explicit[e.session_id])
                    target = explicit[e.session_id]
                else:
                    if current is None or previous is None or e.at - previous.at > GAP:
                        current = OSession(person, [])
                        self.sessions.append(current)
                    target = current
                    previous = e
                target.events.append(e)
        for index, s in enumerate(self.sessions):
            for e in s.events:
                e.session = index

    def session_channel(self, e: OEvent) -> str:
        return self.merge(self.sessions[e.session].channel)

    def merge(self, channel: str) -> str:
        """The group a channel is reported under (replaced to check `limit` and '(other)')."""
        return channel

    # ---------------------------------------------------------------- KPIs

    def kpis(self, frm: date, to: date, granularity: str, tz: str, breakdown: bool = False) -> list[dict[str, Any]]:
        """Rows like the API's buckets: {"start", "end" (UTC datetimes), "group", "kpis"}."""
        zone = ZoneInfo(tz)
        buckets = make_buckets(frm, to, granularity, zone)
        if not breakdown:
            return [{"start": b.start, "end": b.end, "group": None, "kpis": self._bucket(b, None)} for b in buckets]
        channels = sorted({self.merge(s.channel) for s in self.sessions})
        rows: list[dict[str, Any]] = []
        for g in channels:
            per: list[dict[str, Any]] = [
                {"start": b.start, "end": b.end, "group": g, "kpis": self._bucket(b, g)} for b in buckets
            ]
            if any(_nonempty(r["kpis"]) for r in per):
                rows.extend(per)
        return rows

    def _bucket(self, b: OBucket, group: str | None) -> dict[str, Any]:
        def in_group(e: OEvent) -> bool:
            return group is None or self.session_channel(e) == group

        events = [e for e in self.events if b.start <= e.at < b.end and in_group(e)]
        sessions = [
            s for s in self.sessions if b.start <= s.start < b.end and (group is None or self.merge(s.channel) == group)
        ]
        persons = {e.person for e in events}
        orders = [e for e in events if e.order]
        order_persons = {e.person for e in orders}
        # money (DESIGN §5): each value in cents, summed as integers, written in currency units
        revenue = sum(round(e.value * 100) for e in orders)
        pageviews = sum(1 for e in events if e.type in ("page", "screen"))
        repeat_customers = {e.person for e in orders if e.repeat_order}
        offline = [e for e in orders if e.channel == "Offline"]
        scores = [
            s
            for e in events
            if e.goal == "nps"
            for s in [_number(e.props.get("score"))]
            if s is not None and 0 <= s <= 10
        ]
        promoters = sum(1 for s in scores if s >= 9)
        detractors = sum(1 for s in scores if s <= 6)
        to_date = [e for e in self.events if e.order and e.at < b.end and in_group(e)]
        customers = {e.person for e in to_date}
        n_sessions = len(sessions)
        return {
            "visitors": len(persons),
            "new_visitors": len({e.person for e in events if e.first_event}),
            "sessions": n_sessions,
            "pageviews": pageviews,
            "bounce_rate": _ratio(sum(1 for s in sessions if s.bounce), n_sessions),
            "value_per_visit": _money_ratio(revenue, n_sessions),
            "act_events": sum(1 for e in events if e.stage == "act"),
            "leads": sum(1 for e in events if e.lead),
            "lead_rate": _ratio(len({e.person for e in events if e.lead}), len(persons)),
            "pages_per_session": _ratio(pageviews, n_sessions),
            "avg_session_seconds": _ratio(sum(s.seconds for s in sessions), n_sessions),
            "orders": len(orders),
            "revenue": revenue / 100,
            "aov": _money_ratio(revenue, len(orders)),
            "new_customers": len({e.person for e in orders if e.first_order}),
            "conversion_rate": _ratio(len(order_persons), len(persons)),
            "offline_orders": len(offline),
            "offline_revenue": sum(round(e.value * 100) for e in offline) / 100,
            "engage_events": sum(1 for e in events if e.stage == "engage"),
            "repeat_orders": sum(1 for e in orders if e.repeat_order),
            "repeat_customers": len(repeat_customers),
            "repeat_purchase_rate": _ratio(len(repeat_customers), len(order_persons)),
            "customers_to_date": len(customers),
            "active_customer_rate": _ratio(len(customers & persons), len(customers)),
            "clv": _money_ratio(sum(round(e.value * 100) for e in to_date), len(customers)),
            "nps": _ratio(100 * (promoters - detractors), len(scores)),
            "add_to_cart_rate": _ratio(len({e.person for e in events if e.goal == "add_to_cart"}), len(persons)),
        }

    def goals(self, frm: date, to: date, granularity: str, tz: str) -> dict[tuple[datetime, str], tuple[int, int, int]]:
        """Per (bucket start, goal) with a completion: completions, distinct persons, value in cents."""
        found: dict[tuple[datetime, str], tuple[int, int, int]] = {}
        for b in make_buckets(frm, to, granularity, ZoneInfo(tz)):
            events = [e for e in self.events if b.start <= e.at < b.end and e.goal]
            for goal in {e.goal for e in events if e.goal}:
                done = [e for e in events if e.goal == goal]
                found[(b.start, goal)] = (
                    len(done),
                    len({e.person for e in done}),
                    sum(round(e.value * 100) for e in done),
                )
        return found

    def cohorts(self, start: datetime, end: datetime, tz: str, unvalued: frozenset[str] = frozenset()
                ) -> dict[tuple[str, str], tuple[int, int, int, int]]:  # fmt: skip
        """Repeat-purchase cohorts: per (month of a first order in [start, end), month of an order
        before end), both YYYY-MM in tz: customers with an order, customers with a repeat order,
        orders, value in cents (`unvalued`: messageIds whose value does not count)."""
        zone = ZoneInfo(tz)

        def month(moment: datetime) -> str:
            return moment.astimezone(zone).strftime("%Y-%m")

        cohort_of = {e.person: month(e.at) for e in self.events if e.first_order and start <= e.at < end}
        found: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [set(), set(), 0, 0])
        for e in self.events:
            if e.order and e.person in cohort_of and e.at < end:
                cell = found[(cohort_of[e.person], month(e.at))]
                cell[0].add(e.person)
                if e.repeat_order:
                    cell[1].add(e.person)
                cell[2] += 1
                cell[3] += 0 if e.mid in unvalued else round(e.value * 100)
        return {key: (len(a), len(r), n, cents) for key, (a, r, n, cents) in found.items()}

    def funnel(self, frm: date, to: date, tz: str, nested: bool = True) -> list[dict[str, Any]]:
        """The RACE funnel: nested (persons in this stage and every earlier one) or independent."""
        zone = ZoneInfo(tz)
        start, end = local_midnight(frm, zone), local_midnight(to, zone)
        events = [e for e in self.events if start <= e.at < end]
        reached = {"reach": {e.person for e in events}}
        reached |= {stage: {e.person for e in events if e.stage == stage} for stage in ("act", "convert", "engage")}
        independent = {stage: len(persons) for stage, persons in reached.items()}
        in_all, nested_counts = set(reached["reach"]), {}
        for stage, persons in reached.items():
            in_all = {p for p in in_all if p in persons}
            nested_counts[stage] = len(in_all)
        counts = list((nested_counts if nested else independent).items())
        top = counts[0][1]
        steps = []
        for i, (stage, n) in enumerate(counts):
            steps.append(
                {
                    "stage": stage,
                    "persons": n,
                    "rate_from_previous": None if i == 0 else _ratio(n, counts[i - 1][1]),
                    "rate_from_top": _ratio(n, top),
                    "nested_persons": nested_counts[stage],
                    "independent_persons": independent[stage],
                }
            )
        return steps


def _nonempty(kpis: dict[str, Any]) -> bool:
    return any(v not in (None, 0, 0.0) for v in kpis.values())


__all__ = ["KPI_NAMES", "TEST_ONLY_KPI_NAMES", "OBucket", "OEvent", "OSession", "Oracle", "make_buckets", "parse_ts"]


def _money_ratio(cents: int, denominator: int) -> float | None:
    """Money per something, to the cent."""
    return None if denominator == 0 else round(cents / denominator) / 100
