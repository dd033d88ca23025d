"""The audit log over HTTP: record() for every admin and root action, GET /v1/audit to read it."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request

from app.api.deps import AdminSite, Conn
from app.api.schemas import AuditPage, answers
from app.store import audit as audit_store

router = APIRouter(tags=["audit"])


async def record(
    conn: asyncpg.Connection, request: Request, site_id: int, action: str, summary: dict[str, Any] | None = None
) -> None:
    """Who acted (the admin key's id, or the root token), on which site, what; never a key itself."""
    actor = getattr(request.state, "key_kind", None) or "unknown"
    key_id = getattr(request.state, "key_id", None) if actor != "root" else None
    await audit_store.insert_audit(conn, site_id, actor, key_id, action, summary or {})


AuditLimit = Annotated[int, Query(ge=1, le=1000, description="Entries per page, newest first", examples=[100])]
AuditBefore = Annotated[
    int | None,
    Query(ge=1, le=2**63 - 1, description="Only entries older than this id (the next page)", examples=[250]),
]


async def audit_page(conn: asyncpg.Connection, site_id: int, limit: int, before: int | None) -> dict[str, Any]:
    entries = await audit_store.list_audit(conn, site_id, limit, before)
    return {"site": site_id, "entries": entries, "next_before": entries[-1]["id"] if len(entries) == limit else None}


@router.get(
    "/v1/audit",
    summary="The site's audit log: every admin and root action, newest first",
    responses=answers(AuditPage),
)
async def get_audit(site: AdminSite, conn: Conn, limit: AuditLimit = 100, before: AuditBefore = None) -> dict[str, Any]:
    return await audit_page(conn, site.site_id, limit, before)
