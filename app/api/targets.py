"""Plan targets (RACE's Plan step): a value per KPI and calendar month, shown beside actuals."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator

from app.api.audit import record
from app.api.deps import AdminSite, Conn
from app.api.schemas import Targets, TargetsUpdated, answers
from app.domain.kpis import REGISTRY
from app.domain.plan import direction
from app.store import targets as targets_store

router = APIRouter(tags=["plan"])
MONTH_PATTERN = r"^(19|20|21)\d\d-(0[1-9]|1[0-2])$"  # 1900-01 .. 2199-12


class Target(BaseModel):
    kpi: str = Field(description="A KPI name of /v1/kpis", examples=["revenue"])
    month: str = Field(pattern=MONTH_PATTERN, description="Calendar month YYYY-MM", examples=["2026-03"])
    value: float = Field(description="The planned value (finite)", examples=[25000], allow_inf_nan=False)

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, value: str) -> str:
        if value not in REGISTRY.names():
            raise ValueError(f"unknown KPI {value!r}")
        return value


class TargetsIn(BaseModel):
    targets: list[Target] = Field(min_length=1, max_length=5000)


def month_start(month: str) -> date:
    year, number = month.split("-")
    return date(int(year), int(number), 1)


@router.put("/v1/targets", summary="Set targets (upsert per KPI and month)", responses=answers(TargetsUpdated))
async def put_targets(body: TargetsIn, request: Request, site: AdminSite, conn: Conn) -> dict[str, Any]:
    rows = [(t.kpi, month_start(t.month), t.value) for t in body.targets]
    await targets_store.upsert_targets(conn, site.site_id, rows)
    months = sorted({t.month for t in body.targets})
    summary = {"targets": len(body.targets), "kpis": sorted({t.kpi for t in body.targets}), "months": months}
    await record(conn, request, site.site_id, "targets.put", summary)
    return {"updated": len(body.targets)}


@router.get(
    "/v1/targets",
    summary="Targets between two months (inclusive), each with its KPI's direction (higher or lower is better)",
    responses=answers(Targets),
)
async def get_targets(
    site: AdminSite,
    conn: Conn,
    start: Annotated[
        str, Query(alias="from", pattern=MONTH_PATTERN, description="First month (YYYY-MM)", examples=["2026-01"])
    ] = "2000-01",
    end: Annotated[
        str,
        Query(alias="to", pattern=MONTH_PATTERN, description="Last month, included (YYYY-MM)", examples=["2026-12"]),
    ] = "2199-12",
) -> dict[str, Any]:
    found = await targets_store.targets_between(conn, site.site_id, month_start(start), month_start(end))
    return {
        "targets": [
            {"kpi": k, "month": m.strftime("%Y-%m"), "value": v, "direction": direction(k).value}
            for (k, m), v in found.items()
        ]
    }
