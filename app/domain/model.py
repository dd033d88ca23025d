"""Domain types shared by classification, sessions and KPIs. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MAX_VALUE = 1e12  # the largest value an order may carry: beyond any real order, sums stay finite in float8


class Stage(StrEnum):
    REACH = "reach"
    ACT = "act"
    CONVERT = "convert"
    ENGAGE = "engage"
    NONE = "none"


@dataclass(slots=True)
class Event:
    """A normalized message, as classification and sessionisation see it (an arriving one is an
    IncomingEvent, app/domain/normalize.py). Not frozen, though never changed: one is built per
    ingested and per derived event, and a frozen dataclass's __init__ costs about four times as much."""

    message_id: str
    type: str
    event_at: datetime
    event_name: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    url: str | None = None
    referrer: str | None = None
    campaign: dict[str, str] = field(default_factory=dict)
    channel: str = "Direct"
    device: str = "unknown"
    session_hint: str | None = None  # context.sessionId
    is_bot: bool = False
    event_id: int = 0
    ruleset_version: int | None = None  # None: not classified yet, use the current ruleset


@dataclass(slots=True)  # not frozen, never changed: see Event
class PersonHistory:
    """What a person did before the event being classified (by event time)."""

    orders_before: int = 0
    revenue_before: float = 0.0
    leads_before: int = 0
    first_seen_at: datetime | None = None


@dataclass(slots=True)  # not frozen, never changed: see Event
class Classification:
    stage: Stage
    goal: str | None
    value: float | None
    lead: bool
    order: bool
    ruleset_version: int
