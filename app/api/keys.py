"""Key rotation and revocation (admin key of the site; root has the same under /v1/sites/{id}/keys)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from app.api.audit import record
from app.api.deps import AdminSite, Conn, SettingsDep, WriteKeySites
from app.api.schemas import KeyRevoked, RotatedKeys, SiteKeys, answers
from app.config import Settings
from app.errors import NotFound
from app.store import sites as site_store

router = APIRouter(tags=["keys"])
KeyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A key's id (GET /v1/keys)", examples=[3])]


class Rotation(BaseModel):
    kinds: list[Literal["write", "read", "admin"]] = Field(
        min_length=1, max_length=3, description="Which keys to replace", examples=[["write", "read"]]
    )
    grace_seconds: int | None = Field(
        None,
        ge=0,
        le=365 * 86400,
        description="How long the old write key keeps working (default: RACETRACK_WRITE_KEY_GRACE_SECONDS); "
        "old read and admin keys stop at once",
        examples=[86400],
    )


async def rotate(
    request: Request, conn: asyncpg.Connection, settings: Settings, site_id: int, body: Rotation
) -> dict[str, Any]:
    kinds: list[str] = sorted(set(body.kinds), key=site_store.KINDS.index)
    grace = timedelta(seconds=settings.write_key_grace_seconds if body.grace_seconds is None else body.grace_seconds)
    made = await site_store.rotate_keys(conn, site_id, kinds, grace)
    _forget_write_keys(request)
    await record(conn, request, site_id, "keys.rotate", {"kinds": kinds, "write_grace_seconds": grace.total_seconds()})
    return {
        "site": site_id,
        **{f"{kind}_key": key for kind, key in made.items()},
        "keys": await site_store.list_keys(conn, site_id),
    }


def _forget_write_keys(request: Request) -> None:
    sites: WriteKeySites = request.state.write_sites
    sites.forget()  # this process at once; others within their cache time


@router.get(
    "/v1/keys",
    summary="The site's keys: id, kind, prefix, creation, expiry (never the keys)",
    responses=answers(SiteKeys),
)
async def list_keys(site: AdminSite, conn: Conn) -> dict[str, Any]:
    return {"site": site.site_id, "keys": await site_store.list_keys(conn, site.site_id)}


@router.post(
    "/v1/keys/rotate",
    summary="New keys; an old write key keeps working for a grace period, old read/admin keys stop at once",
    responses=answers(RotatedKeys),
)
async def rotate_keys(
    body: Rotation, request: Request, site: AdminSite, conn: Conn, settings: SettingsDep
) -> dict[str, Any]:
    return await rotate(request, conn, settings, site.site_id, body)


async def revoke(request: Request, conn: asyncpg.Connection, site_id: int, key_id: int) -> dict[str, Any]:
    kind = await site_store.revoke_key(conn, site_id, key_id)
    if kind is None:
        raise NotFound(f"no valid key {key_id} on this site", "key_not_found")
    _forget_write_keys(request)
    await record(conn, request, site_id, "keys.revoke", {"key_id": key_id, "kind": kind})
    return {"site": site_id, "revoked": key_id, "kind": kind}


@router.delete(
    "/v1/keys/{key_id}",
    summary="Revoke a key now (a rotated write key in its grace period too)",
    responses=answers(KeyRevoked, e404="No valid key of that id on this site (key_not_found)"),
)
async def revoke_key(key_id: KeyId, request: Request, site: AdminSite, conn: Conn) -> dict[str, Any]:
    return await revoke(request, conn, site.site_id, key_id)
