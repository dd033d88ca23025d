"""Request ids, latency metrics and one structured log line per request. Pure ASGI.

Logged: method, route template, status, duration, request id, the client's network (IPv4 /24, IPv6
/48) and the id of the key that authenticated. Never query strings (they may carry a write key),
headers, bodies, keys or whole client addresses.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.api.ratelimit import truncated_address

log = logging.getLogger("racetrack.access")
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"})
# A request's own id: random per process, then counted (unique without a system call per request).
_ID_PREFIX = os.urandom(10).hex()
_ids = itertools.count()


class JsonFormatter(logging.Formatter):
    """One JSON object a line (orjson; the timestamp formatted once a second: the access log writes
    a line per request, and stdlib json with strftime was a fifth of a single-event request's CPU)."""

    _second: tuple[int, str] = (-1, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"))
        return self._second[1]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    root = logging.getLogger("racetrack")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's own loggers (start-up, shutdown, errors) in the same JSON lines as Racetrack's."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.api.observe.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class RequestLog:
    """A request's id, latency metric and access log line: for Observe, and for the ingest lane
    (app.api.ingest), which serves its requests ahead of the middleware stack."""

    def __init__(self, access_log: bool = True) -> None:
        self.access_log = access_log
        self._latency: dict[tuple[str, str, int], Any] = {}  # the histogram's children, looked up once

    @staticmethod
    def begin(scope: Scope) -> str:
        """The request's id (the client's X-Request-ID, else a fresh one), kept in the scope's state."""
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")[:128]
        request_id = incoming or f"{_ID_PREFIX}{next(_ids):012x}"
        scope.setdefault("state", {})["request_id"] = request_id
        return request_id

    def end(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None) or scope.get("racetrack.route", "unmatched")
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"  # bounded labels
        key = (method, route, status)
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = metrics.REQUEST_SECONDS.labels(method, route, str(status))
        latency.observe(elapsed)
        if self.access_log:
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": truncated_address(scope["client"][0] if scope.get("client") else None),
                        "key_id": scope["state"].get("key_id"),
                    }
                },
            )


class Observe:
    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.log = RequestLog(access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.log.begin(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.log.end(scope, request_id, status, started)
