"""A raw Segment-spec message -> IncomingEvent (validated, clock-corrected, channel, bot, device),
or a Rejection naming the field. Pure: the receive time and site facts are passed in.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC as _UTC
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from app.domain.channels import channel_of
from app.domain.model import MAX_VALUE, Event
from app.domain.useragent import device_of, is_bot

MESSAGE_TYPES = frozenset({"track", "page", "screen", "identify", "alias", "group"})
CAMPAIGN_KEYS = ("source", "medium", "name", "term", "content")
MAX_ID_LENGTH = 512
# An order's value (the default value paths): finite, not negative, at most a trillion. Refunds are not
# negative orders: send them as their own event (e.g. "Order Refunded") with a positive amount.
VALUE_KEYS = ("revenue", "total", "value")


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    message: str
    field: str | None = None
    message_id: str | None = None


@dataclass(slots=True, kw_only=True)
class IncomingEvent(Event):
    """An Event as it arrives (not stored yet: event_id 0, not classified), with what only the inbox
    keeps: its receipt time, the person's ids, sentAt, traits and context."""

    received_at: datetime
    anonymous_id: str | None
    user_id: str | None
    sent_at: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def order_id(self) -> str | None:
        order_id = self.properties.get("order_id") if self.type == "track" else None
        return str(order_id) if order_id not in (None, "") else None


class _Invalid(Exception):
    def __init__(self, code: str, message: str, fld: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, message, fld)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the server knows when a request arrives."""

    received_at: datetime
    site_domains: tuple[str, ...] = ()
    batch_sent_at: Any = None
    batch_context: Mapping[str, Any] | None = None
    max_future: timedelta = timedelta(hours=24)


def normalize(raw: Any, receipt: Receipt) -> IncomingEvent | Rejection:
    message_id = raw.get("messageId") if isinstance(raw, dict) else None
    try:
        event = _normalize(raw, receipt)
    except _Invalid as exc:
        r = exc.rejection
        return Rejection(r.code, r.message, r.field, message_id if isinstance(message_id, str) else None)
    return event


def _normalize(raw: Any, receipt: Receipt) -> IncomingEvent:
    if not isinstance(raw, dict):
        raise _Invalid("invalid_message", "a message must be a JSON object", "message")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise _Invalid("invalid_type", f"type must be one of {sorted(MESSAGE_TYPES)}", "type")
    user_id = _identifier(raw, "userId")
    anonymous_id = _identifier(raw, "previousId" if kind == "alias" else "anonymousId")
    if kind == "alias":
        anonymous_id = anonymous_id or _identifier(raw, "anonymousId")
        if not (user_id and anonymous_id):
            raise _Invalid("missing_identity", "alias needs userId and previousId", "previousId")
    if not (user_id or anonymous_id):
        raise _Invalid("missing_identity", "anonymousId or userId is required", "anonymousId")
    event_name = raw.get("event")
    if kind == "track" and (not isinstance(event_name, str) or not event_name.strip()):
        raise _Invalid("missing_event", "track messages need a non-empty event name", "event")
    properties = _object(raw, "properties")
    _check_values(properties)
    traits = _object(raw, "traits")
    context = dict(receipt.batch_context or {}) | _object(raw, "context")
    if isinstance(context.get("traits"), Mapping) and not traits:
        traits = dict(context["traits"])  # RudderStack puts identify traits in context.traits
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    event_at, sent_at = _event_time(raw, receipt)
    page: dict[str, Any] = context["page"] if isinstance(context.get("page"), dict) else {}
    url = _text(page.get("url")) or _text(properties.get("url"))
    path = _text(page.get("path")) or _text(properties.get("path")) or _path_of(url)
    referrer = _text(page.get("referrer")) or _text(properties.get("referrer"))
    campaign_raw: dict[str, Any] = context["campaign"] if isinstance(context.get("campaign"), dict) else {}
    campaign = {k: str(campaign_raw[k]) for k in CAMPAIGN_KEYS if campaign_raw.get(k) not in (None, "")}
    user_agent = _text(context.get("userAgent"))
    context.pop("ip", None)  # privacy: the raw IP is never stored (DESIGN §2)
    return IncomingEvent(
        message_id=_message_id(raw),
        type=kind,
        event_at=event_at,
        received_at=receipt.received_at,
        anonymous_id=anonymous_id,
        user_id=user_id,
        event_name=event_name.strip() if isinstance(event_name, str) else None,
        name=name,
        sent_at=sent_at,
        properties=properties,
        traits=traits,
        context=context,
        path=path,
        url=url,
        referrer=referrer,
        campaign=campaign,
        channel=channel_of(
            context_channel=_text(context.get("channel")),
            medium=campaign.get("medium"),
            referrer=referrer,
            page_url=url,
            site_domains=receipt.site_domains,
        ),
        device=device_of(user_agent),
        session_hint=_session_id(context.get("sessionId")),
        is_bot=is_bot(user_agent),
    )


def _identifier(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid("invalid_identity", f"{key} must be a string", key)
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise _Invalid("invalid_identity", f"{key} is longer than {MAX_ID_LENGTH} characters", key)
    return text


def _check_values(properties: Mapping[str, Any]) -> None:
    for key in VALUE_KEYS:
        value = properties.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            number = float(value)
        except (ValueError, OverflowError):
            continue  # not a number: no value, as before
        if not (0 <= number <= MAX_VALUE):  # also NaN and infinities
            raise _Invalid(
                "invalid_value", f"properties.{key} must be between 0 and {MAX_VALUE:g}: {value!r}", f"properties.{key}"
            )


def _object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", f"{key} must be an object", key)
    return dict(value)


def _path_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).path or None
    except ValueError:
        return None


def _session_id(value: Any) -> str | None:
    # RudderStack's SDKs send the session id as a number (epoch milliseconds)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_time(value: Any, fld: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, tz=_UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("invalid_timestamp", f"{fld} is not a usable epoch time: {value!r}", fld) from None
    if not isinstance(value, str):
        raise _Invalid("invalid_timestamp", f"{fld} must be an ISO 8601 string", fld)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid("invalid_timestamp", f"{fld} is not an ISO 8601 timestamp: {value!r}", fld) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)


def _event_time(raw: Mapping[str, Any], receipt: Receipt) -> tuple[datetime, datetime | None]:
    """receivedAt - (sentAt - timestamp) when the client sent sentAt (DESIGN §2 clock skew)."""
    timestamp = parse_time(raw.get("timestamp") or raw.get("originalTimestamp"), "timestamp")
    sent_at = parse_time(raw.get("sentAt"), "sentAt") or parse_time(receipt.batch_sent_at, "sentAt")
    try:
        if timestamp is None:
            event_at = receipt.received_at
        elif sent_at is not None:
            event_at = receipt.received_at - (sent_at - timestamp)
        else:
            event_at = timestamp
    except OverflowError:
        raise _Invalid("invalid_timestamp", "sentAt and timestamp are implausibly far apart", "sentAt") from None
    if event_at - receipt.received_at > receipt.max_future:
        raise _Invalid("future_timestamp", "timestamp is more than 24 hours in the future", "timestamp")
    if event_at.year < 2000:
        raise _Invalid("invalid_timestamp", "timestamp is before the year 2000", "timestamp")
    return event_at, sent_at


def _message_id(raw: Mapping[str, Any]) -> str:
    given = raw.get("messageId")
    if isinstance(given, str | int) and not isinstance(given, bool) and str(given):
        text = str(given)
        if len(text) > MAX_ID_LENGTH:
            raise _Invalid("invalid_message_id", f"messageId is longer than {MAX_ID_LENGTH}", "messageId")
        return text
    if given is not None:
        raise _Invalid("invalid_message_id", "messageId must be a string", "messageId")
    if raw.get("timestamp"):
        # A retried message without an id still dedupes: its content (minus sentAt) is its id.
        content = {k: v for k, v in raw.items() if k not in ("sentAt", "writeKey")}
        digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return f"rt-{digest[:32]}"
    return f"rt-{uuid.uuid4().hex}"
