"""Demo traffic: RACE journeys as Segment messages, and a loader through the real write path.

Two mixes. `Profile.REALISTIC` (what `racetrack demo` loads) aims for figures a marketer recognises
on a small online shop, each over the demo's whole period (bots excluded):
- conversion rate (persons with an order / visitors): about 2 %, within 1-4 %;
- cart abandonment (visits with an add-to-cart that end without an order / visits with an
  add-to-cart): about 68 %, within 60-80 %;
- bounce rate (sessions of a single page view / sessions): about 49 %, within 40-60 %;
- channel mix (sessions): Organic Search ~32 %, Direct ~26 %, Paid Search ~13 %, Email ~10 %,
  Organic Social ~7 %, Paid Social ~4 %, Referral ~4 %, Display ~2 %, Affiliates ~2 %, a little
  Offline (in-store orders); no channel above 45 %;
- NPS answers shaped like real ones (about 45 % promoters 9-10, 30 % passives, 25 % detractors
  0-6, after a purchase and on customers' later visits): NPS around +10 to +20, within -10..+50;
- repeat buyers: 5-40 % of the period's customers order again in it (about 14 %: customers come
  back more often and buy more readily than first-time visitors); average order about 67 EUR;
- sessions of about 2.3 pages and 2 minutes on average (within 1.5-4 pages, 60-240 s), devices
  48 % mobile, 45 % desktop, 7 % tablet, visits following the hours of a European day; 3 % crawlers;
- events received when they happened (a second later), so /v1/quality counts none late;
- Plan targets for every month the demo covers (see `demo_targets`), so /v1/report and month
  buckets of /v1/kpis show attainment and status.
The "about" figures were measured on `load_demo(persons=4000, days=30, seed=7)`;
`tests/integration/test_demo_traffic.py` checks the ranges there through the KPI API.

`Profile.DENSE` is the tests' mix: every journey does a lot (a third of visitors buy, guest
checkouts, reviews, NPS, offline orders) so that a few hundred visitors exercise every KPI and edge
case; its rates are not realistic.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
import traceback
from array import array
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import islice
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from app.domain.normalize import Receipt

if TYPE_CHECKING:
    import asyncpg

UAS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1",
}
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
LANDINGS: list[tuple[dict[str, str], str | None]] = [
    ({}, None),
    ({}, "https://www.google.com/search?q=shoes"),
    ({}, "https://duckduckgo.com/"),
    ({}, "https://www.facebook.com/"),
    ({}, "https://t.co/abc"),
    ({}, "https://blog.example.org/best-shoes"),
    ({"source": "google", "medium": "cpc", "name": "spring_sale"}, "https://www.google.com/"),
    ({"source": "newsletter", "medium": "email", "name": "weekly"}, None),
    ({"source": "partner", "medium": "affiliate", "name": "partner_q1"}, "https://deals.example.net/"),
    ({"source": "adnet", "medium": "display", "name": "retarget"}, None),
    ({"source": "instagram", "medium": "paid_social", "name": "reels"}, "https://instagram.com/"),
]
HOST = "https://shop.example.com"
DERIVE_BATCH = 50_000  # the demo's backlog is all its days at once: large batches share rollup rows
CHUNK_PERSONS = 2000  # visitors per COPY transaction when loading
EVENTS_PER_PERSON = 4.5  # about what the realistic mix makes per person (the dense one: 9)
PRODUCTS = ["sneaker", "boot", "sandal", "loafer", "slipper"]


class Profile(StrEnum):
    REALISTIC = "realistic"  # racetrack demo: rates a marketer recognises (module docstring)
    DENSE = "dense"  # the tests: every KPI exercised by a few hundred visitors


# (campaign, referrer, weight): where a realistic first visit lands from (sessions, by channel)
REAL_LANDINGS: list[tuple[dict[str, str], str | None, float]] = [
    ({}, "https://www.google.com/", 27),  # Organic Search
    ({}, "https://www.bing.com/", 2),
    ({}, "https://duckduckgo.com/", 2),
    ({}, None, 22),  # Direct
    ({"source": "google", "medium": "cpc", "name": "brand"}, "https://www.google.com/", 9),  # Paid Search
    ({"source": "google", "medium": "cpc", "name": "generic"}, "https://www.google.com/", 5),
    ({}, "https://www.facebook.com/", 4),  # Organic Social
    ({}, "https://www.instagram.com/", 3),
    ({"source": "instagram", "medium": "paid_social", "name": "reels"}, "https://www.instagram.com/", 5),
    ({"source": "newsletter", "medium": "email", "name": "weekly"}, None, 6),  # Email
    ({}, "https://blog.example.org/best-shoes", 5),  # Referral
    ({"source": "adnet", "medium": "display", "name": "retarget"}, None, 3),  # Display
    ({"source": "partner", "medium": "affiliate", "name": "partner_q1"}, "https://deals.example.net/", 2),
]
# returning visitors come back directly, from the newsletter, or searching the brand
RETURN_LANDINGS: list[tuple[dict[str, str], str | None, float]] = [
    ({}, None, 35),
    ({"source": "newsletter", "medium": "email", "name": "weekly"}, None, 22),
    ({}, "https://www.google.com/", 28),
    ({"source": "google", "medium": "cpc", "name": "brand"}, "https://www.google.com/", 10),
    ({}, "https://www.facebook.com/", 5),
]
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 7, 7, 6, 6, 6, 7, 8, 9, 9, 7, 4, 2]  # UTC hours 0-23
NPS_WEIGHTS = [2, 1, 2, 3, 3, 6, 8, 12, 18, 22, 23]  # scores 0..10: 45 % promoters, 25 % detractors
DEVICE_WEIGHTS = {"mobile": 48, "desktop": 45, "tablet": 7}
CATEGORIES = ["/c/men", "/c/women", "/c/sale", "/c/new"]


class _Journey:
    def __init__(self, rng: random.Random, index: int, at: datetime, site_host: str) -> None:
        self.rng = rng
        self.anon = f"anon-{index}"
        self.user: str | None = None
        self.at = at
        self.host = site_host
        self.device = rng.choice(["desktop", "desktop", "mobile", "mobile", "tablet"])
        self.messages: list[dict[str, Any]] = []
        self.counter = 0
        self.session: str | None = None
        self.campaign: dict[str, str] = {}
        self.referrer: str | None = None

    def _msg(self, kind: str, gap: float | None = None, **fields: Any) -> dict[str, Any]:
        self.counter += 1
        self.at += timedelta(seconds=self.rng.randint(5, 400) if gap is None else gap)
        context: dict[str, Any] = {"userAgent": UAS[self.device], "ip": "203.0.113.9"}
        if self.campaign:
            context["campaign"] = dict(self.campaign)
        if self.session:
            context["sessionId"] = self.session
        if fields.pop("offline", False):
            context = {"channel": "offline"}
        page = fields.pop("page", None)
        if page:
            context["page"] = {"url": f"{self.host}{page}", "path": page, "referrer": self.referrer}
            self.referrer = f"{self.host}{page}"
        msg: dict[str, Any] = {
            "type": kind,
            "messageId": f"{self.anon}-{self.counter}",
            "anonymousId": self.anon,
            "timestamp": self.at.isoformat().replace("+00:00", "Z"),
            "context": context,
            **fields,
        }
        if self.user:
            msg["userId"] = self.user
        self.messages.append(msg)
        return msg

    def visit(self, gap: timedelta) -> None:
        self.at += gap
        self.campaign, self.referrer = self.rng.choice(LANDINGS)
        self.campaign = dict(self.campaign)
        self.session = f"s-{self.anon}-{self.counter}" if self.rng.random() < 0.5 else None
        self._msg("page", name="Home", page="/")

    def browse(self) -> None:
        for _ in range(self.rng.randint(0, 3)):
            product = self.rng.choice(PRODUCTS)
            self._msg("page", name="Product", page=f"/p/{product}")
            self._msg(
                "track", event=self.rng.choice(["Product Viewed", "product_view"]), properties={"product_id": product}
            )

    def buy(self, order_no: int, offline: bool = False) -> None:
        product = self.rng.choice(PRODUCTS)
        if not offline:
            self._msg("track", event="Product Added", properties={"product_id": product})
        revenue = round(self.rng.uniform(15, 240), 2)
        self._msg(
            "track",
            event=self.rng.choice(["Order Completed", "purchase"]),
            offline=offline,
            properties={"order_id": f"{self.anon}-o{order_no}", "revenue": revenue, "currency": "EUR"},
        )

    def sign_up(self, index: int) -> None:
        self.user = f"user-{index}"
        self._msg("identify", traits={"email": f"user{index}@example.com"})
        self._msg("track", event=self.rng.choice(["Signed Up", "signup"]))


def generate_messages(
    persons: int, days: int, start: datetime, seed: int = 7, profile: Profile = Profile.DENSE
) -> list[dict[str, Any]]:
    return [m for journey in generate_journeys(persons, days, start, seed, profile) for m in journey]


def generate_journeys(
    persons: int, days: int, start: datetime, seed: int = 7, profile: Profile = Profile.DENSE
) -> Iterator[list[dict[str, Any]]]:
    """One visitor's messages at a time (so millions of events never sit in memory at once)."""
    return (messages for _, messages in timed_journeys(persons, days, start, seed, profile))


def timed_journeys(
    persons: int, days: int, start: datetime, seed: int = 7, profile: Profile = Profile.DENSE
) -> Iterator[tuple[datetime | None, list[dict[str, Any]]]]:
    """(since, messages) per visitor: no message of a later visitor happens before `since` (the
    realistic mix comes in order of first visits; the dense one in no order: None)."""
    if profile is Profile.REALISTIC:
        yield from _realistic_journeys(persons, days, start, seed)
        return
    for journey in _dense_journeys(persons, days, start, seed):
        yield None, journey


def _dense_journeys(persons: int, days: int, start: datetime, seed: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    span = max(days, 1) * 86400
    for index in range(persons):
        journey = _Journey(rng, index, start + timedelta(seconds=rng.randint(0, span - 1)), HOST)
        if rng.random() < 0.05:  # a crawler: stored, flagged, excluded from every KPI
            journey.device = "desktop"
            journey.visit(timedelta(0))
            for msg in journey.messages:
                msg["context"]["userAgent"] = BOT_UA
            yield journey.messages
            continue
        _walk(journey, rng, index)
        yield [m for m in journey.messages if _parse(m["timestamp"]) < start + timedelta(days=days)]


def _walk(journey: _Journey, rng: random.Random, index: int) -> None:
    journey.visit(timedelta(0))
    journey.browse()
    orders = 0
    if rng.random() < 0.15:  # guest checkout, linked when they sign up later
        orders += 1
        journey.buy(orders)
    if rng.random() < 0.35:
        journey.sign_up(index)
    elif rng.random() < 0.1:
        journey._msg("track", event="Newsletter Subscribed", properties={"list": "weekly"})
    if rng.random() < 0.3:
        orders += 1
        journey.buy(orders)
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        journey.visit(timedelta(hours=rng.uniform(0.6, 24 * 12)))
        journey.browse()
        if rng.random() < 0.45:
            orders += 1
            journey.buy(orders, offline=rng.random() < 0.1)
        if orders and rng.random() < 0.3:
            journey._msg("track", event=rng.choice(["Product Reviewed", "review"]), properties={"rating": 4})
        if rng.random() < 0.15:
            journey._msg("track", event="Survey Answered", properties={"score": rng.randint(0, 10)})
        if rng.random() < 0.1:
            journey._msg("track", event="Product Shared", properties={"product_id": "boot"})


def _realistic_journeys(
    persons: int, days: int, start: datetime, seed: int
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    end = start + timedelta(days=max(days, 1))
    devices, device_weights = list(DEVICE_WEIGHTS), list(DEVICE_WEIGHTS.values())
    for index, stamp in enumerate(_first_visits(rng, persons, start, end)):
        first = datetime.fromtimestamp(stamp, UTC)
        journey = _Journey(rng, index, first, HOST)
        journey.device = rng.choices(devices, device_weights)[0]
        if rng.random() < 0.03:  # a crawler: a burst of pages, stored, flagged, excluded from every KPI
            journey.device = "desktop"
            journey.visit(timedelta(0))
            for _ in range(rng.randint(0, 3)):
                journey._msg("page", gap=rng.uniform(1, 5), name="Product", page=f"/p/{rng.choice(PRODUCTS)}")
            for msg in journey.messages:
                msg["context"]["userAgent"] = BOT_UA
            yield first, journey.messages
            continue
        _realistic_walk(journey, rng, index)
        yield first, [m for m in journey.messages if _parse(m["timestamp"]) < end]


def _first_visits(rng: random.Random, persons: int, start: datetime, end: datetime) -> list[float]:
    """Each visitor's first visit (POSIX seconds) in time order, so that visitors arrive as they
    would live: a day of the period, an hour of a European day, a second of that hour (drawn again
    when outside [start, end))."""
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    low, high = start.timestamp(), end.timestamp()
    days = int((high - midnight) // 86400) + 1
    firsts = array("d")
    while len(firsts) < persons:
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        stamp = midnight + rng.randrange(days) * 86400 + hour * 3600 + rng.randrange(3600)
        if low <= stamp < high:
            firsts.append(stamp)
    return sorted(firsts)


def _land(journey: _Journey, rng: random.Random, returning: bool) -> None:
    landings = RETURN_LANDINGS if returning else REAL_LANDINGS
    campaign, referrer, _ = rng.choices(landings, [w for _, _, w in landings])[0]
    journey.campaign, journey.referrer = dict(campaign), referrer
    journey.session = f"s-{journey.anon}-{journey.counter}" if rng.random() < 0.5 else None
    page = rng.choice(["/", "/", *CATEGORIES, f"/p/{rng.choice(PRODUCTS)}"])
    journey._msg("page", gap=0, name="Landing", page=page)


def _realistic_visit(journey: _Journey, rng: random.Random, customer: bool, orders: int) -> int:
    """One visit: a bounce, or a few pages, maybe a cart, maybe an order. Returns the orders made."""
    if rng.random() < (0.35 if customer else 0.5):
        return 0  # bounced: the landing page alone
    for _ in range(rng.choices(range(1, 7), [30, 25, 18, 12, 8, 7])[0]):
        product = rng.choice(PRODUCTS)
        if rng.random() < 0.7:
            journey._msg("page", gap=rng.uniform(20, 150), name="Product", page=f"/p/{product}")
            journey._msg("track", gap=rng.uniform(2, 8), event="Product Viewed", properties={"product_id": product})
        else:
            journey._msg("page", gap=rng.uniform(20, 150), name="Category", page=rng.choice(CATEGORIES))
    if not journey.user and rng.random() < 0.04:
        _sign_up(journey, rng, f"user-{journey.anon}")
    elif rng.random() < 0.03:
        journey._msg("track", gap=rng.uniform(5, 30), event="Newsletter Subscribed", properties={"list": "weekly"})
    made = 0
    if rng.random() < (0.30 if customer else 0.11):
        product = rng.choice(PRODUCTS)
        journey._msg("track", gap=rng.uniform(10, 60), event="Product Added", properties={"product_id": product})
        if rng.random() < (0.5 if customer else 0.30):  # else: the cart is abandoned
            if not journey.user and rng.random() < 0.5:  # an account at checkout, else a guest order
                _sign_up(journey, rng, f"user-{journey.anon}")
            made = 1
            _order(journey, rng, orders + made, gap=rng.uniform(60, 240))
            if rng.random() < 0.5:  # the post-purchase survey
                _nps(journey, rng)
    if customer and rng.random() < 0.15:  # the survey again, on a later visit
        _nps(journey, rng)
    if customer and rng.random() < 0.08:
        journey._msg("track", gap=rng.uniform(20, 90), event="Product Reviewed", properties={"rating": 5})
    return made


def _realistic_walk(journey: _Journey, rng: random.Random, index: int) -> None:
    orders, returning = 0, False
    for _ in range(8):
        _land(journey, rng, returning)
        orders += _realistic_visit(journey, rng, orders > 0, orders)
        if rng.random() >= (0.6 if orders else 0.3):
            return
        journey.at += timedelta(hours=rng.uniform(2, 24 * 10))
        if orders and rng.random() < 0.07:  # an in-store order between two visits
            orders += 1
            _order(journey, rng, orders, gap=0, offline=True)
            journey.at += timedelta(hours=rng.uniform(1, 48))
        returning = True


def _nps(journey: _Journey, rng: random.Random) -> None:
    score = rng.choices(range(11), NPS_WEIGHTS)[0]
    journey._msg("track", gap=rng.uniform(20, 90), event="Survey Answered", properties={"score": score})


def _sign_up(journey: _Journey, rng: random.Random, user: str) -> None:
    journey.user = user
    journey._msg("identify", gap=rng.uniform(10, 40), traits={"email": f"{user}@example.com"})
    journey._msg("track", gap=rng.uniform(1, 3), event="Signed Up")


def _order(journey: _Journey, rng: random.Random, order_no: int, gap: float, offline: bool = False) -> None:
    revenue = round(min(600.0, max(8.0, rng.lognormvariate(4.1, 0.5))), 2)
    properties = {"order_id": f"{journey.anon}-o{order_no}", "revenue": revenue, "currency": "EUR"}
    journey._msg("track", gap=gap, event="Order Completed", offline=offline, properties=properties)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass(slots=True)
class _MonthTally:
    persons: set[str] = field(default_factory=set)
    orders: int = 0
    revenue: float = 0.0


# Plan targets the demo sets: (kpi, factor on the month's actual for counts, or a fixed value for rates)
TARGET_FACTORS = {"visitors": 0.95, "orders": 1.15, "revenue": 1.05}
TARGET_VALUES = {"conversion_rate": 0.02, "bounce_rate": 0.45, "nps": 30.0}


def demo_targets(tallies: dict[date, _MonthTally], now: datetime, days: int) -> list[tuple[str, date, float]]:
    """A plan for every month the demo covers. A month before now's: its actual count times a factor
    (visitors planned a little below what came, so met; orders and revenue above, so missed), and
    fixed rates (conversion 2 %, bounce rate at most 45 %, NPS 30). Now's month (running): the
    counts' daily rate over the whole demo times the month's days, times the same factors."""
    running = now.date().replace(day=1)
    rows: list[tuple[str, date, float]] = []
    everyone = set().union(*(t.persons for t in tallies.values())) if tallies else set()
    per_day = {
        "visitors": len(everyone) / max(days, 1),
        "orders": sum(t.orders for t in tallies.values()) / max(days, 1),
        "revenue": sum(t.revenue for t in tallies.values()) / max(days, 1),
    }
    for month in sorted({*tallies, running}):
        tally = tallies.get(month, _MonthTally())
        actual = {"visitors": len(tally.persons), "orders": tally.orders, "revenue": tally.revenue}
        month_days = ((month.replace(day=28) + timedelta(days=4)).replace(day=1) - month).days
        for kpi, factor in TARGET_FACTORS.items():
            base = per_day[kpi] * month_days if month == running else actual[kpi]
            rows.append((kpi, month, round(base * factor, 2 if kpi == "revenue" else 0)))
        rows += [(kpi, month, value) for kpi, value in TARGET_VALUES.items()]
    return rows


async def load_demo(
    url: str,
    persons: int = 300,
    days: int = 30,
    seed: int = 7,
    now: datetime | None = None,
    profile: Profile = Profile.REALISTIC,
) -> dict[str, Any]:
    """Create a demo site and load generated journeys through the write path: their messageIds
    claimed and the events appended (COPY) as ingestion does, reaching the inbox in the order they
    were received, derived by the same deriver as live traffic. Each event is received a second
    after it happened (never after now); the site gets the Plan targets of `demo_targets`.

    Two processes, as live traffic and a deriver would be: a second one generates the journeys and
    stages their events (`_stage`); this one releases into the inbox, in order of receipt, what is
    complete (everything received before the latest visitor staged first came) and derives it
    meanwhile."""
    from app.store import inbox, sites
    from app.store.database import create_pool

    now = now or datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    pool = await create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn:
            site, keys = await sites.create_site(conn, "demo", "UTC", ["shop.example.com"])
            await inbox.create_staging(conn)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited pool or loop
        receiver, sender = context.Pipe(duplex=False)
        job = _StageJob(url, site.site_id, site.domains, persons, days, seed, now, profile)
        stager = context.Process(target=_stage_process, args=(job, sender), name="racetrack-demo-stage", daemon=True)
        stager.start()
        sender.close()
        try:
            loaded, seconds = await _release_and_derive(pool, receiver, site.site_id)
        finally:
            stager.join(5)
            if stager.is_alive():
                stager.terminate()
    finally:
        await pool.close()
    seconds["total"] = time.perf_counter() - started
    return {"site": site.site_id, "events": loaded, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "write_key": keys.write_key, "read_key": keys.read_key, "admin_key": keys.admin_key}  # fmt: skip


async def _release_and_derive(pool: asyncpg.Pool, staged: Connection, site_id: int) -> tuple[int, dict[str, float]]:
    """Release and derive, a batch at a time, until the stager is done; then the rest. (events
    loaded, the phases' seconds: the stager's generate and stage, this process's release and
    derive, and `staged`, when the stager was done.)"""
    from app.pipeline import derive
    from app.pipeline.rulesets import RulesetCache

    rulesets = RulesetCache()
    seconds: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    since: datetime | None = None  # everything received before this is staged
    released: datetime | None = None
    while (done := _news(staged)) is None or isinstance(done, datetime):
        since = done or since
        if since is not None and since != released:
            seconds["release"] += await _release(pool, since)
            released = since
        clock = time.perf_counter()
        derived = await derive.derive_site(pool, rulesets, site_id, DERIVE_BATCH)
        seconds["derive"] += time.perf_counter() - clock
        if not derived:
            await asyncio.to_thread(staged.poll, 1.0)
    seconds["staged"] = time.perf_counter() - started
    seconds["release"] += await _release(pool, None)
    clock = time.perf_counter()
    await derive.drain(pool, rulesets, batch=DERIVE_BATCH)
    seconds["derive"] += time.perf_counter() - clock
    loaded, staging = done
    return loaded, {**staging, **seconds}


def _news(staged: Connection) -> datetime | tuple[int, dict[str, float]] | None:
    """What the stager sent since the last look: the latest `since`, or what it sent when done."""
    news: datetime | tuple[int, dict[str, float]] | None = None
    try:
        while staged.poll():
            kind, value = staged.recv()
            if kind == "failed":
                raise RuntimeError(f"the demo's staging process failed:\n{value}")
            news = value if kind == "done" else value or news
            if kind == "done":
                return news
    except EOFError:
        raise RuntimeError("the demo's staging process ended before it was done") from None
    return news


async def _release(pool: asyncpg.Pool, before: datetime | None) -> float:
    """The staged events received before `before` (all: None, and the staging table goes) into the
    inbox, its partitions made ahead first (a live deriver's chore); how many seconds it took."""
    from app.pipeline.partitions import rotate_partitions
    from app.store import inbox

    clock = time.perf_counter()
    async with pool.acquire() as conn:
        await rotate_partitions(conn)
        async with conn.transaction():
            await inbox.release_staging(conn, before)
        if before is None:
            await inbox.drop_staging(conn)
    return time.perf_counter() - clock


@dataclass(frozen=True, slots=True)
class _StageJob:
    url: str
    site_id: int
    domains: tuple[str, ...]
    persons: int
    days: int
    seed: int
    now: datetime
    profile: Profile


def _stage_process(job: _StageJob, progress: Connection) -> None:
    """The demo's second process: `_stage`, its progress and its end sent to the first."""
    try:
        done = asyncio.run(_stage(job, progress))
    except BaseException:
        progress.send(("failed", traceback.format_exc()))
        raise
    progress.send(("done", done))


async def _stage(job: _StageJob, progress: Connection) -> tuple[int, dict[str, float]]:
    """Generate the journeys and stage their events (messageIds claimed, COPY) a chunk of visitors
    per transaction, sending ("staged", since) after each; then the data-quality counters and the
    Plan targets. (events staged, seconds generating and staging)."""
    from app.domain.normalize import IncomingEvent, normalize
    from app.domain.person import person_id_of
    from app.pipeline import ingest
    from app.store import events, inbox, targets
    from app.store.database import create_pool

    seconds = {"generate": 0.0, "stage": 0.0}
    loaded = 0
    tallies: dict[date, _MonthTally] = {}
    received: dict[datetime, int] = defaultdict(int)  # accepted events by hour of receipt
    journeys = timed_journeys(job.persons, job.days, job.now - timedelta(days=job.days), job.seed, job.profile)
    pool = await create_pool(job.url, 1, 1)
    try:
        while True:
            clock = time.perf_counter()
            chunk = list(islice(journeys, CHUNK_PERSONS))
            if not chunk:
                break
            appended: list[IncomingEvent] = []
            for _, messages in chunk:
                receipts = [_receipt_of(m, job.now, job.domains) for m in messages]
                for receipt in receipts:
                    received[receipt.received_at.replace(minute=0, second=0)] += 1
                normalized = (normalize(m, r) for m, r in zip(messages, receipts, strict=True))
                incoming = [e for e in normalized if isinstance(e, IncomingEvent)]
                if incoming:
                    user = next((e.user_id for e in incoming if e.user_id), None)
                    _tally(tallies, person_id_of(user, incoming[0].anonymous_id, {}), messages)
                    appended += incoming
            seconds["generate"] += time.perf_counter() - clock
            clock = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                loaded += len(await ingest.append(conn, job.site_id, appended, inbox.STAGING))
            progress.send(("staged", chunk[-1][0]))
            seconds["stage"] += time.perf_counter() - clock
        async with pool.acquire() as conn, conn.transaction():
            await events.count_accepted(conn, job.site_id, 0, received)
            await targets.upsert_targets(conn, job.site_id, demo_targets(tallies, job.now, job.days))
    finally:
        await pool.close()
    return loaded, seconds


def _receipt_of(message: dict[str, Any], now: datetime, domains: tuple[str, ...]) -> Receipt:
    """Received a second after it happened, as a live tracker would send it (never after now)."""
    return Receipt(received_at=min(now, _parse(message["timestamp"]) + timedelta(seconds=1)), site_domains=domains)


def _tally(tallies: dict[date, _MonthTally], person: str, messages: list[dict[str, Any]]) -> None:
    """Per UTC month: non-bot persons seen, orders and revenue (for the demo's Plan targets)."""
    if messages and messages[0].get("context", {}).get("userAgent") == BOT_UA:
        return
    for m in messages:
        tally = tallies.setdefault(_parse(m["timestamp"]).date().replace(day=1), _MonthTally())
        tally.persons.add(person)
        if m.get("event") in ("Order Completed", "purchase"):
            tally.orders += 1
            tally.revenue += float(m["properties"]["revenue"])
