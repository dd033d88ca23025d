"""KPI and funnel endpoints for BI tools (DESIGN §5-§6): JSON or CSV, explicit tz and granularity."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import Conn, ReadSite
from app.domain.kpis import KPI_NAMES, Bucket, Granularity, buckets, funnel_steps, kpis_of, parse_bound
from app.errors import BadRequest
from app.jsonresponse import JSONAnswer
from app.store import kpi_queries
from app.store import targets as targets_store
from app.store.kpi_queries import BREAKDOWNS
from app.store.sites import Site

router = APIRouter(tags=["kpis"])
MAX_BUCKETS = 1100

From = Annotated[
    str,
    Query(
        alias="from", description="Start: YYYY-MM-DD (local midnight in tz) or ISO timestamp", examples=["2026-03-01"]
    ),
]
To = Annotated[
    str, Query(alias="to", description="End, exclusive: YYYY-MM-DD or ISO timestamp", examples=["2026-04-01"])
]
Tz = Annotated[
    str | None,
    Query(description="IANA time zone for buckets and dates (default: the site's)", examples=["Europe/Berlin"]),
]
Format = Annotated[Literal["json", "csv"] | None, Query(description="json (default) or csv; or Accept: text/csv")]
Breakdown = Annotated[
    Literal["channel", "peso", "source", "medium", "campaign", "device"] | None,
    Query(
        description="Split every KPI by the session's channel, PESO group, campaign "
        "source / medium / name, or device type"
    ),
]


def _zone(tz: str | None, site: Site) -> ZoneInfo:
    name = tz or site.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown time zone {name!r}",
            "invalid_parameter",
            [{"field": "tz", "message": "must be an IANA time zone name"}],
        ) from None


def _period(start: str, end: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    bounds = []
    for name, value in (("from", start), ("to", end)):
        try:
            bounds.append(parse_bound(value, zone))
        except ValueError:
            raise BadRequest(
                f"{name} must be YYYY-MM-DD or an ISO timestamp",
                "invalid_parameter",
                [{"field": name, "message": f"cannot parse {value!r}"}],
            ) from None
    if bounds[0] >= bounds[1]:
        raise BadRequest(
            "from must be before to", "invalid_parameter", [{"field": "to", "message": "must be after from"}]
        )
    return bounds[0], bounds[1]


def _wants_csv(request: Request, fmt: str | None) -> bool:
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))


def _csv(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/v1/kpis", summary="Every RACE KPI per bucket (and breakdown group)")
async def kpis(
    request: Request,
    site: ReadSite,
    conn: Conn,
    start: From,
    end: To,
    tz: Tz = None,
    granularity: Granularity = Granularity.DAY,
    breakdown: Breakdown = None,
    format: Format = None,
) -> Response:
    zone = _zone(tz, site)
    period = _period(start, end, zone)
    bucket_list = buckets(*period, granularity, zone)
    if len(bucket_list) > MAX_BUCKETS:
        raise BadRequest(
            f"too many buckets ({len(bucket_list)} > {MAX_BUCKETS}); use a coarser granularity",
            "too_many_buckets",
            [{"field": "granularity", "message": "too fine for this period"}],
        )
    assert breakdown is None or breakdown in BREAKDOWNS
    q = kpi_queries.Query(site.site_id, *period, zone.key, granularity, breakdown)
    counts = await kpi_queries.kpi_counts(conn, q, bucket_list)
    groups = sorted({grp for _, grp in counts}) if breakdown else [""]
    rows = [_bucket_row(b, grp, counts, breakdown is not None) for b in bucket_list for grp in groups]
    planned: list[str] = []
    if granularity is Granularity.MONTH:
        planned = await _add_targets(conn, site, bucket_list, rows, zone)
    if _wants_csv(request, format):
        flat = [_flat(r) for r in rows]
        plan_columns = [f"{k}_{part}" for k in planned for part in ("target", "attainment")]
        return _csv(flat, ["start", "end", "group", *KPI_NAMES, *plan_columns], "kpis.csv")
    return JSONAnswer(
        {
            "site": site.site_id,
            "from": period[0].isoformat(),
            "to": period[1].isoformat(),
            "granularity": granularity.value,
            "tz": zone.key,
            "breakdown": breakdown,
            "buckets": rows,
        }
    )


async def _add_targets(
    conn: Any, site: Site, bucket_list: list[Bucket], rows: list[dict[str, Any]], zone: ZoneInfo
) -> list[str]:
    """Month buckets carry {kpi: {"target", "attainment"}} for the KPIs that have a target."""
    months = [b.aligned.astimezone(zone).date() for b in bucket_list]
    found = await targets_store.targets_between(conn, site.site_id, months[0], months[-1])
    for row in rows:
        month = datetime.fromisoformat(row["start"]).date().replace(day=1)
        row["targets"] = {
            kpi: {"target": value, "attainment": _attainment(row["kpis"].get(kpi), value)}
            for (kpi, target_month), value in found.items()
            if target_month == month
        }
    return sorted({kpi for kpi, _ in found})


def _attainment(actual: Any, target: float) -> float | None:
    return None if actual is None or target == 0 else actual / target


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat = {"start": row["start"], "end": row["end"], "group": row["group"], **row["kpis"]}
    for kpi, plan in row.get("targets", {}).items():
        flat[f"{kpi}_target"], flat[f"{kpi}_attainment"] = plan["target"], plan["attainment"]
    return flat


def _bucket_row(b: Bucket, grp: str, counts: dict[tuple[datetime, str], Any], grouped: bool) -> dict[str, Any]:
    from app.domain.kpis import Counts

    found = counts.get((b.aligned, grp)) or Counts()
    return {
        "start": b.start.isoformat(),
        "end": b.end.isoformat(),
        "group": grp if grouped else None,
        "kpis": kpis_of(found),
    }


@router.get("/v1/funnel", summary="The RACE funnel over a period: persons reaching each stage")
async def funnel(
    request: Request, site: ReadSite, conn: Conn, start: From, end: To, tz: Tz = None, format: Format = None
) -> Response:
    zone = _zone(tz, site)
    period = _period(start, end, zone)
    found = await kpi_queries.funnel_counts(conn, site.site_id, *period)
    steps = [
        {"stage": s.pop("label"), **s}
        for s in funnel_steps([(k, found[k]) for k in ("reach", "act", "convert", "engage")])
    ]
    if _wants_csv(request, format):
        return _csv(steps, ["stage", "persons", "rate_from_previous", "rate_from_top"], "funnel.csv")
    return JSONAnswer(
        {
            "site": site.site_id,
            "from": period[0].isoformat(),
            "to": period[1].isoformat(),
            "tz": zone.key,
            "steps": steps,
        }
    )
