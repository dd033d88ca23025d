"""Apps with their own settings (limits, timeouts) for security tests, and raw ASGI calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message

from app.config import Settings
from app.main import create_app

ROOT = {"Authorization": "Bearer test-root-token"}


@asynccontextmanager
async def app_client(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_app(settings, **overrides) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            yield c


@asynccontextmanager
async def asgi_app(settings: Settings, **overrides: Any) -> AsyncIterator[ASGIApp]:
    app = create_app(settings.model_copy(update=overrides))
    async with LifespanManager(app) as manager:
        yield manager.app


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert (body["code"], isinstance(body["message"], str), isinstance(body["details"], list)) == (code, True, True)
    return body


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"racetrack.test"), *headers],
        "client": ("203.0.113.7", 5000),
        "server": ("racetrack.test", 80),
    }


async def call(
    app: ASGIApp, scope: dict[str, Any], receive: Callable[[], Awaitable[Message]]
) -> tuple[int | None, dict[bytes, bytes], bytes]:
    """Run one request through the app; the status (None if no answer was started), headers, body."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else None), dict(start["headers"]) if start else {}, body
