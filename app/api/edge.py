"""Limits at the edge, before any handler runs (pure ASGI): header count and size (431), a declared
Content-Length over the cap (413, nothing read), NUL characters in the path or query (400), the whole
body within a deadline (408). A client that goes away is counted, not logged as an error."""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.config import Settings
from app.errors import client_went_away, error_response
from app.jsonresponse import JSONAnswer

log = logging.getLogger("racetrack.http")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} seconds")


Refusal = tuple[int, str, str, str]  # status, code, message, field


def refusal(scope: Scope, limits: Settings) -> Refusal | None:
    """Why this request is refused before anything reads it, if it is."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    if len(headers) > limits.max_header_count:
        return 431, "headers_too_large", f"more than {limits.max_header_count} headers", "headers"
    if sum(len(k) + len(v) for k, v in headers) > limits.max_header_bytes:
        return 431, "headers_too_large", f"headers exceed {limits.max_header_bytes} bytes", "headers"
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
    if b"%00" in raw_path.lower() or "\x00" in scope["path"]:
        return 400, "invalid_character", "the path contains a NUL character", "path"
    if b"%00" in scope.get("query_string", b""):
        return 400, "invalid_character", "the query contains a NUL character", "query"
    declared = [v for k, v in headers if k == b"content-length"]
    if declared:
        try:
            length = int(declared[0])
        except ValueError:
            return 400, "invalid_content_length", "Content-Length is not a number", "content-length"
        if length > limits.max_body_bytes:
            message = f"declared body of {length} bytes exceeds {limits.max_body_bytes}"
            return 413, "payload_too_large", message, "content-length"
    return None


def refusal_response(why: Refusal) -> JSONAnswer:
    status, code, message, fld = why
    metrics.EDGE_REFUSED.labels(code).inc()
    return error_response(status, code, message, [{"field": fld, "message": message}])


def body_timeout_response(exc: BodyTimeout) -> JSONAnswer:
    metrics.EDGE_REFUSED.labels("body_timeout").inc()
    return error_response(408, "request_timeout", exc.detail, [{"field": "body", "message": exc.detail}])


def timed_receive(scope: Scope, receive: Receive, seconds: float) -> Receive:
    """receive(), with the whole body due within `seconds` (else BodyTimeout); a disconnect is counted."""
    deadline = asyncio.get_running_loop().time() + seconds
    body_done = scope["method"] in ("GET", "HEAD", "OPTIONS")

    async def receiving() -> Message:
        nonlocal body_done
        if body_done:  # after the body: waiting for a disconnect has no deadline
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(seconds) from None
        if message["type"] == "http.disconnect":
            client_went_away(scope)  # counted once here, whoever then raises ClientDisconnect
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return receiving


class Edge:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = refusal(scope, self.settings)
        if why is not None:
            await refusal_response(why)(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive(scope, receive, self.settings.body_timeout_seconds), tracked_send)
        except BodyTimeout as exc:
            answer = body_timeout_response(exc)
            if not started:
                await answer(scope, receive, send)
        except ClientDisconnect:
            pass  # counted in timed_receive; nobody is left to answer
