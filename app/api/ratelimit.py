"""Rate limits (the `limits` library, sliding window counters): per write key and per client address on
ingestion, per key on reads, and failed authentications per client address. In memory per process by
default; shared by every worker and host through Redis when RACETRACK_REDIS_URL is set.

Client addresses are never kept raw: limits count a keyed hash of the address (IPv6 by /64), logs show
it truncated (IPv4 /24, IPv6 /48)."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.requests import HTTPConnection

from app import metrics
from app.config import Settings
from app.errors import TooManyRequests

log = logging.getLogger("racetrack.security")


def truncated_address(host: str | None) -> str:
    """For logs: the client's network, never its address (IPv4 /24, IPv6 /48)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return "unknown"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@functools.lru_cache(maxsize=65536)  # the same few addresses send most requests: hash each once
def address_identity(host: str | None) -> str:
    """What limits count per client: a hash of the IPv4 address or of the IPv6 /64."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return "unknown"
    text = str(address) if address.version == 4 else str(ipaddress.ip_network(f"{address}/64", strict=False))
    return hashlib.blake2b(text.encode(), digest_size=12, key=b"racetrack-rate-limit").hexdigest()


def client_host(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        if settings.redis_url:
            url = settings.redis_url if settings.redis_url.startswith("async+") else "async+" + settings.redis_url
            storage = storage_from_string(
                url, implementation="redispy", key_prefix=settings.rate_limit_prefix, wrap_exceptions=True
            )
        else:
            storage = storage_from_string("async+memory://")
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self.ingest_key = parse_many(settings.rate_limit_ingest_key)
        self.ingest_address = parse_many(settings.rate_limit_ingest_address)
        self.read_key = parse_many(settings.rate_limit_read_key)
        self.failed_auth = parse_many(settings.rate_limit_failed_auth)

    async def hit(self, kind: str, items: Sequence[RateLimitItem], identity: str) -> None:
        """Count one request; over any of the limits: 429 with Retry-After."""
        for item in items:
            try:
                allowed = await self._limiter.hit(item, kind, identity)
            except StorageError as exc:  # Redis away: serve unlimited rather than refuse everyone
                log.warning("rate limit storage unavailable: %s", exc.storage_error)
                return
            if not allowed:
                raise await self._refusal(kind, item, identity)

    async def check(self, kind: str, items: Sequence[RateLimitItem], identity: str) -> None:
        """Refuse (429) if a limit is already used up, without counting this request."""
        for item in items:
            try:
                allowed = await self._limiter.test(item, kind, identity)
            except StorageError as exc:
                log.warning("rate limit storage unavailable: %s", exc.storage_error)
                return
            if not allowed:
                raise await self._refusal(kind, item, identity)

    async def _refusal(self, kind: str, item: RateLimitItem, identity: str) -> TooManyRequests:
        metrics.RATE_LIMITED.labels(kind).inc()
        try:
            stats = await self._limiter.get_window_stats(item, kind, identity)
            wait = math.ceil(stats.reset_time - time.time())
        except StorageError:
            wait = item.get_expiry()
        return TooManyRequests(
            f"rate limit exceeded ({item}); retry later",
            retry_after=min(max(wait, 1), item.get_expiry()),
            details=[{"field": "request", "message": f"limit {kind}: {item}"}],
        )
