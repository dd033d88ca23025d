"""CORS on every answer, errors and preflights included (a browser SDK that cannot read an answer
retries and duplicates). Pure ASGI, so it also wraps answers produced by exception handlers."""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("racetrack.http")

ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
DEFAULT_HEADERS = b"Authorization, Content-Type, Content-Encoding, X-Request-ID"
COOKIE_PATHS = "/dashboard"  # the dashboard signs in by cookie: never readable from another origin


class CORSEverywhere:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(COOKIE_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        cors = [
            (b"access-control-allow-origin", origin or b"*"),
            (b"access-control-expose-headers", b"Retry-After, X-Request-ID, ETag"),
            (b"vary", b"Origin"),
        ]
        if origin:
            cors.append((b"access-control-allow-credentials", b"true"))
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            requested = headers.get(b"access-control-request-headers") or DEFAULT_HEADERS
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", ALLOW_METHODS),
                        (b"access-control-allow-headers", requested),
                        (b"access-control-max-age", b"86400"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        started = False

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            body = orjson.dumps(
                {"code": "internal_error", "message": "internal error; it has been logged", "details": []}
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), *cors],
                }
            )
            await send({"type": "http.response.body", "body": body})
