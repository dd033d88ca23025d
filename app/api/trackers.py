"""Other trackers' wire formats, mapped onto Segment messages and ingested like /v1/batch (DESIGN §2).

- analytics.js short paths: `POST /v1/b` (batch) and `/v1/t|p|i|a|s|g` (one message), text/plain
  bodies carrying `writeKey`.
- PostHog: `POST /batch/`, `/i/v0/e/`, `/e/`, `/capture/` (each with and without the slash); gzip by
  Content-Encoding or posthog-js's `?compression=gzip-js`; posthog-js's form body `data=<base64>`.
- Snowplow tracker protocol 2: `POST /com.snowplowanalytics.snowplow/tp2` and `GET /i` (a GIF).

Success is exactly 200 with /v1/batch's answer. A request's messages may name different sites (each
message's writeKey: PostHog's api_key/token, Snowplow's app id); every key is checked before
anything is written, then each site's messages are ingested, and the answers are added up with the
`index` of a rejection counting the request's mapped messages. A key the request itself names
(Basic/Bearer, `?writeKey=`, a body-level `writeKey`) wins for all its messages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_body, read_json
from app.api.deps import SettingsDep, WriterDep, resolve_write_site
from app.api.ingest import MALFORMED, add_single_route, batch_messages, gif_answer, ingest_messages
from app.api.ingest_schemas import (
    GIF_ANSWERS,
    POSTHOG_BODY,
    SHORT_BATCH_BODY,
    SNOWPLOW_BODY,
    SNOWPLOW_QUERY,
    IngestAnswer,
)
from app.api.schemas import answers
from app.config import Settings
from app.errors import BadRequest
from app.jsonresponse import JSONAnswer
from app.wire.body import decoded, parse_json
from app.wire.posthog import posthog_messages
from app.wire.snowplow import event_message, tp2_messages

router = APIRouter(tags=["ingestion: other trackers"])

SHORT_TYPES = {"t": "track", "p": "page", "i": "identify", "a": "alias", "s": "screen", "g": "group"}
POSTHOG_PATHS = ("/batch", "/i/v0/e", "/e", "/capture")
SNOWPLOW_POST_PATH = "/com.snowplowanalytics.snowplow/tp2"


def _request_names_key(request: Request) -> bool:
    return bool(request.headers.get("authorization") or request.query_params.get("writeKey"))


async def ingest_keyed(
    request: Request, writer: WriterDep, settings: Settings, messages: list[Any], batch_fields: Mapping[str, Any]
) -> dict[str, Any]:
    """Ingest messages that carry their own `writeKey`, grouped by it (see the module's doc)."""
    body_key = batch_fields.get("writeKey") if isinstance(batch_fields.get("writeKey"), str) else None
    explicit = _request_names_key(request) or body_key is not None
    groups: dict[str | None, list[int]] = {}
    for index, message in enumerate(messages):
        key = message.pop("writeKey", None) if isinstance(message, dict) else None
        groups.setdefault(None if explicit or not isinstance(key, str) else key, []).append(index)
    keyless = groups.pop(None, [])
    if groups:  # messages that name no site go with the first that does
        first = next(iter(groups))
        groups[first] = sorted(groups[first] + keyless)
    else:
        groups[body_key] = keyless
    for key in groups:  # every site must exist before any is written
        await resolve_write_site(request, key)
    total: dict[str, Any] = {"success": True, "accepted": 0, "duplicates": 0, "rejected": []}
    for key, indexes in groups.items():
        fields = {**batch_fields, "writeKey": key} if key else dict(batch_fields)
        answer = await ingest_messages(request, writer, settings, fields, [messages[i] for i in indexes])
        total["accepted"] += answer["accepted"]
        total["duplicates"] += answer["duplicates"]
        total["rejected"] += [{**r, "index": indexes[r["index"]]} for r in answer["rejected"]]
    total["rejected"].sort(key=lambda r: r["index"])
    return total


# ---------------------------------------------------------------- analytics.js short paths


SHORT_BATCH_ANSWERS = answers(IngestAnswer, e400=f"{MALFORMED}, or no array of messages (invalid_batch)")


@router.post(
    "/v1/b",
    summary="analytics.js batch: {batch: [messages], sentAt, writeKey} or [messages] (text/plain)",
    responses=SHORT_BATCH_ANSWERS,
    openapi_extra=SHORT_BATCH_BODY,
)
async def short_batch(request: Request, writer: WriterDep, settings: SettingsDep) -> JSONAnswer:
    body = await read_json(request, settings.request_max_bytes)
    messages = batch_messages(
        body if isinstance(body, list) else body.get("batch") if isinstance(body, Mapping) else None
    )
    fields = {k: v for k, v in body.items() if k != "batch"} if isinstance(body, Mapping) else {}
    return JSONAnswer(await ingest_keyed(request, writer, settings, messages, fields))


for _letter, _kind in SHORT_TYPES.items():
    add_single_route(router, f"/v1/{_letter}", _kind, f"short_{_kind}",
                     f"analytics.js {_kind}: one message (text/plain)", drop_write_key=True)  # fmt: skip


# ---------------------------------------------------------------- PostHog


async def _posthog_body(request: Request, settings: Settings) -> Any:
    raw = await read_body(request, settings.request_max_bytes)
    compression = (request.query_params.get("compression") or "").lower()
    if compression in ("gzip-js", "gzip") and raw[:2] == b"\x1f\x8b":
        raw = decoded(raw, "gzip", settings.request_max_bytes)  # as a Content-Encoding: gzip body
    elif compression == "lz64":
        raise BadRequest("lz64 compression is not supported; use gzip-js", "unsupported_encoding")
    if raw[:5] == b"data=":  # posthog-js's form body: data=<base64 JSON>
        data = parse_qs(raw.decode("latin-1")).get("data", [""])[0]
        try:
            raw = base64.b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest("form field 'data' is not base64", "malformed_body") from None
    return parse_json(raw)


async def posthog_capture(request: Request, writer: WriterDep, settings: SettingsDep) -> JSONAnswer:
    body = await _posthog_body(request, settings)
    messages = posthog_messages(body, query=request.query_params, received_at=datetime.now(UTC))
    return JSONAnswer(await ingest_keyed(request, writer, settings, messages, {}))


POSTHOG_ANSWERS = answers(
    IngestAnswer,
    e400=f"{MALFORMED}, bad gzip or base64 (malformed_body), lz64 (unsupported_encoding), or no events (invalid_batch)",
)
for _path in POSTHOG_PATHS:
    for _variant in (_path, f"{_path}/"):
        router.add_api_route(
            _variant,
            posthog_capture,
            methods=["POST"],
            name=f"posthog_{_variant.strip('/').replace('/', '_')}_{'slash' if _variant.endswith('/') else 'bare'}",
            summary="PostHog capture: {api_key, batch: [events]}, a list of events or one event",
            responses=POSTHOG_ANSWERS,
            openapi_extra=POSTHOG_BODY,
        )


# ---------------------------------------------------------------- Snowplow


@router.post(
    SNOWPLOW_POST_PATH,
    summary="Snowplow tracker protocol 2: {schema, data: [events]}",
    responses=answers(IngestAnswer, e400=f"{MALFORMED}, or no array of events (invalid_batch)"),
    openapi_extra=SNOWPLOW_BODY,
)
async def snowplow_post(request: Request, writer: WriterDep, settings: SettingsDep) -> JSONAnswer:
    body = await read_json(request, settings.request_max_bytes)
    return JSONAnswer(await ingest_keyed(request, writer, settings, tp2_messages(body), {}))


@router.get(
    "/i",
    summary="Snowplow tracker protocol 2, one event as query parameters; answers a 1x1 GIF",
    response_class=Response,
    responses=GIF_ANSWERS,
    openapi_extra={"parameters": SNOWPLOW_QUERY},
)
async def snowplow_get(request: Request, writer: WriterDep, settings: SettingsDep) -> Response:
    async def ingest() -> str | None:
        message = event_message(dict(request.query_params))
        if message is None:  # a page ping
            return None
        answer = await ingest_keyed(request, writer, settings, [message], {})
        return answer["rejected"][0]["code"] if answer["rejected"] else None

    return await gif_answer(ingest)
