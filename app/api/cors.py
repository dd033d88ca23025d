"""CORS by kind of path. Pure ASGI, so it also covers answers made by exception handlers.

- ingestion (and any other public path): any origin, never credentials; errors and preflights too
  (a browser SDK that cannot read an answer retries and duplicates);
- read endpoints (KPIs, reports, persons): only the origins on a site's domains (or their subdomains);
  the answer is allowed for the domains of the site whose key was sent, a preflight for any site's;
- admin and root endpoints: no CORS headers at all (a browser page elsewhere cannot use them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import INTERNAL_ERROR, error_response
from app.store import sites as site_store

log = logging.getLogger("racetrack.http")

ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
DEFAULT_HEADERS = b"Authorization, Content-Type, Content-Encoding, X-Request-ID"
COOKIE_PATHS = "/dashboard"  # the dashboard signs in by cookie: never readable from another origin
EXPOSE = (b"access-control-expose-headers", b"Retry-After, X-Request-ID, ETag")
READ_PATHS = ("/v1/kpis", "/v1/funnel", "/v1/goals", "/v1/cohorts", "/v1/report", "/v1/quality", "/v1/persons")
ADMIN_PATHS = (
    "/v1/rules", "/v1/reclassify", "/v1/jobs", "/v1/targets", "/v1/failed-events",
    "/v1/sites", "/v1/keys", "/v1/audit", "/docs", "/redoc", "/openapi.json",
)  # fmt: skip
DOMAINS_CACHE_SECONDS = 30.0
Headers = list[tuple[bytes, bytes]]


def public_headers(origin: bytes | None) -> Headers:
    """An ingestion (or other public) answer's CORS headers: any origin, never credentials."""
    return [(b"access-control-allow-origin", origin or b"*"), EXPOSE, (b"vary", b"Origin")]


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def kind_of(path: str, method: str = "GET") -> str:
    """'admin', 'read' or 'public' (ingestion, health, and unknown paths). Under /v1/persons, the
    erasure (DELETE) and the export are admin endpoints."""
    if _under(path, ADMIN_PATHS) or (
        path.startswith("/v1/persons/") and (method == "DELETE" or path.endswith("/export"))
    ):
        return "admin"
    return "read" if _under(path, READ_PATHS) else "public"


def origin_allowed(origin: bytes, domains: tuple[str, ...] | frozenset[str]) -> bool:
    try:
        host = (urlsplit(origin.decode("latin-1")).hostname or "").lower()
    except ValueError:
        return False
    return bool(host) and any(host == d or host.endswith("." + d) for d in (d.lower() for d in domains))


class SiteDomains:
    """Every site's domains, re-read at most every DOMAINS_CACHE_SECONDS (read-endpoint preflights)."""

    def __init__(self) -> None:
        self._at = -DOMAINS_CACHE_SECONDS
        self._domains: frozenset[str] = frozenset()

    async def all(self, pool: asyncpg.Pool) -> frozenset[str]:
        if time.monotonic() - self._at >= DOMAINS_CACHE_SECONDS:
            async with pool.acquire() as conn:
                self._domains = frozenset(d.lower() for d in await site_store.all_domains(conn))
            self._at = time.monotonic()
        return self._domains


class CORSByPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(COOKIE_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
        method = headers[b"access-control-request-method"].decode("latin-1").upper() if preflight else scope["method"]
        kind = kind_of(scope["path"], method)
        if kind == "admin":
            await self._guarded(scope, receive, send, lambda: [])
            return
        if preflight:
            await self._preflight(scope, send, kind, origin, headers)
            return
        state = scope.setdefault("state", {})

        def cors() -> list[tuple[bytes, bytes]]:
            if kind == "public":
                return public_headers(origin)
            domains = state.get("site_domains") or ()
            if origin and origin_allowed(origin, domains):
                return [(b"access-control-allow-origin", origin), EXPOSE, (b"vary", b"Origin")]
            return [(b"vary", b"Origin")]

        await self._guarded(scope, receive, send, cors)

    async def _preflight(
        self, scope: Scope, send: Send, kind: str, origin: bytes | None, headers: dict[bytes, bytes]
    ) -> None:
        allowed = kind == "public"
        if kind == "read" and origin:
            pool = scope.get("state", {}).get("pool")
            allowed = pool is not None and origin_allowed(origin, await scope["state"]["site_domains_all"].all(pool))
        answer: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            requested = headers.get(b"access-control-request-headers") or DEFAULT_HEADERS
            answer += [
                (b"access-control-allow-origin", origin or b"*"),
                EXPOSE,
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", requested),
                (b"access-control-max-age", b"86400"),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, cors: Callable[[], Headers]) -> None:
        started = False

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *cors()]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except Exception:
            if started:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                raise
            await internal_error(scope, send, cors())


async def internal_error(scope: Scope, send: Send, headers: Headers) -> None:
    """Log the exception under way and answer 500 (with these headers, e.g. CORS)."""
    log.exception("unhandled error on %s %s", scope["method"], scope["path"])
    body = bytes(error_response(500, "internal_error", INTERNAL_ERROR).body)  # sent raw: the stack may be broken
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
