"""How fresh a read is: every read waits (bounded) for the derivation of the events acknowledged
before it arrived, then says how far behind the derived data is (DESIGN §1). Reads never write."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.store import inbox

POLL_SECONDS = 0.02
LAG_HEADER = "X-Racetrack-Lag-Seconds"
THROUGH_HEADER = "X-Racetrack-Derived-Through"


@dataclass(frozen=True, slots=True)
class Freshness:
    derived_through: datetime  # every event received before this is derived
    lag_seconds: float  # now - derived_through: 0 when nothing waits
    complete: bool  # every event acknowledged before the read arrived is in the answer

    def fields(self) -> dict[str, Any]:
        return {"derived_through": self.derived_through.isoformat(), "lag_seconds": round(self.lag_seconds, 3),
                "complete": self.complete}  # fmt: skip


async def wait_for_derivation(conn: asyncpg.Connection, site_id: int, wait_seconds: float) -> Freshness:
    """Wait up to wait_seconds until the site's inbox holds nothing acknowledged before now. When
    nothing waits (the usual read), one query."""
    target, oldest, last = await inbox.read_state(conn, site_id)
    complete = oldest is None
    if not complete:
        deadline = time.monotonic() + wait_seconds
        while not (complete := not await inbox.pending_through(conn, site_id, target)):  # type: ignore[arg-type]
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        oldest = await inbox.oldest_received(conn, site_id)
        if oldest is None:
            last = await inbox.last_derived(conn, site_id)
    now = datetime.now(UTC)
    if oldest is not None:
        return Freshness(oldest, max(0.0, (now - oldest).total_seconds()), complete)
    # nothing waits: everything received is derived; the site's last derivation keeps answers (and
    # their ETags) the same until new data arrives
    return Freshness(last or now, 0.0, True)


class FreshnessHeaders:
    """Adds the freshness of a read (set by the read-key dependency) to its answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            fresh = scope.get("state", {}).get("freshness")
            if message["type"] == "http.response.start" and fresh is not None:
                headers = MutableHeaders(scope=message)
                headers[LAG_HEADER] = f"{fresh.lag_seconds:.3f}"
                headers[THROUGH_HEADER] = fresh.derived_through.isoformat()
            await send(message)

        await self.app(scope, receive, sending)
