"""Sites and keys (root admin)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, field_validator

from app.api import keys
from app.api.audit import AuditBefore, AuditLimit, audit_page, record
from app.api.deps import Conn, RootAdmin, SettingsDep
from app.api.schemas import AuditPage, KeyRevoked, RotatedKeys, SiteDeleted, SiteKeys, SiteSummary, answers
from app.errors import NotFound
from app.store import sites as site_store

router = APIRouter(tags=["sites"], dependencies=[RootAdmin])
NO_SITE = "No such site (site_not_found)"
SiteId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A site's id", examples=[1])]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class SiteIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Shop"])
    timezone: str = Field("UTC", description="IANA time zone: the default for KPI buckets", examples=["Europe/Berlin"])
    domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        max_length=100,
        description="Own hosts: referrers from them count as Direct, and browsers on them may read the KPIs",
    )
    currency: str | None = Field(
        None, description="ISO 4217 code (e.g. EUR). When set, an order whose properties.currency is another one "
        "is stored and counted as an order, but its value is not added to revenue (Racetrack converts no "
        "currencies); /v1/quality counts such orders as other_currency_orders", examples=["EUR"],
    )  # fmt: skip

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            raise ValueError("must be a three-letter ISO 4217 code such as EUR")
        return code

    @field_validator("name")
    @classmethod
    def _name_text(cls, value: str) -> str:
        return _no_nul(value)

    @field_validator("domains")
    @classmethod
    def _domains_text(cls, value: list[str]) -> list[str]:
        return [_no_nul(domain).lower() for domain in value]

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
    currency: str | None = None
    write_key: str
    read_key: str
    admin_key: str


@router.post(
    "/v1/sites",
    status_code=201,
    response_model=SiteCreated,
    summary="Create a site; its secret read and admin keys are shown only in this answer",
)
async def create_site(body: SiteIn, request: Request, conn: Conn) -> SiteCreated:
    site, made = await site_store.create_site(conn, body.name, body.timezone, body.domains, body.currency)
    await record(conn, request, site.site_id, "site.create", {"name": site.name, "timezone": site.timezone})
    return SiteCreated(
        id=site.site_id,
        name=site.name,
        timezone=site.timezone,
        domains=list(site.domains),
        currency=body.currency,
        write_key=made.write_key,
        read_key=made.read_key,
        admin_key=made.admin_key,
    )


@router.get("/v1/sites", summary="All sites (no secret keys)", responses=answers(list[SiteSummary]))
async def list_sites(conn: Conn) -> list[dict[str, Any]]:
    return await site_store.list_sites(conn)


@router.delete(
    "/v1/sites/{site_id}",
    summary="Purge a site: its events, derived data, keys and settings",
    responses=answers(SiteDeleted, e404=NO_SITE),
)
async def delete_site(site_id: SiteId, request: Request, conn: Conn) -> dict[str, Any]:
    if not await site_store.delete_site(conn, site_id):
        raise NotFound(f"no site {site_id}", "site_not_found")
    await record(conn, request, site_id, "site.delete", {})  # outlives the purge: who purged it, when
    return {"deleted": site_id}


async def _existing(conn: Conn, site_id: int) -> None:
    if not await site_store.site_exists(conn, site_id):
        raise NotFound(f"no site {site_id}", "site_not_found")


@router.get(
    "/v1/sites/{site_id}/keys",
    summary="A site's keys (ids, kinds, prefixes, expiry)",
    responses=answers(SiteKeys, e404=NO_SITE),
)
async def site_keys(site_id: SiteId, conn: Conn) -> dict[str, Any]:
    await _existing(conn, site_id)
    return {"site": site_id, "keys": await site_store.list_keys(conn, site_id)}


@router.post(
    "/v1/sites/{site_id}/keys/rotate",
    summary="Rotate a site's keys (e.g. a lost admin key)",
    responses=answers(RotatedKeys, e404=NO_SITE),
)
async def rotate_site_keys(
    site_id: SiteId, body: keys.Rotation, request: Request, conn: Conn, settings: SettingsDep
) -> dict[str, Any]:
    await _existing(conn, site_id)
    return await keys.rotate(request, conn, settings, site_id, body)


@router.delete(
    "/v1/sites/{site_id}/keys/{key_id}",
    summary="Revoke one of a site's keys now",
    responses=answers(KeyRevoked, e404="No valid key of that id on the site (key_not_found)"),
)
async def revoke_site_key(site_id: SiteId, key_id: keys.KeyId, request: Request, conn: Conn) -> dict[str, Any]:
    return await keys.revoke(request, conn, site_id, key_id)


@router.get(
    "/v1/sites/{site_id}/audit", summary="A site's audit log (also after a purge)", responses=answers(AuditPage)
)
async def site_audit(
    site_id: SiteId, conn: Conn, limit: AuditLimit = 100, before: AuditBefore = None
) -> dict[str, Any]:
    return await audit_page(conn, site_id, limit, before)
