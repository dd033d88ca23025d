"""Liveness, readiness (the database answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app import metrics as app_metrics
from app.api.deps import Pool
from app.api.schemas import Health, answers
from app.errors import error_response
from app.jsonresponse import JSONAnswer
from app.store.database import ping

router = APIRouter(tags=["operations"])
log = logging.getLogger("racetrack.health")


@router.get("/healthz", summary="Liveness: the process answers", responses=answers(Health))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable",
    responses=answers(Health, e503="The database does not answer within 2 s (database_unavailable)"),
)
async def readyz(pool: Pool) -> JSONAnswer:
    try:
        async with asyncio.timeout(2):
            async with pool.acquire() as conn:
                await ping(conn)
    except Exception:
        return error_response(503, "database_unavailable", "database not reachable", headers={"Retry-After": "5"})
    return JSONAnswer({"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"description": "The text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def metrics(pool: Pool) -> Response:
    app_metrics.POOL_SIZE.set(pool.get_size())
    app_metrics.POOL_IN_USE.set(pool.get_size() - pool.get_idle_size())
    return Response(app_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
