"""Background reclassification jobs: day by day, one transaction per day (owned by
`_reclassify_day`, under the site's derivation lock), resumable.

A running job holds a session advisory lock; if its process dies the lock goes with the connection,
and the next process to start resumes the job from its last committed day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app.domain.kpis import Granularity, buckets
from app.pipeline import derive
from app.pipeline.rulesets import RulesetCache
from app.store import jobs as job_store
from app.store import locks as job_locks

log = logging.getLogger("racetrack.jobs")
MAX_JOBS_PER_PROCESS = 2  # each running job holds one pool connection


def _days(params: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    start, end = datetime.fromisoformat(params["from"]), datetime.fromisoformat(params["to"])
    return [(b.start, b.end) for b in buckets(start, end, Granularity.DAY, ZoneInfo(params["tz"]))]


class JobRunner:
    def __init__(self, pool: asyncpg.Pool, rulesets: RulesetCache) -> None:
        self._pool = pool
        self._rulesets = rulesets
        self._tasks: set[asyncio.Task[None]] = set()
        self._semaphore = asyncio.Semaphore(MAX_JOBS_PER_PROCESS)

    async def start_reclassify(self, site_id: int, start: datetime, end: datetime, tz: str) -> dict[str, Any]:
        params = {"from": start.isoformat(), "to": end.isoformat(), "tz": tz}
        async with self._pool.acquire() as conn:
            job = await job_store.create_job(conn, site_id, "reclassify", params, len(_days(params)))
        self._spawn(job)
        return job

    async def resume_unfinished(self) -> None:
        async with self._pool.acquire() as conn:
            for job in await job_store.unfinished_jobs(conn):
                self._spawn(job)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, job: dict[str, Any]) -> None:
        task = asyncio.create_task(self._run(job["site_id"], job["job_id"]), name=f"job-{job['job_id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, site_id: int, job_id: int) -> None:
        # The connection that holds the job's lock does all of the job's work: a job never waits
        # for a second connection (several jobs could otherwise hold the whole pool), and if that
        # connection dies the lock and the work stop together.
        async with self._semaphore, self._pool.acquire() as conn:
            if not await job_locks.try_lock_job(conn, site_id, job_id):
                return  # another process is running it
            try:
                await self._run_locked(conn, site_id, job_id)
            finally:
                await job_locks.unlock_job(conn, site_id, job_id)

    async def _reclassify_day(
        self, conn: asyncpg.Connection, site_id: int, job_id: int, index: int, day: tuple[datetime, datetime]
    ) -> None:
        async with conn.transaction():
            ruleset_for = await self._rulesets.resolver(conn, site_id)
            await derive.reclassify_between(conn, site_id, *day, ruleset_for)
            await job_store.advance_job(conn, site_id, job_id, index + 1)

    async def _run_locked(self, conn: asyncpg.Connection, site_id: int, job_id: int) -> None:
        job = await job_store.get_job(conn, site_id, job_id)
        if job is None or job["status"] not in ("queued", "running"):
            return
        try:
            days = _days(job["params"])
            for index in range(job["done"], len(days)):
                await self._reclassify_day(conn, site_id, job_id, index, days[index])
            await job_store.finish_job(conn, site_id, job_id, "done")
        except asyncio.CancelledError:
            raise  # shutting down: the job stays 'running' and is resumed by the next process
        except Exception as exc:
            log.exception("job %s of site %s failed", job_id, site_id)
            await job_store.finish_job(conn, site_id, job_id, "failed", f"{type(exc).__name__}: {exc}")
