"""Query parameters and answers shared by every read endpoint: period, time zone, buckets, CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Query, Request
from fastapi.responses import Response

from app.domain.kpis import Bucket, Granularity, buckets, parse_bound
from app.errors import BadRequest
from app.store import kpi_queries
from app.store.sites import Site

MAX_BUCKETS = 1100
MAX_PERIOD_DAYS = 3700  # Settings.max_period_days
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

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
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="json (default) or csv; or send Accept: text/csv", examples=["csv"]),
]
Limit = Annotated[
    int | None,
    Query(
        ge=1,
        le=100,
        description="With a breakdown: keep the groups with the most sessions in the period, "
        "and count every other one as '(other)'",
        examples=[5],
    ),
]
GranularityParam = Annotated[
    Granularity,
    Query(description="Bucket size: day, week (ISO, Monday), month, or one total bucket", examples=["week"]),
]
Breakdown = Annotated[
    Literal["channel", "peso", "source", "medium", "campaign", "device"] | None,
    Query(
        description="Split every KPI by the session's channel, PESO group, campaign "
        "source / medium / name, or device type",
        examples=["channel"],
    ),
]


def zone_of(tz: str | None, site: Site) -> ZoneInfo:
    name = tz or site.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown time zone {name!r}",
            "invalid_parameter",
            [{"field": "tz", "message": "must be an IANA time zone name"}],
        ) from None


def max_period_days(request: Request) -> int:
    settings = getattr(request.state, "settings", None)
    return int(settings.max_period_days) if settings else MAX_PERIOD_DAYS


def period_of(start: str, end: str, zone: ZoneInfo, max_days: int = MAX_PERIOD_DAYS) -> tuple[datetime, datetime]:
    """The period [from, to), checked before any work: both bounds in 1970..2100, at most max_days long."""
    bounds = []
    for name, value in (("from", start), ("to", end)):
        try:
            bound = parse_bound(value, zone)
            inside = EARLIEST <= bound <= LATEST
        except (ValueError, OverflowError):
            raise BadRequest(
                f"{name} must be YYYY-MM-DD or an ISO timestamp",
                "invalid_parameter",
                [{"field": name, "message": f"cannot parse {value[:40]!r}"}],
            ) from None
        if not inside:
            raise BadRequest(
                f"{name} must be between 1970-01-01 and 2100-01-01",
                "invalid_parameter",
                [{"field": name, "message": "out of range"}],
            )
        bounds.append(bound)
    if bounds[0] >= bounds[1]:
        raise BadRequest(
            "from must be before to", "invalid_parameter", [{"field": "to", "message": "must be after from"}]
        )
    if bounds[1] - bounds[0] > timedelta(days=max_days):
        raise BadRequest(
            f"the period is longer than {max_days} days",
            "period_too_long",
            [{"field": "to", "message": f"at most {max_days} days after from"}],
        )
    return bounds[0], bounds[1]


def check_period(request: Request, site: Site) -> None:
    """A request's from / to (every read endpoint that takes a period names them so), checked as its
    handler will check them, before the read waits for derivation: a bad period costs a key lookup."""
    query = request.query_params
    if "from" in query and "to" in query:
        period_of(query["from"], query["to"], zone_of(query.get("tz"), site), max_period_days(request))


def wants_csv(request: Request, fmt: str | None) -> bool:
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (event or campaign names come from trackers)
    is prefixed with a quote; numbers are left alone."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_answer(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def answer_head(site: Site, period: tuple[datetime, datetime], zone: ZoneInfo, **extra: Any) -> dict[str, Any]:
    """What a read answer opens with: the site, the period [from, to) and tz; then extra."""
    return {"site": site.site_id, "from": period[0].isoformat(), "to": period[1].isoformat(), "tz": zone.key, **extra}


def bucket_list(period: tuple[datetime, datetime], granularity: Granularity, zone: ZoneInfo) -> list[Bucket]:
    found = buckets(*period, granularity, zone)
    if len(found) > MAX_BUCKETS:
        raise BadRequest(
            f"too many buckets ({len(found)} > {MAX_BUCKETS}); use a coarser granularity",
            "too_many_buckets",
            [{"field": "granularity", "message": "too fine for this period"}],
        )
    return found


@dataclass(frozen=True, slots=True)
class Window:
    """A read endpoint's period resolved: time zone, bounds, calendar buckets, and the store query."""

    zone: ZoneInfo
    period: tuple[datetime, datetime]
    buckets: list[Bucket]
    query: kpi_queries.Query


def window_of(
    site: Site,
    start: str,
    end: str,
    tz: str | None,
    granularity: Granularity,
    breakdown: str | None = None,
    max_days: int = MAX_PERIOD_DAYS,
) -> Window:
    zone = zone_of(tz, site)
    period = period_of(start, end, zone, max_days)
    periods = bucket_list(period, granularity, zone)
    return Window(zone, period, periods, kpi_queries.Query(site.site_id, *period, zone.key, granularity, breakdown))
