"""Dependencies: the pool, the writer, and the site a key names (handlers never see keys); reads
wait for derivation here."""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request

from app.api.freshness import Freshness, wait_for_derivation
from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.pipeline.ingest import Writer
from app.pipeline.rulesets import RulesetCache
from app.store import sites as site_store
from app.store.sites import Site

SITE_CACHE_SECONDS = 10.0


def _state(request: Request, name: str) -> Any:
    return getattr(request.state, name)


async def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = _state(request, "pool")
    return pool


async def _conn(request: Request) -> AsyncIterator[asyncpg.Connection]:
    pool: asyncpg.Pool = _state(request, "pool")
    async with pool.acquire() as conn:
        yield conn


async def _writer(request: Request) -> Writer:
    writer: Writer = _state(request, "writer")
    return writer


async def _settings(request: Request) -> Settings:
    settings: Settings = _state(request, "settings")
    return settings


async def _rulesets(request: Request) -> RulesetCache:
    cache: RulesetCache = _state(request, "rulesets")
    return cache


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
Conn = Annotated[asyncpg.Connection, Depends(_conn)]
WriterDep = Annotated[Writer, Depends(_writer)]
SettingsDep = Annotated[Settings, Depends(_settings)]
Rulesets = Annotated[RulesetCache, Depends(_rulesets)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def basic_username(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username = base64.b64decode(token.strip()).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return username or None


class WriteKeySites:
    """write key -> Site, cached briefly per process (ingestion must not query per request)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Site | None]] = {}

    async def site(self, pool: asyncpg.Pool, write_key: str) -> Site | None:
        hit = self._cache.get(write_key)
        if hit and time.monotonic() - hit[0] < SITE_CACHE_SECONDS:
            return hit[1]
        async with pool.acquire() as conn:
            site = await site_store.site_by_write_key(conn, write_key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[write_key] = (time.monotonic(), site)
        return site


async def resolve_write_site(request: Request, body_key: str | None) -> Site:
    key = basic_username(request) or body_key or request.query_params.get("writeKey") or bearer_token(request)
    if not key:
        raise Unauthorized(
            "a write key is required (Basic auth, writeKey in the body or ?writeKey=)", "missing_write_key"
        )
    sites: WriteKeySites = _state(request, "write_sites")
    site = await sites.site(_state(request, "pool"), key)
    if site is None:
        raise Unauthorized("unknown write key", "invalid_write_key")
    return site


async def _secret_site(request: Request, conn: asyncpg.Connection) -> tuple[Site, str]:
    token = bearer_token(request)
    if not token:
        raise Unauthorized("send the site's read or admin key as 'Authorization: Bearer <key>'", "missing_key")
    found = await site_store.site_by_secret_key(conn, token)
    if found is None:
        raise Unauthorized("unknown key", "invalid_key")
    return found


async def _wait_for_derivation(request: Request, conn: asyncpg.Connection, site: Site) -> None:
    settings: Settings = _state(request, "settings")
    request.state.freshness = await wait_for_derivation(conn, site.site_id, settings.read_wait_seconds)


async def read_site(request: Request, conn: Conn) -> Site:
    """The site of a read (or admin) key; the request waits for the events acknowledged before it
    (bounded), so what it reads includes them."""
    site = (await _secret_site(request, conn))[0]
    await _wait_for_derivation(request, conn, site)
    return site


def freshness(request: Request) -> dict[str, Any] | None:
    """The answer's freshness fields (None for a call that did not go through read_site, such as
    the dashboard's own, which shows the lag in a panel of its own)."""
    fresh: Freshness | None = getattr(request.state, "freshness", None)
    return fresh.fields() if fresh else None


async def admin_site(request: Request, conn: Conn) -> Site:
    site, kind = await _secret_site(request, conn)
    if kind != "admin":
        raise Forbidden("this needs the site's admin key", "admin_key_required")
    await _wait_for_derivation(request, conn, site)
    return site


async def root_admin(request: Request, settings: SettingsDep) -> None:
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    token = bearer_token(request)
    if not expected:
        raise Forbidden("RACETRACK_ADMIN_TOKEN is not set on the server", "admin_token_unset")
    if not token or not hmac.compare_digest(token, expected):
        raise Unauthorized("root admin token required", "invalid_admin_token")


ReadSite = Annotated[Site, Depends(read_site)]
AdminSite = Annotated[Site, Depends(admin_site)]
RootAdmin = Depends(root_admin)
