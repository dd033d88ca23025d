"""Realistic demo traffic: RACE journeys as Segment messages, and a loader through the real write path.

Journeys: land from a channel, browse, view and add products, sign up or subscribe, buy (sometimes as
a guest before signing up), come back and buy again, review, answer an NPS survey; plus bots,
offline (in-store) orders, sessions with and without context.sessionId.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

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
CHUNK_PERSONS = 2000  # visitors per COPY transaction when loading
EVENTS_PER_PERSON = 9  # about what generate_messages makes per person
PRODUCTS = ["sneaker", "boot", "sandal", "loafer", "slipper"]


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

    def _msg(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.counter += 1
        self.at += timedelta(seconds=self.rng.randint(5, 400))
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


def generate_messages(persons: int, days: int, start: datetime, seed: int = 7) -> list[dict[str, Any]]:
    return [m for journey in generate_journeys(persons, days, start, seed) for m in journey]


def generate_journeys(persons: int, days: int, start: datetime, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """One visitor's messages at a time (so millions of events never sit in memory at once)."""
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


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def load_demo(
    url: str, persons: int = 300, days: int = 30, seed: int = 7, now: datetime | None = None
) -> dict[str, Any]:
    """Create a demo site and load generated journeys through the write path: appended to the inbox
    (COPY) as ingestion does, then derived by the same deriver as live traffic."""
    from app.domain.normalize import IncomingEvent, Receipt, normalize
    from app.pipeline import derive, ingest
    from app.store import events, sites
    from app.store.database import create_pool

    now = now or datetime.now(UTC).replace(microsecond=0)
    pool = await create_pool(url, 1, 2)
    loaded = 0
    try:
        async with pool.acquire() as conn:
            site, keys = await sites.create_site(conn, "demo", "UTC", ["shop.example.com"])
        receipt = Receipt(received_at=now, site_domains=site.domains)
        journeys = generate_journeys(persons, days, now - timedelta(days=days), seed)
        while chunk := list(islice(journeys, CHUNK_PERSONS)):
            incoming = [
                e for m in (m for ms in chunk for m in ms) if isinstance(e := normalize(m, receipt), IncomingEvent)
            ]
            async with pool.acquire() as conn, conn.transaction():
                fresh = await ingest.append(conn, site.site_id, incoming)
                await events.count_ingest(conn, site.site_id, 0, now, len(fresh), len(incoming) - len(fresh), 0)
            loaded += len(fresh)
        await derive.drain(pool)
    finally:
        await pool.close()
    return {"site": site.site_id, "events": loaded, "write_key": keys.write_key, "read_key": keys.read_key,
            "admin_key": keys.admin_key}  # fmt: skip
