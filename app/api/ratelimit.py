"""Rate limits (the `limits` library, sliding window counters): per write key and per client address on
ingestion, per key on reads, and failed authentications per client address. In memory per process by
default; shared by every worker and host through Redis when RACETRACK_REDIS_URL is set.

A process takes a limit's budget in leases of 1 % of it (LEASE_FRACTION), each spent within a tenth of
its window (LEASE_WINDOWS): one storage round trip (a Redis one, when shared) per lease instead of per
request. Nothing is admitted that was not counted; the price is that a lease a process leaves unspent
still counts, so a key spread thinly over many processes may be refused a few percent short of its
limit. Limits of fewer than 100 per window are counted request by request, exactly, in a moving
window (the sliding window counter's weighting of the previous window rounds down, which admits one
request more than a small limit across a window's edge).

Fast limits (20 or more a second: ingestion's and reads') are also paced, in each process (GCRA): a
burst of 1 % of the limit (at least 10) passes at once, and beyond it an identity's requests wait their
turn at the limit's rate, for up to one window, instead of all being admitted in the first moments of a
window and then refused. A flood from one key or address then costs the server its limit spread evenly
over the window, not in bursts at the speed of the workers; a legitimate burst is delayed, not refused.
A request waits its turn holding no database connection (see app.api.deps).

A refused request is answered late (rate_limit_hold_seconds, 1 s): a client that retries at once, as
an attacker's loop does, then costs one refusal per connection per second instead of as many as the
workers can answer. Held answers cost a timer each; past rate_limit_hold_max at once a process
answers at once.

Without Redis, each of `serve --workers N` processes counts its share of every limit (a 1/N, rounded
up): the server as a whole admits about the limit, not N times it, and a client whose connections
all land on one worker gets that worker's share.

Client addresses are never kept raw: limits count a keyed hash of the address (IPv6 by /64), logs show
it truncated (IPv4 /24, IPv6 /48)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.requests import HTTPConnection

from app import metrics
from app.config import Settings
from app.errors import TooManyRequests

log = logging.getLogger("racetrack.security")


@functools.lru_cache(maxsize=65536)  # logged once a request
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


LEASE_FRACTION = 100  # a lease is 1/100 of the limit
LEASE_WINDOWS = 10  # and is spent within 1/10 of the limit's window, or lapses
MAX_LEASES = 10_000  # beyond this many identities, lapsed leases are dropped
PACE_INTERVAL = 0.05  # limits whose turns are this close (20 or more a second) are paced
PACE_BURST = 10  # a paced limit's burst: at least this many at once (a dashboard's or BI tool's parallel reads)


def paced(item: RateLimitItem) -> bool:
    return item.get_expiry() / item.amount <= PACE_INTERVAL


def burst(item: RateLimitItem) -> int:
    """How many of a paced limit's requests pass at once: 1 % of the limit, at least 10, at most half."""
    return max(item.amount // LEASE_FRACTION, min(PACE_BURST, item.amount // 2))


def _shared(items: list[RateLimitItem], workers: int) -> list[RateLimitItem]:
    """One process's share of limits that `workers` processes count apart (in memory)."""
    if workers <= 1:
        return items
    return [type(i)(math.ceil(i.amount / workers), i.multiples, i.namespace) for i in items]


@dataclass(slots=True)
class _Lease:
    left: int
    until: float  # time.monotonic()


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
        self._counter = SlidingWindowCounterRateLimiter(storage)
        self._exact = MovingWindowRateLimiter(storage)
        share = 1 if settings.redis_url else settings.workers
        self.ingest_key = _shared(parse_many(settings.rate_limit_ingest_key), share)
        self.ingest_address = _shared(parse_many(settings.rate_limit_ingest_address), share)
        self.read_key = _shared(parse_many(settings.rate_limit_read_key), share)
        self.failed_auth = _shared(parse_many(settings.rate_limit_failed_auth), share)
        self._leases: dict[tuple[str, str, RateLimitItem], _Lease] = {}
        self.hold_seconds = settings.rate_limit_hold_seconds
        self.hold_max = settings.rate_limit_hold_max
        self.held = 0  # refusals waiting now
        self._due: dict[tuple[str, str, RateLimitItem], float] = {}  # paced: each identity's next turn
        self.paced = 0  # requests waiting their turn now (at most rate_limit_hold_max)
        self._sleep = asyncio.sleep

    async def _hold(self) -> None:
        if self.hold_seconds <= 0 or self.held >= self.hold_max:
            return
        self.held += 1
        metrics.RATE_LIMIT_HELD.inc()
        try:
            await asyncio.sleep(self.hold_seconds)
        finally:
            self.held -= 1

    def _limiter(self, item: RateLimitItem) -> MovingWindowRateLimiter | SlidingWindowCounterRateLimiter:
        return self._exact if item.amount < LEASE_FRACTION else self._counter

    async def _pace(self, kind: str, item: RateLimitItem, identity: str) -> None:
        """Wait this identity's turn (GCRA's theoretical arrival time); 429 if the turn is more than a
        window away or too many requests wait already. Turns come at the limit's rate less the burst
        (a burst of 10 at 50/second, then one each 1/40 s), so that a window never holds more than the
        limit and the count itself never refuses a request that waited its turn."""
        now = time.monotonic()
        key = (kind, identity, item)
        allowance = burst(item)
        interval = item.get_expiry() / (item.amount - allowance)
        due = max(self._due.get(key, now), now)
        wait = due - now - interval * (allowance - 1)  # the burst passes at once
        if wait > 0 and (wait > item.get_expiry() or self.paced >= self.hold_max):
            raise await self._refusal(kind, item, identity)
        if len(self._due) >= MAX_LEASES and key not in self._due:
            self._due = {k: v for k, v in self._due.items() if v > now}
        self._due[key] = due + interval
        if wait > 0:
            self.paced += 1
            metrics.RATE_LIMIT_PACED.inc()
            try:
                await self._sleep(wait)
            finally:
                self.paced -= 1

    async def hit(self, kind: str, items: Sequence[RateLimitItem], identity: str) -> None:
        """Wait its turn (paced limits), then count one request; over any of the limits: 429 with
        Retry-After."""
        for item in items:
            if paced(item):
                await self._pace(kind, item, identity)
        now = time.monotonic()
        for item in items:
            lease = self._leases.get((kind, identity, item))
            if lease is not None and lease.left and now < lease.until:
                lease.left -= 1
                continue
            size = item.amount // LEASE_FRACTION or 1
            try:
                allowed = await self._limiter(item).hit(item, kind, identity, cost=size)
                if not allowed and size > 1:  # near the limit: what is left, one request at a time
                    size, allowed = 1, await self._limiter(item).hit(item, kind, identity)
            except StorageError as exc:  # Redis away: serve unlimited rather than refuse everyone
                log.warning("rate limit storage unavailable: %s", exc.storage_error)
                return
            if not allowed:
                raise await self._refusal(kind, item, identity)
            if size > 1:
                self._lease(kind, identity, item, size - 1, now)

    def _lease(self, kind: str, identity: str, item: RateLimitItem, left: int, now: float) -> None:
        if len(self._leases) >= MAX_LEASES:
            live = {k: v for k, v in self._leases.items() if now < v.until}
            self._leases = live if len(live) < MAX_LEASES else {}  # a dropped lease only counts unspent
        self._leases[(kind, identity, item)] = _Lease(left, now + item.get_expiry() / LEASE_WINDOWS)

    async def check(self, kind: str, items: Sequence[RateLimitItem], identity: str) -> None:
        """Refuse (429) if a limit is already used up, without counting this request."""
        for item in items:
            try:
                allowed = await self._limiter(item).test(item, kind, identity)
            except StorageError as exc:
                log.warning("rate limit storage unavailable: %s", exc.storage_error)
                return
            if not allowed:
                raise await self._refusal(kind, item, identity)

    async def _refusal(self, kind: str, item: RateLimitItem, identity: str) -> TooManyRequests:
        metrics.RATE_LIMITED.labels(kind).inc()
        try:
            stats = await self._limiter(item).get_window_stats(item, kind, identity)
            wait = math.ceil(stats.reset_time - time.time())
        except StorageError:
            wait = item.get_expiry()
        return TooManyRequests(
            f"rate limit exceeded ({item}); retry later",
            retry_after=min(max(wait, 1), item.get_expiry()),
            details=[{"field": "request", "message": f"limit {kind}: {item}"}],
            hold=self._hold,
        )
