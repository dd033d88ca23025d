"""The ingest writer: requests wait here until *their* events are durably stored (DESIGN §1).

Group commit: the submissions that arrive while a flush is under way are written together by the
next one (flush_max_wait_ms > 0 also waits that long to gather more), per site in one
transaction owned by `Writer._write_site`: a single statement (app.store.inbox.store_flush) that
claims the messageIds (the dedupe ledger), appends the fresh events to the inbox, keeps the
rejected messages and adds to the counters, in one round trip. No person locks, no derivation, no
triggers: derivation runs behind (app.pipeline.derive). A submission's future resolves only after
COMMIT; if the transaction fails it fails too (-> 503).
A site whose backlog of underived events passes max_backlog is answered 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from app import metrics
from app.config import Settings
from app.domain.normalize import IncomingEvent, Rejection
from app.errors import DATABASE_DOWN, RacetrackError, Unauthorized, Unavailable
from app.store import events as event_store
from app.store import inbox, tables
from app.store import sites as site_store

log = logging.getLogger("racetrack.writer")
BACKLOG_CHECK_SECONDS = 1.0


def _fail(submissions: Sequence[_Submission], error: Exception) -> None:
    for s in submissions:
        if not s.done.done():
            s.done.set_exception(error)


async def append(
    conn: asyncpg.Connection, site_id: int, events: Sequence[IncomingEvent], table: str = tables.inbox.name
) -> list[IncomingEvent]:
    """Claim these events' messageIds and append the fresh ones to the inbox (or a staging table),
    in the caller's transaction; the fresh ones (the others were stored before). Into the inbox, the
    site row is locked first, as a flush does (app.store.inbox.advance_scan_from relies on it)."""
    if table == tables.inbox.name and not await site_store.lock_site_against_purge(conn, site_id):
        return []
    claimed = await event_store.claim_message_ids(conn, site_id, [e.message_id for e in events])
    fresh = [e for e in events if e.message_id in claimed]
    await inbox.append(conn, site_id, fresh, table)
    return fresh


class SiteGone(Exception):
    """The site was deleted after its write key was cached."""


@dataclass(frozen=True, slots=True)
class Written:
    accepted: int
    duplicates: int


@dataclass(slots=True)
class _Submission:
    site_id: int
    events: Sequence[IncomingEvent]
    failures: Sequence[tuple[Rejection, str]]
    done: asyncio.Future[Written] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Writer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, on_commit: Callable[[], None] = lambda: None) -> None:
        self._pool = pool
        self._settings = settings
        self._on_commit = on_commit  # e.g. wake this process's deriver
        self._backlogs: dict[int, tuple[float, int]] = {}  # site -> (checked at, waiting events)
        self._shard = random.randrange(32_767)  # this writer's ingest_counter rows
        self._queue: list[_Submission] = []
        self._pending_events = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    @asynccontextmanager
    async def running(
        cls, pool: asyncpg.Pool, settings: Settings, on_commit: Callable[[], None] = lambda: None
    ) -> AsyncIterator[Writer]:
        writer = cls(pool, settings, on_commit)
        writer._task = asyncio.create_task(writer._run(), name="racetrack-writer")
        try:
            yield writer
        finally:
            await writer.drain()

    async def submit(
        self, site_id: int, events: Sequence[IncomingEvent], failures: Sequence[tuple[Rejection, str]] = ()
    ) -> Written:
        if self._closing:
            raise Unavailable("shutting down, retry later", "shutting_down", self._settings.retry_after_seconds)
        if self._pending_events + len(events) > self._settings.writer_max_pending:
            raise Unavailable("writer saturated, retry later", "writer_saturated", self._settings.retry_after_seconds)
        if events and await self._backlog(site_id) >= self._settings.max_backlog:
            raise Unavailable("derivation is behind, retry later", "backlog_full", self._settings.retry_after_seconds)
        submission = _Submission(site_id, events, failures)
        self._queue.append(submission)
        self._pending_events += len(events)
        if self._pending_events >= self._settings.flush_max_events or len(self._queue) == 1:
            self._wakeup.set()
        return await asyncio.shield(submission.done)

    async def _backlog(self, site_id: int) -> int:
        """The site's underived events, re-counted at most once a second (up to max_backlog)."""
        checked = self._backlogs.get(site_id)
        now = time.monotonic()
        if checked is None or now - checked[0] > BACKLOG_CHECK_SECONDS:
            self._backlogs[site_id] = (now, checked[1] if checked else 0)  # one check at a time
            async with self._pool.acquire() as conn:
                waiting = await inbox.backlog(conn, site_id, self._settings.max_backlog)
            checked = self._backlogs[site_id] = (time.monotonic(), waiting)
        return checked[1]

    async def drain(self) -> None:
        """Write what is queued, then stop (SIGTERM path)."""
        self._closing = True
        self._wakeup.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        wait = self._settings.flush_max_wait_ms / 1000
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if wait and not self._closing and self._pending_events < self._settings.flush_max_events:
                await asyncio.sleep(wait)  # gather concurrent requests into this flush
            batch, self._queue = self._queue, []
            self._pending_events -= sum(len(s.events) for s in batch)
            metrics.QUEUE_DEPTH.set(self._pending_events)
            if batch:
                try:
                    await self._flush(batch)
                except Exception:  # never let the writer task die: fail what is unanswered, go on
                    log.exception("writer flush failed")
                    _fail(batch, RacetrackError("events not stored; retry later", "internal_error"))
            if self._closing and not self._queue:
                return
            if self._queue:
                self._wakeup.set()

    async def _flush(self, batch: list[_Submission]) -> None:
        by_site: dict[int, list[_Submission]] = {}
        for submission in batch:
            by_site.setdefault(submission.site_id, []).append(submission)
        for site_id, submissions in by_site.items():
            await self._flush_site(site_id, submissions)

    async def _flush_site(self, site_id: int, submissions: list[_Submission]) -> None:
        try:
            with metrics.FLUSH_SECONDS.time():
                stored = await self._write_site(site_id, submissions)
        except SiteGone:
            _fail(submissions, Unauthorized("unknown write key", "invalid_write_key"))
            return
        except DATABASE_DOWN as exc:
            log.warning("flush for site %s failed, database unavailable: %s", site_id, exc)
            _fail(submissions, Unavailable("events not stored, retry later", "database_unavailable",
                                           self._settings.retry_after_seconds))  # fmt: skip
            return
        except Exception:
            if len(submissions) > 1:  # one request's data must not cost the others: write them apart
                for submission in submissions:
                    await self._flush_site(site_id, [submission])
                return
            log.exception("storing a request's events failed (site %s)", site_id)
            _fail(submissions, RacetrackError("events not stored; this request failed", "internal_error"))
            return
        metrics.FLUSH_EVENTS.observe(sum(len(s.events) for s in submissions))
        for s in submissions:
            accepted = len({e.message_id for e in s.events if stored.get(e.message_id) is s})
            metrics.EVENTS.labels("accepted").inc(accepted)
            metrics.EVENTS.labels("duplicate").inc(len(s.events) - accepted)
            for rejection, _ in s.failures:
                metrics.EVENTS.labels("rejected").inc()
                metrics.REJECTED.labels(rejection.code).inc()
            if not s.done.done():
                s.done.set_result(Written(accepted, len(s.events) - accepted))

    async def _write_site(self, site_id: int, submissions: list[_Submission]) -> dict[str, _Submission]:
        owner: dict[str, _Submission] = {}
        unique: list[IncomingEvent] = []
        for s in submissions:
            for e in s.events:
                if e.message_id not in owner:  # within a flush, the first copy wins
                    owner[e.message_id] = s
                    unique.append(e)
        failures = [f for s in submissions for f in s.failures]
        copies = sum(len(s.events) for s in submissions)
        async with self._pool.acquire() as conn:  # one statement: its own transaction
            fresh = await inbox.store_flush(conn, site_id, unique, failures, copies, self._shard, datetime.now(UTC))
        if fresh is None:
            raise SiteGone(site_id)
        if fresh:
            self._on_commit()
        return {message_id: owner[message_id] for message_id in fresh}
