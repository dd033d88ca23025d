"""What the RACE page shows, read through the read endpoints' own handlers (the same KPI math, the
same rollups, the same answers a BI tool gets): the dashboard adds no figure of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson
from fastapi import Request
from fastapi.responses import Response

from app.api import kpis as kpi_api
from app.api import reports as report_api
from app.config import Settings
from app.domain import dashboard as view_logic
from app.domain.dashboard import Period
from app.domain.kpis import REGISTRY, Granularity, buckets
from app.errors import BadRequest
from app.store import dashboard_queries, kpi_queries
from app.store.kpi_queries import BREAKDOWNS
from app.store.sites import Site

GROUPS_SHOWN = 10  # rows of the channel x stage table; the rest is '(other)'
LIVE_MINUTES = 30
CHART_GRANULARITIES = (Granularity.DAY, Granularity.WEEK, Granularity.MONTH)
# The internal calls must not see the browser's headers (Accept, If-None-Match).
_INTERNAL_SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", "invalid_parameter", [{"field": field, "message": message}])


def _day(params: Mapping[str, str], name: str) -> date | None:
    text = params.get(name) or ""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _bad(name, f"cannot parse {text!r}: use YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True)
class View:
    """The page's state, all of it in its URL (never the key)."""

    preset: str
    period: Period
    tz: str
    breakdown: str
    segment: str | None
    chart: str
    every: Granularity

    @classmethod
    def of(cls, params: Mapping[str, str], site: Site, now: datetime) -> View:
        tz = params.get("tz") or site.timezone or "UTC"
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise _bad("tz", "must be an IANA time zone name") from None
        preset = params.get("period") or "this_month"
        try:
            today = now.astimezone(zone).date()
            period = view_logic.preset_period(preset, today, _day(params, "first"), _day(params, "last"))
        except ValueError as exc:
            raise _bad("period", str(exc)) from None
        breakdown = params.get("breakdown") or "channel"
        if breakdown not in BREAKDOWNS:
            raise _bad("breakdown", f"one of {', '.join(sorted(BREAKDOWNS))}")
        chart = params.get("chart") or "visitors"
        if chart not in REGISTRY.names():
            raise _bad("chart", "a KPI name of /v1/kpis")
        try:
            every = Granularity(params.get("every") or "day")
        except ValueError:
            every = Granularity.TOTAL
        if every not in CHART_GRANULARITIES:
            raise _bad("every", "day, week or month")
        return cls(preset, period, zone.key, breakdown, params.get("segment") or None, chart, every)

    def query(self, **changes: str | None) -> str:
        """This view's URL query string, with some parameters changed."""
        state: dict[str, str | None] = {
            "period": self.preset,
            "first": self.period.start.isoformat() if self.preset == "custom" else None,
            "last": self.period.last.isoformat() if self.preset == "custom" else None,
            "tz": self.tz,
            "breakdown": self.breakdown,
            "segment": self.segment,
            "chart": self.chart,
            "every": self.every.value,
        } | changes
        return urlencode({k: v for k, v in state.items() if v})


def _json(response: Response) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(bytes(response.body))
    return answer


@dataclass(frozen=True, slots=True)
class Reader:
    """Calls one read endpoint's handler on a connection of its own (so panels load concurrently),
    and answers what the endpoint would have: JSON or CSV."""

    pool: asyncpg.Pool
    settings: Settings
    site: Site
    tz: str
    format: str = "json"

    async def _call(self, handler: Callable[..., Awaitable[Response]], **params: Any) -> Response:
        async with self.pool.acquire() as conn:
            return await handler(
                request=Request(_INTERNAL_SCOPE), site=self.site, conn=conn, format=self.format, **params
            )

    async def kpis(
        self, start: str, end: str, granularity: Granularity, breakdown: str | None = None, limit: int | None = None
    ) -> Response:
        return await self._call(
            kpi_api.kpis, pool=self.pool, settings=self.settings, start=start, end=end, tz=self.tz,
            granularity=granularity, breakdown=breakdown, limit=limit, source="rollups",
        )  # fmt: skip

    async def funnel(self, period: Period) -> Response:
        return await self._call(
            kpi_api.funnel, settings=self.settings, start=period.start.isoformat(), end=period.end.isoformat(),
            tz=self.tz, steps=None, window=None, medians=False, source="rollups",
        )  # fmt: skip

    async def goals(self, period: Period) -> Response:
        return await self._call(
            report_api.goals, settings=self.settings, start=period.start.isoformat(), end=period.end.isoformat(),
            tz=self.tz, granularity=Granularity.TOTAL,
        )  # fmt: skip

    async def quality(self, period: Period) -> Response:
        return await self._call(
            report_api.quality, settings=self.settings, start=period.start.isoformat(), end=period.end.isoformat(),
            tz=self.tz, granularity=Granularity.TOTAL,
        )  # fmt: skip

    async def cohorts(self, period: Period) -> Response:
        return await self._call(
            report_api.cohorts, settings=self.settings, start=period.start.isoformat(), end=period.end.isoformat(),
            tz=self.tz,
        )  # fmt: skip

    async def report(self, month: str) -> Response:
        return await self._call(report_api.report, pool=self.pool, settings=self.settings, month=month, tz=self.tz)

    async def live_visitors(self, start: datetime, end: datetime) -> int:
        """Visitors in [start, end): /v1/kpis' own count from the events (minutes are finer than any
        rollup), without the to-date KPIs that would read every order before it."""
        q = kpi_queries.Query(self.site.site_id, start, end, "UTC", Granularity.TOTAL, None)
        (bucket,) = buckets(start, end, Granularity.TOTAL, ZoneInfo("UTC"))
        counts = await kpi_queries.event_counts(self.pool, q, [bucket], history=False)
        return int(counts.get((bucket.aligned, ""), {}).get("visitors", 0))

    async def freshness(self) -> dashboard_queries.Freshness:
        async with self.pool.acquire() as conn:
            return await dashboard_queries.freshness(conn, self.site.site_id)


def _segment_kpis(answer: dict[str, Any], segment: str | None) -> list[dict[str, Any]]:
    """Per bucket, the KPIs of the whole site, or of one breakdown group (zeros where it had none)."""
    rows: list[dict[str, Any]] = answer["buckets"]
    if segment is None:
        return rows
    by_start: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["group"] == segment:
            by_start[r["start"]] = r
    starts = list(dict.fromkeys(r["start"] for r in rows))
    return [by_start.get(s) or {"start": s, "kpis": {}} for s in starts]


async def load(pool: asyncpg.Pool, settings: Settings, site: Site, view: View, now: datetime) -> dict[str, Any]:
    """Every panel's data, fetched at once."""
    read = Reader(pool, settings, site, view.tz)
    period = view.period
    previous = view_logic.previous_period(view.preset, period)
    year_ago = view_logic.year_before(period)
    plan = view_logic.plan_month(period)
    seg_dim = view.breakdown if view.segment else None

    async def total(p: Period) -> dict[str, Any]:
        return _json(await read.kpis(p.start.isoformat(), p.end.isoformat(), Granularity.TOTAL, seg_dim))

    async def series(p: Period) -> dict[str, Any]:
        return _json(await read.kpis(p.start.isoformat(), p.end.isoformat(), view.every, seg_dim))

    async def kpis(p: Period, granularity: Granularity, breakdown: str | None = None, limit: int | None = None) -> Any:
        return _json(await read.kpis(p.start.isoformat(), p.end.isoformat(), granularity, breakdown, limit))

    async def answer(call: Awaitable[Response]) -> dict[str, Any]:
        return _json(await call)

    live_start = now.astimezone(UTC) - timedelta(minutes=LIVE_MINUTES)
    names = (
        "current", "previous", "year_ago", "plan", "funnel", "series", "series_before", "by_group", "by_peso",
        "goals", "cohorts", "quality", "live", "freshness",
    )  # fmt: skip
    found = await asyncio.gather(
        total(period),
        total(previous),
        total(year_ago),
        kpis(plan, Granularity.MONTH),
        answer(read.funnel(period)),
        series(period),
        series(previous),
        kpis(period, Granularity.TOTAL, view.breakdown, GROUPS_SHOWN),
        kpis(period, Granularity.TOTAL, "peso"),
        answer(read.goals(period)),
        answer(read.cohorts(view_logic.cohort_months(period))),
        answer(read.quality(period)),
        read.live_visitors(live_start, now.astimezone(UTC)),
        read.freshness(),
    )
    data = dict(zip(names, found, strict=True))
    return _panels(view, data, now, {"previous": previous, "year_ago": year_ago, "plan": plan})


def _panels(view: View, data: dict[str, Any], now: datetime, periods: dict[str, Period]) -> dict[str, Any]:
    current = (_segment_kpis(data["current"], view.segment) or [{"kpis": {}}])[0]["kpis"]
    previous = (_segment_kpis(data["previous"], view.segment) or [{"kpis": {}}])[0]["kpis"]
    year_ago = (_segment_kpis(data["year_ago"], view.segment) or [{"kpis": {}}])[0]["kpis"]
    plan_bucket = data["plan"]["buckets"][0]
    stages = [
        {"stage": stage, "kpis": [_kpi_card(kpi, current, previous, year_ago, plan_bucket, view) for kpi in names]}
        for stage, names in REGISTRY.stage_kpis().items()
    ]
    return {
        "stages": stages,
        "periods": periods,
        "funnel": data["funnel"]["steps"],
        "chart": _chart(view, data["series"], data["series_before"]),
        "by_group": data["by_group"]["buckets"],
        "by_peso": data["by_peso"]["buckets"],
        "segments": [r["group"] for r in data["by_group"]["buckets"] if r["group"] != "(other)"],
        "goals": data["goals"]["buckets"][0]["goals"] if data["goals"]["buckets"] else [],
        "cohorts": data["cohorts"]["cohorts"],
        "quality": data["quality"]["buckets"][0],
        "live_visitors": data["live"],
        "freshness": _freshness(data["freshness"], now),
        "targets": {kpi: plan["target"] for kpi, plan in (plan_bucket.get("targets") or {}).items()},
    }


def _kpi_card(
    kpi: str, current: dict[str, Any], previous: dict[str, Any], year_ago: dict[str, Any], plan_bucket: dict[str, Any],
    view: View,
) -> dict[str, Any]:  # fmt: skip
    value = current.get(kpi)
    card: dict[str, Any] = {
        "kpi": kpi,
        "value": value,
        "previous": previous.get(kpi),
        "year_ago": year_ago.get(kpi),
        "vs_previous": view_logic.change_ratio(value, previous.get(kpi)),
        "vs_year_ago": view_logic.change_ratio(value, year_ago.get(kpi)),
    }
    card["trend_previous"] = view_logic.trend(kpi, card["vs_previous"])
    card["trend_year_ago"] = view_logic.trend(kpi, card["vs_year_ago"])
    plan = (plan_bucket.get("targets") or {}).get(kpi)
    if plan is not None and view.segment is None:  # targets are for the whole site
        month_value = plan_bucket["kpis"].get(kpi)
        judged = plan.get("pacing", month_value)  # the running month: where the trend leads
        state = plan.get("status")  # the API's: too early, not started and no data are not judged
        card["plan"] = {
            "actual": month_value,
            "target": plan["target"],
            "attainment": plan["attainment"],
            "pacing": plan.get("pacing"),
            "state": state,
            "status": view_logic.plan_status(kpi, judged, plan["target"]) if state in JUDGED else None,
        }
    return card


def _chart(view: View, series: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    rows = _segment_kpis(series, view.segment)
    earlier = _segment_kpis(before, view.segment)
    values = [r["kpis"].get(view.chart) for r in rows]
    compared = [r["kpis"].get(view.chart) for r in earlier][: len(values)]
    compared += [None] * (len(values) - len(compared))
    return {
        "kpi": view.chart,
        "x": [int(datetime.fromisoformat(r["start"]).timestamp()) for r in rows],
        "labels": [r["start"][:10] for r in rows],
        "before_labels": [r["start"][:10] for r in earlier][: len(values)],
        "values": values,
        "before": compared,
    }


def _freshness(found: dashboard_queries.Freshness, now: datetime) -> dict[str, Any]:
    def seconds_since(moment: datetime | None) -> float | None:
        return None if moment is None else max(0.0, (now - moment).total_seconds())

    return {
        "last_event_seconds": seconds_since(found.last_received_at),
        "behind_seconds": seconds_since(found.oldest_pending_at) or 0.0,
    }


JUDGED = frozenset({"met", "missed", "on_track", "off_track"})  # plan states a colour is given for
CSV_PANELS = ("kpis", "plan", "chart", "funnel", "by_group", "by_peso", "goals", "cohorts", "quality", "report")


async def csv_of(pool: asyncpg.Pool, settings: Settings, site: Site, view: View, panel: str) -> Response:
    """A panel's figures as CSV, answered by its endpoint's handler (the same file a BI tool gets from
    the endpoint with the read key; the page links here so the key never has to be in the browser)."""
    read = Reader(pool, settings, site, view.tz, "csv")
    p = view.period
    seg_dim = view.breakdown if view.segment else None
    plan, cohorts = view_logic.plan_month(p), view_logic.cohort_months(p)
    calls: dict[str, Callable[[], Awaitable[Response]]] = {
        "kpis": lambda: read.kpis(p.start.isoformat(), p.end.isoformat(), Granularity.TOTAL, seg_dim),
        "plan": lambda: read.kpis(plan.start.isoformat(), plan.end.isoformat(), Granularity.MONTH),
        "chart": lambda: read.kpis(p.start.isoformat(), p.end.isoformat(), view.every, seg_dim),
        "funnel": lambda: read.funnel(p),
        "by_group": lambda: read.kpis(
            p.start.isoformat(), p.end.isoformat(), Granularity.TOTAL, view.breakdown, GROUPS_SHOWN
        ),
        "by_peso": lambda: read.kpis(p.start.isoformat(), p.end.isoformat(), Granularity.TOTAL, "peso"),
        "goals": lambda: read.goals(p),
        "cohorts": lambda: read.cohorts(cohorts),
        "quality": lambda: read.quality(p),
        "report": lambda: read.report(plan.start.strftime("%Y-%m")),
    }
    return await calls[panel]()
