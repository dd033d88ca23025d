"""Sites and keys (root admin)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, field_validator

from app.api.deps import Conn, RootAdmin
from app.errors import NotFound
from app.store import sites as store

router = APIRouter(tags=["sites"], dependencies=[RootAdmin])


class SiteIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Shop"])
    timezone: str = Field("UTC", description="IANA time zone: the default for KPI buckets", examples=["Europe/Berlin"])
    domains: list[str] = Field(default_factory=list, description="Own hosts: referrers from them count as Direct")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class SiteCreated(BaseModel):
    id: int
    name: str
    timezone: str
    domains: list[str]
    write_key: str
    read_key: str
    admin_key: str


@router.post(
    "/v1/sites",
    status_code=201,
    response_model=SiteCreated,
    summary="Create a site; its secret read and admin keys are shown only in this answer",
)
async def create_site(body: SiteIn, conn: Conn) -> SiteCreated:
    site, keys = await store.create_site(conn, body.name, body.timezone, body.domains)
    return SiteCreated(
        id=site.site_id,
        name=site.name,
        timezone=site.timezone,
        domains=list(site.domains),
        write_key=keys.write_key,
        read_key=keys.read_key,
        admin_key=keys.admin_key,
    )


@router.get("/v1/sites", summary="All sites (no secret keys)")
async def list_sites(conn: Conn) -> list[dict[str, Any]]:
    return await store.list_sites(conn)


@router.delete("/v1/sites/{site_id}", summary="Purge a site: its events, derived data, keys and settings")
async def delete_site(
    site_id: Annotated[int, Path(description="The site to purge, with all its data", examples=[1])], conn: Conn
) -> dict[str, Any]:
    if not await store.delete_site(conn, site_id):
        raise NotFound(f"no site {site_id}", "site_not_found")
    return {"deleted": site_id}
