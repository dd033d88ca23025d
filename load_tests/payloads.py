"""Segment messages for the load test, and what each one implies for the KPIs (no Locust, no I/O).

Browsers walk RACE journeys one message at a time (the beacon endpoints); server SDKs send
batches of backend events for their own customers. `fact_of(message)` says, client side, how the
service must count a message once it is acknowledged: its person, its kind (page, act, lead,
order, other), its value, its session, and whether it is a crawler's.

Identity is kept simple so the expected KPIs follow from the acknowledged messages alone: every
browser journey has one anonymousId (its person, signed up or not: any message carrying both ids
links them), and a server-SDK customer has a userId that no browser ever uses.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.demo import BOT_UA, UAS

HOST = "https://shop.example.com"
BROWSERS = UAS  # the same browsers as the demo data
CRAWLER = BOT_UA
# (campaign, referrer): Direct, Organic Search, Organic Social, Referral, Paid Search, Email, Affiliates,
# Display, Paid Social
LANDINGS: list[tuple[dict[str, str], str | None]] = [
    ({}, None),
    ({}, "https://www.google.com/search?q=running+shoes"),
    ({}, "https://duckduckgo.com/"),
    ({}, "https://www.facebook.com/"),
    ({}, "https://t.co/x1"),
    ({}, "https://blog.example.org/best-shoes-2026"),
    ({"source": "google", "medium": "cpc", "name": "spring_sale"}, "https://www.google.com/"),
    ({"source": "newsletter", "medium": "email", "name": "weekly"}, None),
    ({"source": "partner", "medium": "affiliate", "name": "partner_q1"}, "https://deals.example.net/"),
    ({"source": "adnet", "medium": "display", "name": "retarget"}, None),
    ({"source": "instagram", "medium": "paid_social", "name": "reels"}, "https://instagram.com/"),
]
RETURNS: list[tuple[dict[str, str], str | None]] = [
    ({}, None),
    ({"source": "newsletter", "medium": "email", "name": "winback"}, None),
    ({}, "https://www.google.com/search?q=shop+example"),
]
PRODUCTS = ["sneaker", "boot", "sandal", "loafer", "slipper", "trail-runner", "clog"]
ORDER_EVENTS = {"Order Completed", "purchase"}
LEAD_EVENTS = {"Signed Up", "signup", "Newsletter Subscribed", "newsletter_signup"}
ACT_EVENTS = {"Product Viewed", "product_view", "Product Added", "add_to_cart"}


@dataclass(frozen=True, slots=True)
class Fact:
    """How one acknowledged message must be counted (DESIGN §5), decided client side."""

    person: str
    kind: str  # page | act | lead | order | other
    cents: int  # order value in cents (0 unless kind == "order")
    session: str
    at: float  # event time, epoch seconds
    bot: bool

    def to_list(self) -> list[Any]:
        return [self.person, self.kind, self.cents, self.session, self.at, self.bot]

    @classmethod
    def from_list(cls, row: list[Any]) -> Fact:
        return cls(str(row[0]), str(row[1]), int(row[2]), str(row[3]), float(row[4]), bool(row[5]))


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _value(properties: dict[str, Any]) -> float:
    for path in ("revenue", "total", "value"):  # the default value path of the shipped rules
        if isinstance(properties.get(path), int | float):
            return float(properties[path])
    return 0.0


def fact_of(message: dict[str, Any]) -> Fact:
    context = message.get("context") or {}
    person = message.get("anonymousId") or message["userId"]
    kind = "other"
    cents = 0
    if message["type"] in ("page", "screen"):
        kind = "page"
    elif message["type"] == "track":
        event = message.get("event")
        if event in ORDER_EVENTS:
            kind, cents = "order", round(_value(message.get("properties") or {}) * 100)
        elif event in LEAD_EVENTS:
            kind = "lead"
        elif event in ACT_EVENTS:
            kind = "act"
    # A browser visit names its session; a server customer's events all fall within seconds of each
    # other (one batch), so the service cuts them into one session per person.
    session = context.get("sessionId") or f"person:{person}"
    return Fact(
        person, kind, cents, session, _parse(message["timestamp"]).timestamp(), context.get("userAgent") == CRAWLER
    )


def _price(rng: random.Random) -> float:
    return rng.randint(1500, 24000) / 100  # whole cents: the expected revenue is exact


class BrowserJourney:
    """One visitor in one browser: builds the messages its pages would beacon, in journey order."""

    def __init__(self, rng: random.Random, run_tag: str, crawler: bool = False) -> None:
        self.rng = rng
        self.run_tag = run_tag
        self.anonymous_id = f"lt-{run_tag}-{uuid.uuid4().hex[:12]}"
        self.user_id: str | None = None
        self.user_agent = CRAWLER if crawler else BROWSERS[rng.choice(["desktop", "desktop", "mobile", "tablet"])]
        self.session = ""
        self.campaign: dict[str, str] = {}
        self.referrer: str | None = None
        self.orders = 0
        self.cart: list[tuple[str, float]] = []

    def _message(self, kind: str, **fields: Any) -> dict[str, Any]:
        now = stamp(datetime.now(UTC))
        context: dict[str, Any] = {
            "userAgent": self.user_agent,
            "ip": "203.0.113.7",
            "sessionId": self.session,
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
        }
        if self.campaign:
            context["campaign"] = dict(self.campaign)
        path = fields.pop("path", None)
        if path is not None:
            context["page"] = {"url": f"{HOST}{path}", "path": path, "referrer": self.referrer, "title": fields["name"]}
            self.referrer = f"{HOST}{path}"
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"ajs-next-{uuid.uuid4().hex}",
            "anonymousId": self.anonymous_id,
            "timestamp": now,
            "sentAt": now,  # sendBeacon sends at once
            "context": context,
            **fields,
        }
        if self.user_id:
            message["userId"] = self.user_id
        return message

    def land(self, returning: bool = False) -> dict[str, Any]:
        """A new visit (session) from a channel: the landing page view."""
        campaign, self.referrer = self.rng.choice(RETURNS if returning else LANDINGS)
        self.campaign = dict(campaign)
        self.session = f"s-{uuid.uuid4().hex}"
        return self._message("page", name="Home", path="/")

    def crawl_page(self) -> dict[str, Any]:
        if not self.session:
            self.session = f"s-{uuid.uuid4().hex}"
        product = self.rng.choice(PRODUCTS)
        return self._message("page", name="Product", path=f"/p/{product}")

    def view_product(self) -> list[dict[str, Any]]:
        product = self.rng.choice(PRODUCTS)
        return [
            self._message("page", name="Product", path=f"/p/{product}"),
            self._message(
                "track",
                event=self.rng.choice(["Product Viewed", "product_view"]),
                properties={"product_id": product, "price": _price(self.rng)},
            ),
        ]

    def add_to_cart(self) -> dict[str, Any]:
        product, price = self.rng.choice(PRODUCTS), _price(self.rng)
        self.cart.append((product, price))
        return self._message(
            "track",
            event=self.rng.choice(["Product Added", "add_to_cart"]),
            properties={"product_id": product, "price": price, "quantity": 1},
        )

    def sign_up(self) -> list[dict[str, Any]]:
        self.user_id = f"lt-{self.run_tag}-u-{uuid.uuid4().hex[:12]}"
        return [
            self._message("identify", traits={"email": f"{self.user_id}@example.com", "plan": "free"}),
            self._message("track", event=self.rng.choice(["Signed Up", "signup"]), properties={"method": "email"}),
        ]

    def subscribe(self) -> dict[str, Any]:
        return self._message(
            "track",
            event=self.rng.choice(["Newsletter Subscribed", "newsletter_signup"]),
            properties={"list": "weekly"},
        )

    def checkout(self) -> list[dict[str, Any]]:
        messages = [] if self.cart else [self.add_to_cart()]
        messages.append(self._message("page", name="Checkout", path="/checkout"))
        self.orders += 1
        revenue = round(sum(price for _, price in self.cart), 2)
        messages.append(
            self._message(
                "track",
                event=self.rng.choice(["Order Completed", "Order Completed", "purchase"]),
                properties={
                    "order_id": f"{self.anonymous_id}-o{self.orders}",
                    "revenue": revenue,
                    "currency": "EUR",
                    "products": [{"product_id": p, "price": v} for p, v in self.cart],
                },
            )
        )
        self.cart = []
        return messages


def server_batch(rng: random.Random, run_tag: str, size: int) -> list[dict[str, Any]]:
    """A backend's batch of `size` messages for a few customers of its own (CRM, orders, in-store sales).

    Each customer's events are spaced a few seconds apart in event time, first identify, so
    "earlier order" is well defined (the second order of a customer in a batch is a repeat order).
    """
    messages: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    while len(messages) < size:
        user_id = f"lt-{run_tag}-c-{uuid.uuid4().hex[:12]}"
        planned: list[dict[str, Any]] = [
            {"type": "identify", "traits": {"email": f"{user_id}@example.com", "tier": rng.choice(["std", "vip"])}}
        ]
        for order_no in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
            offline = rng.random() < 0.2
            value_field = "total" if rng.random() < 0.2 else "revenue"
            properties = {"order_id": f"{user_id}-o{order_no}", value_field: _price(rng), "currency": "EUR"}
            planned.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "properties": properties,
                    **({"context": {"channel": "offline"}} if offline else {}),
                }
            )
        for _ in range(rng.randint(0, 3)):
            planned.append(
                {"type": "track", "event": rng.choice(["Subscription Renewed", "Invoice Paid", "Refund Requested"])}
            )
        for position, fields in enumerate(planned[: size - len(messages)]):
            at = now - timedelta(seconds=60 - 3 * position)
            message = {
                "messageId": str(uuid.uuid4()),
                "userId": user_id,
                "timestamp": stamp(at),
                **fields,
                "context": {"library": {"name": "analytics-python", "version": "2.3.2"}, **fields.get("context", {})},
            }
            messages.append(message)
    return messages
