"""PostHog capture requests -> Segment-spec messages (DESIGN §2). Pure: no I/O.

Bodies: `{"api_key", "batch": [events], "sent_at"}` (posthog-python, /batch/), a list of events or one
event (posthog-js, /e/ and /i/v0/e/). The site's write key is the PostHog project key: the event's
`api_key` or `token`, `properties.token`, or the body's `api_key`/`token`; each message carries it
as `writeKey`.

Events:
- `$pageview` -> page (name = properties.title), `$screen` -> screen (name = `$screen_name`),
  `$identify` -> identify, `$set` -> identify (traits = `$set`), `$create_alias` -> alias
  (previousId = distinct_id, userId = properties.alias), `$groupidentify` -> group; any other
  event -> track with the event name as is.
- Every event: `uuid` -> messageId, `timestamp` -> timestamp (or receive time minus `offset` ms),
  `sent_at` (event, body, or posthog-js's `?_=<ms>`) -> sentAt, `$session_id` -> context.sessionId,
  `$raw_user_agent`/`$useragent` -> context.userAgent, `$current_url`/`$pathname`/`$referrer`/`title`
  -> context.page (`$direct` is no referrer), utm_* properties or the URL's utm_* -> context.campaign,
  `$ip` (or the event's `ip`) -> context.ip, handled by normalize like Segment's (the raw IP is
  not stored) and dropped from properties. `$set`/`$set_once` -> traits (`$set` wins).

Identity (PostHog has one `distinct_id`; Segment has anonymousId and userId):
- `$identify`: userId = distinct_id, anonymousId = `$anon_distinct_id` (links the visitor's
  anonymous events to the user). It also yields an alias(previousId = distinct_id, userId =
  distinct_id): a distinct_id that was identified is a person's id, so the events that carry it as
  a plain distinct_id (server-side SDKs send the user's id without any marker) resolve to the same
  person. That alias's messageId is `<uuid>:identified`.
- `properties.$user_id` given: userId = `$user_id`, anonymousId = distinct_id.
- posthog-js's identified events (`$is_identified` true or `$user_state` "identified"): userId =
  distinct_id, anonymousId = `$device_id` when it differs (the device's anonymous id).
- otherwise: anonymousId = distinct_id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.errors import BadRequest
from app.wire.webpage import UTM_KEYS, campaign_of, page_context, text

SPECIAL_TYPES = {"$pageview": "page", "$screen": "screen", "$identify": "identify", "$set": "identify"}
CONSUMED = frozenset({"$ip", "token", "$set", "$set_once", "$anon_distinct_id", "distinct_id"})
TRUE = (True, "true", "True", 1)


def posthog_messages(
    body: Any, *, query: Mapping[str, str] | None = None, received_at: datetime | None = None
) -> list[dict[str, Any]]:
    """A decoded PostHog request body (and its query) -> Segment messages, each with its writeKey."""
    events, top = _events(body)
    sent_at = top.get("sent_at") or _epoch_ms((query or {}).get("_"))
    body_key = text(top.get("api_key")) or text(top.get("token"))
    messages: list[dict[str, Any]] = []
    for event in events:
        messages.extend(_messages(event, body_key, sent_at, received_at))
    return messages


def _events(body: Any) -> tuple[list[Any], Mapping[str, Any]]:
    if isinstance(body, list):
        return body, {}
    if isinstance(body, Mapping):
        batch = body.get("batch", body.get("data"))
        if isinstance(batch, list):
            return batch, body
        if isinstance(batch, Mapping):
            return [batch], body
        if "event" in body:
            return [body], body
    raise BadRequest(
        "body must be a PostHog batch {api_key, batch: [events]}, a list of events or one event",
        "invalid_batch",
        [{"field": "batch", "message": "must be an array of events"}],
    )


def _messages(event: Any, body_key: str | None, sent_at: Any, received_at: datetime | None) -> list[dict[str, Any]]:
    if not isinstance(event, Mapping):
        return [{"posthog": event}]  # normalize rejects it: a message must be an object (a list, a string)
    raw_props = event.get("properties")
    props: dict[str, Any] = dict(raw_props) if isinstance(raw_props, Mapping) else {}
    name = event.get("event")
    distinct_id = text(event.get("distinct_id")) or text(props.get("distinct_id"))
    timestamp, event_sent_at = event.get("timestamp"), event.get("sent_at") or sent_at
    if not timestamp and (at_offset := _offset_time(event.get("offset"), received_at)):
        timestamp, event_sent_at = at_offset, None  # already on the server's clock
    message: dict[str, Any] = {
        "type": SPECIAL_TYPES.get(name, "track") if isinstance(name, str) else "track",
        "messageId": event.get("uuid") if event.get("uuid") not in (None, "") else event.get("messageId"),
        "timestamp": timestamp,
        "sentAt": event_sent_at,
        "properties": {k: v for k, v in props.items() if k not in CONSUMED},
        "context": _context(event, props),
    }
    if raw_props is not None and not isinstance(raw_props, Mapping):
        message["properties"] = raw_props  # not an object: normalize rejects it, naming the field
    key = text(event.get("api_key")) or text(event.get("token")) or text(props.get("token")) or body_key
    if key:
        message["writeKey"] = key
    traits = {**_object(event, props, "$set_once"), **_object(event, props, "$set")}
    if traits:
        message["traits"] = traits
    if message["type"] == "track":
        message["event"] = name
    extra: list[dict[str, Any]] = []
    if name == "$create_alias":
        message.update(type="alias", previousId=distinct_id, userId=text(props.get("alias")))
    elif name == "$groupidentify":
        group_set = props.get("$group_set")
        message.update(type="group", anonymousId=distinct_id, groupId=text(props.get("$group_key")))
        message["traits"] = dict(group_set) if isinstance(group_set, Mapping) else {}
    elif name == "$identify":
        message.update(userId=distinct_id, anonymousId=text(props.get("$anon_distinct_id")))
        if distinct_id and isinstance(message["messageId"], str) and message["messageId"]:
            extra.append(_identified_link(message, distinct_id))
    else:
        message.update(_identity(distinct_id, props))
    if message["type"] in ("page", "screen"):
        title = props.get("$screen_name") if message["type"] == "screen" else props.get("title")
        if isinstance(title, str) and title:
            message["name"] = title
    return [message, *extra]


def _identified_link(identify: Mapping[str, Any], distinct_id: str) -> dict[str, Any]:
    """alias(distinct_id -> distinct_id): the identified distinct_id, used as an anonymousId, is this user."""
    shared = {k: v for k, v in identify.items() if k in ("timestamp", "sentAt", "context", "writeKey")}
    link = {"type": "alias", "messageId": f"{identify['messageId']}:identified"}
    return shared | link | {"previousId": distinct_id, "userId": distinct_id}


def _identity(distinct_id: str | None, props: Mapping[str, Any]) -> dict[str, str | None]:
    user_id = text(props.get("$user_id"))
    if user_id:
        return {"userId": user_id, "anonymousId": distinct_id if distinct_id != user_id else None}
    if props.get("$is_identified") in TRUE or props.get("$user_state") == "identified":
        device = text(props.get("$device_id"))
        return {"userId": distinct_id, "anonymousId": device if device != distinct_id else None}
    return {"anonymousId": distinct_id}


def _context(event: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    url = text(props.get("$current_url"))
    referrer = text(props.get("$referrer"))
    context: dict[str, Any] = {}
    page = page_context(
        url,
        path=text(props.get("$pathname")),
        referrer=None if referrer == "$direct" else referrer,
        title=text(props.get("title")),
    )
    if page:
        context["page"] = page
    utm = {k: str(props[p]) for p, k in UTM_KEYS.items() if props.get(p) not in (None, "")}
    campaign = utm or campaign_of(url)
    if campaign:
        context["campaign"] = campaign
    for key, value in (
        ("sessionId", text(props.get("$session_id"))),
        ("userAgent", text(props.get("$raw_user_agent")) or text(props.get("$useragent"))),
        ("ip", text(props.get("$ip")) or text(event.get("ip"))),
        ("locale", text(props.get("$locale"))),
        ("timezone", text(props.get("$timezone"))),
    ):
        if value:
            context[key] = value
    lib = text(props.get("$lib"))
    if lib:
        context["library"] = {"name": lib, "version": text(props.get("$lib_version"))}
    return context


def _object(event: Mapping[str, Any], props: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key) if isinstance(event.get(key), Mapping) else props.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _offset_time(offset: Any, received_at: datetime | None) -> str | None:
    if received_at is None or isinstance(offset, bool) or not isinstance(offset, int | float):
        return None
    return (received_at - timedelta(milliseconds=offset)).isoformat()


def _epoch_ms(value: Any) -> int | None:
    """posthog-js's cache-buster `?_=<epoch ms>` is its send time."""
    if isinstance(value, str) and value.isdigit() and len(value) >= 12:
        return int(value)
    return None
