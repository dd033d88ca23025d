"""Ingestion's wire formats as pydantic models, for the OpenAPI document only: the handlers parse
bodies themselves (app/api/ingest.py, app/api/trackers.py) and never validate against these, so the
hot path costs what it did. Every model allows extra fields, as the SDKs send many."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.contract import RETRY_AFTER
from app.api.schemas import documented_body

Identifier = str | int


class SegmentMessage(BaseModel):
    """One Segment message (DESIGN §2): `anonymousId` and/or `userId` (at least one)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["track", "page", "screen", "identify", "alias", "group"] = Field(examples=["track"])
    message_id: str | None = Field(None, alias="messageId", description="Idempotency key; generated if absent")
    anonymous_id: Identifier | None = Field(None, alias="anonymousId", examples=["a-7f3c"])
    user_id: Identifier | None = Field(None, alias="userId", examples=["42"])
    event: str | None = Field(None, description="A track message's event name", examples=["Order Completed"])
    name: str | None = Field(None, description="A page or screen name")
    properties: dict[str, Any] | None = Field(None, examples=[{"order_id": "o-1", "revenue": 25.5}])
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = Field(
        None,
        description="page.url/path/referrer/title, campaign.source/medium/name/term/content, userAgent, ip "
        "(never stored), sessionId, channel",
    )
    timestamp: datetime | None = Field(None, description="When it happened")
    sent_at: datetime | None = Field(None, alias="sentAt", description="The client's clock at send")
    previous_id: Identifier | None = Field(None, alias="previousId", description="An alias message's earlier id")
    group_id: Identifier | None = Field(None, alias="groupId")


class SingleMessage(SegmentMessage):
    """A message posted to its type's path: `type` comes from the path; `writeKey` may be in it."""

    type: Literal["track", "page", "screen", "identify", "alias", "group"] | None = None  # type: ignore[assignment]
    write_key: str | None = Field(None, alias="writeKey", description="The site's write key (sendBeacon)")


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[SegmentMessage] = Field(description="The messages (one bad message never costs the others)")
    sent_at: datetime | None = Field(None, alias="sentAt", description="The client's clock at send (clock skew)")
    context: dict[str, Any] | None = Field(None, description="Context shared by every message of the batch")
    write_key: str | None = Field(None, alias="writeKey", description="The site's write key (sendBeacon)")


class RejectedMessage(BaseModel):
    index: int = Field(description="The message's position in the request")
    message_id: str | None = Field(alias="messageId")
    code: str = Field(examples=["invalid_identity"])
    message: str
    field: str | None = Field(description="The field at fault, e.g. userId")


class IngestAnswer(BaseModel):
    """Success is exactly 200 (SDKs resend on 202/207); rejected messages are kept as failed events."""

    success: Literal[True]
    accepted: int = Field(description="Messages stored")
    duplicates: int = Field(description="Messages whose (site, messageId) was already stored")
    rejected: list[RejectedMessage]


class PostHogEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: str = Field(examples=["$pageview"])
    distinct_id: Identifier | None = None
    properties: dict[str, Any] | None = None
    timestamp: str | None = None
    api_key: str | None = Field(None, description="The site's write key (PostHog's project key)")


class PostHogBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    api_key: str | None = Field(None, description="The site's write key (PostHog's project key)")
    batch: list[PostHogEvent]
    sent_at: str | None = None


class SnowplowEvent(BaseModel):
    """Tracker protocol 2's fields Racetrack reads (all strings; the others are kept with the event)."""

    model_config = ConfigDict(extra="allow")

    e: str | None = Field(None, description="Event kind: pv (page view), se (structured), tr, ti, ue, pp")
    aid: str | None = Field(None, description="App id: the site's write key")
    eid: str | None = Field(None, description="Event id (messageId)")
    tv: str | None = Field(None, description="Tracker version")
    dtm: str | None = Field(None, description="Device time, ms since the epoch")
    stm: str | None = Field(None, description="Sent time, ms since the epoch")
    uid: str | None = Field(None, description="User id")
    duid: str | None = Field(None, description="Domain user id (anonymousId)")
    sid: str | None = Field(None, description="Session id")
    url: str | None = Field(None, description="Page URL")
    refr: str | None = Field(None, description="Referrer")
    page: str | None = Field(None, description="Page title")
    se_ca: str | None = Field(None, description="Structured event category")
    se_ac: str | None = Field(None, description="Structured event action")
    tr_id: str | None = Field(None, description="Transaction (order) id")
    tr_tt: str | None = Field(None, description="Transaction total")
    cx: str | None = Field(None, description="Context entities, base64url JSON")
    co: str | None = Field(None, description="Context entities, JSON")
    ue_px: str | None = Field(None, description="Self-describing event, base64url JSON")
    ue_pr: str | None = Field(None, description="Self-describing event, JSON")


class SnowplowPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", examples=["iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"])
    data: list[SnowplowEvent]


BEACON = "The same JSON as text/plain (navigator.sendBeacon, analytics.js)"
SEGMENT_BATCH_BODY = documented_body(SegmentBatch, text_plain=BEACON)
SINGLE_BODY = documented_body(SingleMessage, text_plain=BEACON)
SHORT_BATCH_BODY = documented_body(SegmentBatch, list[SegmentMessage], text_plain=BEACON)
POSTHOG_BODY = documented_body(
    PostHogBatch, list[PostHogEvent], PostHogEvent,
    text_plain=BEACON,
    form="posthog-js's form body: data=<base64 JSON of the same>",
)  # fmt: skip
SNOWPLOW_BODY = documented_body(SnowplowPayload)
# GET /i: one event's fields as query parameters
SNOWPLOW_QUERY = [
    {"name": field.alias or name, "in": "query", "required": False, "schema": {"type": "string"},
     "description": field.description}
    for name, field in SnowplowEvent.model_fields.items()
]  # fmt: skip

GIF = {"image/gif": {"schema": {"type": "string", "format": "binary", "description": "A 1x1 transparent GIF"}}}
ERROR_HEADER = {
    "X-Racetrack-Error": {"description": "The error's code (the body is the GIF)", "schema": {"type": "string"}}
}
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
# An image answers even an error (a JSON answer would fire the image's onerror); the edge's refusals
# (app/api/edge.py) come before the handler and are JSON.
GIF_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (or a duplicate)", "content": GIF, "headers": {}},
    400: {"description": "A rejected message or malformed data (X-Racetrack-Error names the code); "
          "a NUL in the query (JSON, from the edge)", "content": {**GIF, **ERROR_JSON}, "headers": ERROR_HEADER},
    401: {"description": "No write key, or an unknown one", "content": GIF, "headers": ERROR_HEADER},
    413: {"description": "A declared body over the cap (JSON, from the edge)", "content": ERROR_JSON},
    429: {"description": "A rate limit is used up", "content": GIF, "headers": {**ERROR_HEADER, **RETRY_AFTER}},
    503: {"description": "Database unavailable or writer saturated", "content": GIF,
          "headers": {**ERROR_HEADER, **RETRY_AFTER}},
}  # fmt: skip
