"""create_app(settings): the FastAPI app; the lifespan owns the pools, the pipeline (writer, deriver,
jobs) and the caches."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api import (
    audit,
    failed,
    health,
    ingest,
    keys,
    kpis,
    openapi_security,
    persons,
    racejs,
    reports,
    rules,
    sites,
    targets,
    trackers,
)
from app.api.cors import CORSByPath, SiteDomains
from app.api.deps import WriteKeySites
from app.api.edge import Edge
from app.api.freshness import FreshnessHeaders
from app.api.ingest import IngestLane
from app.api.observe import Observe, configure_logging
from app.api.ratelimit import RateLimits
from app.config import Settings
from app.dashboard import views as dashboard
from app.errors import add_error_handlers
from app.jsonresponse import JSONAnswer
from app.pipeline.derive import Deriver
from app.pipeline.ingest import Writer
from app.pipeline.jobs import JobRunner
from app.pipeline.partitions import rotate_partitions
from app.pipeline.rulesets import RulesetCache
from app.runtime import tune_gc
from app.store.database import create_pool, start_embedded

log = logging.getLogger("racetrack")
WRITER_CONNECTIONS = 2  # one flush at a time, and one spare while a connection is replaced
BACKGROUND_CONNECTIONS = 4  # reclassification jobs and the rollup refresher: no statement timeout

DESCRIPTION = """Racetrack turns a website's tracking events into the RACE funnel (Reach, Act, Convert, Engage).

Ingestion speaks Segment's HTTP API (write key by Basic auth, `writeKey` in the body or `?writeKey=`).
KPI endpoints take the site's read key as `Authorization: Bearer <key>`. Errors are JSON
`{"code", "message", "details"}`."""


class Racetrack(FastAPI):
    """FastAPI, with the ingestion lane (app.api.ingest.IngestLane) ahead of its middleware stack."""

    lane: IngestLane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.lane.handler(scope)
        if handler is None:
            await super().__call__(scope, receive, send)
        else:
            await self.lane.serve(handler, scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        url = settings.database_url or start_embedded(settings.data_dir)
        # Requests run every statement under a timeout (bounded work); background work has its own pool.
        timeout = {"statement_timeout": str(settings.read_statement_timeout_ms)}
        pool = await create_pool(url, settings.pool_min_size, settings.pool_max_size, server_settings=timeout)
        background = await create_pool(url, 1, BACKGROUND_CONNECTIONS)
        # The writer has connections of its own: dashboards polling KPIs never make ingestion wait.
        write_pool = await create_pool(url, 1, WRITER_CONNECTIONS)
        rulesets = RulesetCache()
        jobs = JobRunner(background, rulesets)
        deriver = Deriver(background, rulesets, settings.derive_batch,
                          settings.derive_idle_seconds, settings.derive_gather_seconds)  # fmt: skip
        async with background.acquire() as conn:
            await rotate_partitions(conn)
        if settings.deriver:
            deriver.start()
        try:
            async with Writer.running(write_pool, settings, deriver.wake) as writer:
                await jobs.resume_unfinished()
                tune_gc(settings.gc_threshold)
                yield {
                    "pool": pool,
                    "writer": writer,
                    "rulesets": rulesets,
                    "settings": settings,
                    "write_sites": WriteKeySites(),
                    "limits": RateLimits(settings),
                    "site_domains_all": SiteDomains(),
                    "jobs": jobs,
                }
        finally:  # the writer has drained (every request answered); then the batch under way
            await deriver.close()
            await jobs.close()
            await write_pool.close()
            await background.close()
            await pool.close()

    app = Racetrack(
        title="Racetrack",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONAnswer,
        docs_url=None,  # served by the dashboard with local Swagger UI assets (no CDN)
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks look up the global providers on every request (4 % of a
        # single-event request): on only when asked for; /metrics is the service's own telemetry
        telemetry={
            "tracing": settings.opentelemetry, "metrics": settings.opentelemetry, "logs": settings.opentelemetry
        },
    )
    app.lane = IngestLane(settings)
    add_error_handlers(app)
    openapi_security.install(app)
    for router in (
        ingest.router,
        trackers.router,
        kpis.router,
        persons.router,  # before reports: its /v1/persons/{id:path} would take .../export
        reports.router,
        rules.router,
        targets.router,
        failed.router,
        sites.router,
        keys.router,
        audit.router,
        health.router,
        racejs.router,
    ):
        app.include_router(router)
    dashboard.install(app)
    app.add_middleware(FreshnessHeaders)
    app.add_middleware(Edge, settings=settings)  # inside CORS: its refusals carry CORS headers
    app.add_middleware(CORSByPath)
    app.add_middleware(Observe, access_log=settings.access_log)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (each worker process builds its own app)."""
    return create_app(Settings())
