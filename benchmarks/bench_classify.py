"""Micro-benchmark: classify() over the shipped default ruleset, per event, against a hand-written
if-chain of the same rules measured in the same run (the floor for any rule engine in Python).

    .venv/bin/python benchmarks/bench_classify.py
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from app.domain.classify import classify
from app.domain.model import Event, PersonHistory
from app.pipeline.rulesets import default_ruleset

ORDER = {"Order Completed", "purchase"}
NAMES = [
    "Order Completed",
    "purchase",
    "Signed Up",
    "Product Added",
    "Product Viewed",
    "Product Reviewed",
    "Survey Answered",
    "Something Else",
    "Newsletter Subscribed",
    "Content Liked",
]


def hand_written(event: Event, person: PersonHistory) -> str | None:
    name = event.event_name
    if event.type in ("page", "screen"):
        return "page_view"
    if event.type != "track":
        return None
    if name in ORDER:
        return "repeat_purchase" if person.orders_before >= 1 else "purchase"
    table = {
        "Signed Up": "signup",
        "signup": "signup",
        "Newsletter Subscribed": "newsletter",
        "Product Added": "add_to_cart",
        "Product Viewed": "product_view",
        "Product Reviewed": "review",
        "Content Liked": "social",
    }
    if name == "Survey Answered" and "score" in event.properties:
        return "nps"
    return table.get(name or "")


def sample(n: int) -> list[tuple[Event, PersonHistory]]:
    rng = random.Random(1)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        kind = "page" if rng.random() < 0.5 else "track"
        event = Event(
            message_id=str(i),
            type=kind,
            event_at=now,
            event_name=None if kind == "page" else rng.choice(NAMES),
            properties={"revenue": 12.5, "score": 9},
        )
        out.append((event, PersonHistory(orders_before=rng.randint(0, 2))))
    return out


def per_event_us(fn: object, events: list[tuple[Event, PersonHistory]], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for event, person in events:
            fn(event, person)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best / len(events) * 1e6


def main() -> None:
    events = sample(50_000)
    ruleset = default_ruleset()
    for event, person in events[:50]:  # same answers as the hand-written chain
        assert classify(event, person, ruleset).goal == hand_written(event, person), event
    engine = per_event_us(lambda e, p: classify(e, p, ruleset), events)
    baseline = per_event_us(hand_written, events)
    print(f"{'classifier':<32}{'µs/event':>10}{'events/s':>14}")
    print(f"{'hand-written if-chain (floor)':<32}{baseline:>10.2f}{1e6 / baseline:>14,.0f}")
    print(f"{'classify(), default ruleset':<32}{engine:>10.2f}{1e6 / engine:>14,.0f}")
    print(f"ratio engine / floor: {engine / baseline:.1f}x")


if __name__ == "__main__":
    main()
