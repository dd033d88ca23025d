"""Plain factory functions for domain objects: sensible defaults, every field overridable.

No database and no event loop: these build the pure inputs of app/domain.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain.model import Event, PersonHistory
from app.domain.normalize import Receipt
from app.domain.rules import CompiledRuleset, compile_ruleset

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RECEIVED_AT = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)

_ids = itertools.count(1)


def make_event(**overrides: Any) -> Event:
    """A page view at T0 with a unique event_id and message_id, unless overridden.

    `at` is a shortcut: a timedelta (offset from T0) or a datetime for event_at.
    """
    n = next(_ids)
    at = overrides.pop("at", None)
    if isinstance(at, timedelta):
        overrides["event_at"] = T0 + at
    elif isinstance(at, datetime):
        overrides["event_at"] = at
    fields: dict[str, Any] = {
        "message_id": f"m-{n:06d}",
        "type": "page",
        "event_at": T0,
        "event_id": n,
    }
    fields.update(overrides)
    return Event(**fields)


def make_track(event_name: str, **overrides: Any) -> Event:
    return make_event(type="track", event_name=event_name, **overrides)


def make_page(**overrides: Any) -> Event:
    return make_event(type="page", **overrides)


def make_purchase(revenue: float | None = None, **overrides: Any) -> Event:
    properties = dict(overrides.pop("properties", {}))
    if revenue is not None:
        properties["revenue"] = revenue
    return make_track("Order Completed", properties=properties, **overrides)


def make_history(**overrides: Any) -> PersonHistory:
    return PersonHistory(**overrides)


def make_rule(goal: str = "goal", stage: str = "act", when: Any = None, **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"goal": goal, "stage": stage}
    if when is not None:
        rule["when"] = when
    rule.update(extra)
    return rule


def make_ruleset(*rules: dict[str, Any], version: int = 1) -> CompiledRuleset:
    return compile_ruleset({"rules": list(rules) or [make_rule()]}, version=version)


def make_raw(**overrides: Any) -> dict[str, Any]:
    """A valid Segment track message (wire format); None values remove a key."""
    raw: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon-1",
        "messageId": "msg-1",
        "timestamp": "2024-05-01T12:00:00Z",
        "properties": {"revenue": 42.5, "order_id": "o-1"},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def make_receipt(**overrides: Any) -> Receipt:
    fields: dict[str, Any] = {"received_at": RECEIVED_AT}
    fields.update(overrides)
    return Receipt(**fields)
