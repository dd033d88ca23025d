"""Dependencies: the pool, the writer, and the site a key names (handlers never see keys); reads
wait for derivation here."""

from __future__ import annotations

import base64
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from app import metrics
from app.api.freshness import Freshness, wait_for_derivation
from app.api.params import check_period
from app.api.ratelimit import RateLimits, address_identity, client_host, truncated_address
from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.pipeline.ingest import Writer
from app.pipeline.rulesets import RulesetCache
from app.store import sites as site_store
from app.store.sites import KeyHit, Site

SITE_CACHE_SECONDS = 10.0
security_log = logging.getLogger("racetrack.security")


def _state(request: HTTPConnection, name: str) -> Any:
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
    return _basic_username(request.headers.get("authorization", ""))


@functools.lru_cache(maxsize=4096)  # a site's SDKs send the same header on every request
def _basic_username(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username = base64.b64decode(token.strip()).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return username or None


class WriteKeySites:
    """write key -> KeyHit, cached briefly per process (ingestion must not query per request). A key's
    expiry is kept with it, so a rotated key stops on time; a revocation reaches other processes
    within SITE_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, KeyHit | None]] = {}

    def cached(self, write_key: str) -> tuple[bool, KeyHit | None]:
        hit = self._cache.get(write_key)
        if not hit or time.monotonic() - hit[0] >= SITE_CACHE_SECONDS:
            return False, None
        found = hit[1]
        if found and found.expires_at and found.expires_at <= datetime.now(UTC):
            return True, None
        return True, found

    async def lookup(self, pool: asyncpg.Pool, write_key: str) -> KeyHit | None:
        async with pool.acquire() as conn:
            found = await site_store.write_key_hit(conn, write_key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[write_key] = (time.monotonic(), found)
        return found

    def forget(self) -> None:
        self._cache.clear()


def _limits(conn: HTTPConnection) -> RateLimits:
    limits: RateLimits = _state(conn, "limits")
    return limits


def _remember(request: Request, hit: KeyHit) -> None:
    """For the access log (key id), CORS (the site's origins) and the audit (acting key)."""
    request.state.key_id = hit.key_id
    request.state.key_kind = hit.kind
    request.state.site_domains = hit.site.domains


async def auth_failed(request: Request, kind: str, key: str | None) -> None:
    """Log (truncated address, key prefix) and count a failed authentication; past the limit: 429."""
    host = client_host(request)
    metrics.AUTH_FAILURES.labels(kind).inc()
    fields = {
        "client": truncated_address(host),
        "key_prefix": key[: min(site_store.PREFIX_LENGTH, len(key) // 2)] if key else None,
        "kind": kind,
        "route": request.url.path,
    }
    security_log.warning("authentication failed", extra={"fields": fields})
    limits = _limits(request)
    await limits.hit("failed_auth", limits.failed_auth, address_identity(host))


async def check_failures(request: Request) -> None:
    limits = _limits(request)
    await limits.check("failed_auth", limits.failed_auth, address_identity(client_host(request)))


async def resolve_write_site(request: Request, body_key: str | None) -> Site:
    key = basic_username(request) or body_key or request.query_params.get("writeKey") or bearer_token(request)
    limits = _limits(request)
    await limits.hit("ingest_address", limits.ingest_address, address_identity(client_host(request)))
    if not key:
        raise Unauthorized(
            "a write key is required (Basic auth, writeKey in the body or ?writeKey=)", "missing_write_key"
        )
    sites: WriteKeySites = _state(request, "write_sites")
    known, hit = sites.cached(key)
    if not known or hit is None:
        await check_failures(request)  # a client that keeps guessing is refused before any lookup
    if not known:
        hit = await sites.lookup(_state(request, "pool"), key)
    if hit is None:
        await auth_failed(request, "write", key)
        raise Unauthorized("unknown write key", "invalid_write_key")
    _remember(request, hit)
    await limits.hit("ingest_key", limits.ingest_key, str(hit.key_id))
    return hit.site


async def secret_key(request: Request) -> KeyHit:
    """The read or admin key's site. The key is looked up on a connection of its own, released before
    the key's rate limit may make the request wait its turn: waiting requests hold no connection."""
    token = bearer_token(request)
    if not token:
        raise Unauthorized("send the site's read or admin key as 'Authorization: Bearer <key>'", "missing_key")
    await check_failures(request)
    pool: asyncpg.Pool = _state(request, "pool")
    async with pool.acquire() as conn:
        found = await site_store.secret_key_hit(conn, token)
    if found is None:
        await auth_failed(request, "secret", token)
        raise Unauthorized("unknown key", "invalid_key")
    _remember(request, found)
    limits = _limits(request)
    await limits.hit("read_key", limits.read_key, str(found.key_id))
    return found


async def _wait_for_derivation(request: Request, site: Site) -> None:
    settings: Settings = _state(request, "settings")
    pool: asyncpg.Pool = _state(request, "pool")
    async with pool.acquire() as conn:
        request.state.freshness = await wait_for_derivation(conn, site.site_id, settings.read_wait_seconds)


async def read_site(request: Request) -> Site:
    """The site of a read (or admin) key; the request waits for the events acknowledged before it
    (bounded), so what it reads includes them."""
    site = (await secret_key(request)).site
    check_period(request, site)
    await _wait_for_derivation(request, site)
    return site


def freshness(request: Request) -> dict[str, Any] | None:
    """The answer's freshness fields (None for a call that did not go through read_site, such as
    the dashboard's own, which shows the lag in a panel of its own)."""
    fresh: Freshness | None = getattr(request.state, "freshness", None)
    return fresh.fields() if fresh else None


async def admin_site(request: Request) -> Site:
    hit = await secret_key(request)
    if hit.kind != "admin":
        raise Forbidden("this needs the site's admin key", "admin_key_required")
    await _wait_for_derivation(request, hit.site)
    return hit.site


async def root_admin(request: Request, settings: SettingsDep) -> None:
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    token = bearer_token(request)
    if not expected:
        raise Forbidden("RACETRACK_ADMIN_TOKEN is not set on the server", "admin_token_unset")
    await check_failures(request)
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        await auth_failed(request, "root", token)
        raise Unauthorized("root admin token required", "invalid_admin_token")
    request.state.key_kind = "root"


ReadSite = Annotated[Site, Depends(read_site)]
AdminSite = Annotated[Site, Depends(admin_site)]
RootAdmin = Depends(root_admin)
