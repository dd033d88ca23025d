"""Ingestion endpoints in Segment's HTTP API shape (DESIGN §2). Thin: parse, normalize, hand to the writer."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.api.body import read_json
from app.api.cors import internal_error, public_headers
from app.api.deps import SettingsDep, WriterDep, resolve_write_site
from app.api.edge import BodyTimeout, body_timeout_response, refusal, refusal_response, timed_receive
from app.api.ingest_schemas import GIF_ANSWERS, SEGMENT_BATCH_BODY, SINGLE_BODY, IngestAnswer
from app.api.observe import RequestLog
from app.api.schemas import answers
from app.config import Settings
from app.domain.normalize import IncomingEvent, Receipt, Rejection, normalize
from app.errors import DATABASE_DOWN, BadRequest, RacetrackError, database_down_response, racetrack_error_response
from app.jsonresponse import JSONAnswer
from app.pipeline.ingest import Writer
from app.store.sites import Site
from app.wire.body import parse_json

router = APIRouter(tags=["ingestion"])
NUL = "\\u0000"  # as orjson escapes it
SINGLE_TYPES = ("track", "page", "screen", "identify", "alias", "group")
# 1x1 transparent GIF
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}


def _receipt(request: Request, site: Site, settings: Settings, body: Mapping[str, Any]) -> Receipt:
    context = body.get("context")
    return Receipt(
        received_at=datetime.now(UTC),
        site_domains=site.domains,
        batch_sent_at=body.get("sentAt"),
        batch_context=context if isinstance(context, Mapping) else None,
        max_future=timedelta(hours=settings.max_future_skew_hours),
    )


def _split(
    messages: list[Any], receipt: Receipt, settings: Settings
) -> tuple[list[IncomingEvent], list[tuple[int, Rejection, str]]]:
    accepted: list[IncomingEvent] = []
    rejected: list[tuple[int, Rejection, str]] = []
    for index, raw in enumerate(messages):
        encoded = orjson.dumps(_without_ip(raw)).decode()  # kept raw if rejected, minus the IP
        message_id = raw.get("messageId") if isinstance(raw, Mapping) else None
        message_id = message_id if isinstance(message_id, str) else None
        if len(encoded) > settings.message_max_bytes:
            limit = f"message exceeds {settings.message_max_bytes} bytes"
            # kept whole, as DESIGN §2 asks (every rejected message raw); the request cap bounds it
            rejected.append((index, Rejection("message_too_large", limit, "message", message_id), encoded))
            continue
        if NUL in encoded:  # PostgreSQL text and jsonb refuse NUL characters
            nul = Rejection("invalid_character", "message contains a NUL (\\u0000) character", "message", message_id)
            rejected.append((index, nul, encoded.replace(NUL, "")))
            continue
        result = normalize(raw, receipt)
        if isinstance(result, Rejection):
            rejected.append((index, result, encoded))
        else:
            accepted.append(result)
    return accepted, rejected


def _without_ip(raw: Any) -> Any:
    context = raw.get("context") if isinstance(raw, Mapping) else None
    if isinstance(context, Mapping) and "ip" in context:
        return {**raw, "context": {k: v for k, v in context.items() if k != "ip"}}
    return raw


def rejection_fields(r: Rejection) -> dict[str, Any]:
    """Why a message was rejected, as every answer shows it (ingestion, replays, rule tests)."""
    return {"code": r.code, "message": r.message, "field": r.field}


async def ingest_messages(
    request: Request, writer: WriterDep, settings: Settings, body: Any, messages: list[Any]
) -> dict[str, Any]:
    body_key = body.get("writeKey") if isinstance(body, Mapping) else None
    site = await resolve_write_site(request, body_key if isinstance(body_key, str) else None)
    receipt = _receipt(request, site, settings, body if isinstance(body, Mapping) else {})
    accepted, rejected = _split(messages, receipt, settings)
    written = await writer.submit(site.site_id, accepted, [(r, raw) for _, r, raw in rejected])
    return {
        "success": True,
        "accepted": written.accepted,
        "duplicates": written.duplicates,
        "rejected": [{"index": i, "messageId": r.message_id, **rejection_fields(r)} for i, r, _ in rejected],
    }


PixelData = Annotated[
    str,
    Query(
        description="The message (or a batch) as base64url JSON, for pixels where no body can be sent; the write "
        "key as writeKey inside it or as ?writeKey=",
        examples=["eyJ0eXBlIjoicGFnZSJ9"],
    ),
]


MALFORMED = "Malformed JSON (malformed_json), an empty body (empty_body), an unsupported Content-Encoding"
BATCH_ANSWERS = answers(IngestAnswer, e400=f"{MALFORMED}, or no 'batch' array (invalid_batch)")
SINGLE_ANSWERS = answers(
    IngestAnswer, e400=f"{MALFORMED}, not one object (invalid_message), or the message is rejected (its code)"
)


@router.post(
    "/v1/batch",
    summary="Segment batch: {batch: [messages], sentAt, context, writeKey}",
    responses=BATCH_ANSWERS,
    openapi_extra=SEGMENT_BATCH_BODY,
)
async def batch(request: Request, writer: WriterDep, settings: SettingsDep) -> JSONAnswer:
    return await batch_answer(request, writer, settings)


async def batch_answer(request: Request, writer: Writer, settings: Settings) -> JSONAnswer:
    body = await read_json(request, settings.request_max_bytes)
    messages = batch_messages(body.get("batch") if isinstance(body, Mapping) else None)
    return JSONAnswer(await ingest_messages(request, writer, settings, body, messages))


def batch_messages(found: Any) -> list[Any]:
    """A request's batch: a list, else 400 invalid_batch."""
    if not isinstance(found, list):
        raise BadRequest(
            "body must be an object with a 'batch' array",
            "invalid_batch",
            [{"field": "batch", "message": "must be an array of messages"}],
        )
    return found


async def single_answer(
    kind: str, request: Request, writer: Writer, settings: Settings, drop_write_key: bool = False
) -> JSONAnswer:
    """One message of this type; its rejection is the request's 400."""
    body = await read_json(request, settings.request_max_bytes)
    if not isinstance(body, dict):
        raise BadRequest(
            "body must be a JSON object (one message)",
            "invalid_message",
            [{"field": "message", "message": "must be an object"}],
        )
    message = {**body, "type": kind}
    if drop_write_key:
        message.pop("writeKey", None)
    answer = await ingest_messages(request, writer, settings, body, [message])
    if answer["rejected"]:
        first = answer["rejected"][0]
        raise BadRequest(first["message"], first["code"], [{"field": first["field"], "message": first["message"]}])
    return JSONAnswer(answer)


def add_single_route(
    to: APIRouter, path: str, kind: str, name: str, summary: str, drop_write_key: bool = False
) -> None:
    """A route taking one message of this type (Segment's /v1/<type>, analytics.js' short paths)."""

    async def endpoint(request: Request, writer: WriterDep, settings: SettingsDep) -> JSONAnswer:
        return await single_answer(kind, request, writer, settings, drop_write_key=drop_write_key)

    endpoint.__name__ = name
    to.add_api_route(
        path, endpoint, methods=["POST"], summary=summary, responses=SINGLE_ANSWERS, openapi_extra=SINGLE_BODY
    )


for _kind in SINGLE_TYPES:
    add_single_route(router, f"/v1/{_kind}", _kind, f"ingest_{_kind}", f"One Segment {_kind} message")


@router.get(
    "/v1/pixel.gif",
    summary="Tracking pixel: ?data=<base64url JSON message>&writeKey=",
    response_class=Response,
    responses=GIF_ANSWERS,
)
async def pixel(request: Request, writer: WriterDep, settings: SettingsDep, data: PixelData = "") -> Response:
    async def ingest() -> str | None:
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            message = parse_json(raw)
            if not isinstance(message, dict):
                raise BadRequest("data must encode one JSON object", "invalid_message")
            message.setdefault("type", "track")
            answer = await ingest_messages(request, writer, settings, message, [message])
        except (binascii.Error, ValueError):
            return "malformed_data"
        return answer["rejected"][0]["code"] if answer["rejected"] else None

    return await gif_answer(ingest)


async def gif_answer(ingest: Callable[[], Awaitable[str | None]]) -> Response:
    """A pixel's answer, the 1x1 GIF whatever happened (a JSON answer would fire the image's onerror):
    ingest() gives the code a message was rejected with (400), or None (200); a refusal answers with
    its status, X-Racetrack-Error names the code."""
    headers = dict(NO_CACHE)
    status = 200
    try:
        code = await ingest()
        if code is not None:
            status, headers["X-Racetrack-Error"] = 400, code
    except RacetrackError as exc:
        await exc.hold()
        status, headers["X-Racetrack-Error"] = exc.status, exc.code
        headers.update(exc.headers())
    except DATABASE_DOWN:
        status, headers["X-Racetrack-Error"], headers["Retry-After"] = 503, "database_unavailable", "5"
    return Response(PIXEL, status_code=status, media_type="image/gif", headers=headers)


Handler = Callable[[Request, Writer, Settings], Awaitable[Response]]


class IngestLane:
    """The Segment POST endpoints, served ahead of the middleware stack and FastAPI's routing and
    dependency resolution (they are most of the traffic, and each layer costs a one-event request
    more than its handler). It does for them what Observe, CORSByPath and Edge do for every other
    request, with the same functions; the FastAPI routes above stay for OpenAPI and other methods."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = RequestLog(settings.access_log)
        self.handlers: dict[str, Handler] = {
            "/v1/batch": batch_answer,
            **{f"/v1/{kind}": partial(single_answer, kind) for kind in SINGLE_TYPES},
        }

    def handler(self, scope: Scope) -> Handler | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        return self.handlers.get(scope["path"])

    async def serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self.log.begin(scope)
        scope["racetrack.route"] = scope["path"]  # for logs and metrics: no FastAPI route matched
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
        extra = [(b"x-request-id", request_id.encode()), *public_headers(origin)]
        status = 500
        try:
            response = await self._answer(handler, scope, receive)
            if response is None:  # the client went away: nobody to answer
                return
            response.raw_headers += extra
            status = response.status_code
            await response(scope, receive, send)
        except Exception:
            await internal_error(scope, send, extra)
        finally:
            self.log.end(scope, request_id, status, started)

    async def _answer(self, handler: Handler, scope: Scope, receive: Receive) -> Response | None:
        why = refusal(scope, self.settings)
        if why is not None:
            return refusal_response(why)
        state = scope["state"]
        request = Request(scope, timed_receive(scope, receive, self.settings.body_timeout_seconds))
        try:
            return await handler(request, state["writer"], self.settings)
        except RacetrackError as exc:
            return await racetrack_error_response(exc)
        except DATABASE_DOWN as exc:  # e.g. a write-key lookup while the database restarts
            return database_down_response(exc)
        except BodyTimeout as exc:
            return body_timeout_response(exc)
        except ClientDisconnect:
            return None  # counted by timed_receive
