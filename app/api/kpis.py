"""KPI and funnel endpoints for BI tools (DESIGN §5-§6): JSON or CSV, explicit tz and granularity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app import rollups
from app.api.caching import conditional
from app.api.deps import Conn, Pool, ReadSite, SettingsDep, freshness
from app.api.kpi_source import Source, bucket_counts, site_zone, use_rollups, with_source
from app.api.params import (
    Breakdown,
    Format,
    From,
    GranularityParam,
    Limit,
    To,
    Tz,
    answer_head,
    csv_answer,
    max_period_days,
    period_of,
    wants_csv,
    window_of,
    zone_of,
)
from app.api.schemas import SOURCE_HEADERS, FunnelAnswer, KpisAnswer, answers
from app.config import Settings
from app.domain.kpis import REGISTRY, Bucket, FunnelKind, Granularity, kpis_of, nested_counts, race_funnel
from app.domain.plan import plan
from app.domain.reports import DEFAULT_WINDOW, goal_funnel, parse_steps, parse_window
from app.errors import BadRequest
from app.jsonresponse import JSONAnswer
from app.store import report_queries
from app.store import targets as targets_store
from app.store.kpi_queries import BREAKDOWNS
from app.store.sites import Site

router = APIRouter(tags=["kpis"])
T = TypeVar("T")
PLAN_COLUMNS = ("target", "direction", "attainment", "status", "pacing")


@router.get(
    "/v1/kpis",
    summary="Every RACE KPI per bucket (and breakdown group)",
    responses=answers(KpisAnswer, csv=True, not_modified=True, headers=SOURCE_HEADERS),
)
async def kpis(
    request: Request,
    site: ReadSite,
    conn: Conn,
    pool: Pool,
    settings: SettingsDep,
    start: From,
    end: To,
    tz: Tz = None,
    granularity: GranularityParam = Granularity.DAY,
    breakdown: Breakdown = None,
    limit: Limit = None,
    format: Format = None,
    source: Source = "rollups",
) -> Response:
    assert breakdown is None or breakdown in BREAKDOWNS
    window = window_of(site, start, end, tz, granularity, breakdown, max_period_days(request))
    zone, period, periods, q = window.zone, window.period, window.buckets, window.query
    counts, top, used = await bucket_counts(conn, pool, settings, site, q, periods, limit, source)
    groups = sorted({grp for _, grp in counts}, key=_group_order(top)) if breakdown else [""]
    rows = [_bucket_row(b, grp, counts, breakdown is not None) for b in periods for grp in groups]
    planned: list[str] = []
    if granularity is Granularity.MONTH:
        planned = await _add_targets(conn, site, periods, rows, zone)
    if wants_csv(request, format):
        flat = [_flat(r) for r in rows]
        plan_columns = [f"{k}_{part}" for k in planned for part in PLAN_COLUMNS]
        csv = csv_answer(flat, ["start", "end", "group", *REGISTRY.names(), *plan_columns], "kpis.csv")
        return with_source(conditional(request, csv), used)
    answer = answer_head(site, period, zone, granularity=granularity.value, breakdown=breakdown,
                         freshness=freshness(request), buckets=rows)  # fmt: skip
    return with_source(conditional(request, JSONAnswer(answer)), used)


def _group_order(top: list[str]) -> Any:
    """Groups by name; with a limit, the top groups in rank order, then the rest ('(other)')."""
    rank = {name: index for index, name in enumerate(top)}
    return lambda name: (rank.get(name, len(rank)), name)


async def _add_targets(
    conn: Any, site: Site, periods: list[Bucket], rows: list[dict[str, Any]], zone: ZoneInfo
) -> list[str]:
    """Month buckets carry {kpi: plan entry (app/domain/plan.py)} for the KPIs that have a target."""
    months = [b.aligned.astimezone(zone).date() for b in periods]
    found = await targets_store.targets_between(conn, site.site_id, months[0], months[-1])
    by_start = {b.start.isoformat(): b for b in periods}
    now = datetime.now(UTC)
    for row in rows:
        bucket = by_start[row["start"]]
        month = bucket.aligned.astimezone(zone).date()
        row["targets"] = {
            kpi: plan(kpi, row["kpis"].get(kpi), value, bucket, now)
            for (kpi, target_month), value in found.items()
            if target_month == month
        }
    return sorted({kpi for kpi, _ in found})


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat = {"start": row["start"], "end": row["end"], "group": row["group"], **row["kpis"]}
    for kpi, entry in row.get("targets", {}).items():
        flat |= {f"{kpi}_{part}": entry.get(part) for part in PLAN_COLUMNS}
    return flat


def _bucket_row(b: Bucket, grp: str, counts: dict[tuple[datetime, str], Any], grouped: bool) -> dict[str, Any]:
    found = counts.get((b.aligned, grp)) or {}
    return {
        "start": b.start.isoformat(),
        "end": b.end.isoformat(),
        "group": grp if grouped else None,
        "kpis": kpis_of(found),
    }


FUNNEL_DESCRIPTION = """Without `steps`: the RACE funnel over the period, of the kind the answer's `funnel` field
names. `funnel=nested` (default): a stage's `persons` are those with an event of that stage *and*
of every earlier stage in [from, to) (reach: any event), so each step is a subset of the one above;
`funnel=independent`: persons with an event of that stage, whatever the others (a visitor who buys
without an act-stage event counts in convert, not act). Each step carries both counts,
`nested_persons` and `independent_persons`, beside `persons` (the chosen kind's);
`rate_from_previous` and `rate_from_top` compare `persons` with the previous stage and reach. The
nesting is by stage, not by time: a person who bought before viewing a product in the period still
counts in both (use `steps=` for an order in time). With `medians=true`, each stage also carries
`median_seconds_from_previous`:
over persons with events of both stages in the period, the median of (their first event of this
stage - their first event of the previous stage); it can be negative when many persons reach a stage
before the previous one. Persons and rates come from the rollups; medians need every person's
events, so they cost a scan of the period's events.

With `steps`: an ordered goal funnel per person. Step 1 (the entry) is the person's first completion
of the first goal in [from, to); the period bounds only the entry. Each later required step is the
first completion of its goal after the previous required step and at most `window` after the entry.
A step written `goal?` is optional: it counts when it is completed after the previous matched step
and before the next required step's match (or, when that one is never reached, within the window);
a person who skips it continues. `persons` of a step: persons who completed it;
`rate_from_previous`: persons / persons of the previous *required* step; `rate_from_top`: persons /
entries; `median_seconds_from_previous`: median of (this step's time - the person's previous matched
step's time). Goals are matched by name as classified (a second purchase is `repeat_purchase`);
unknown goals simply count 0. Bot events are excluded."""
Steps = Annotated[
    str | None,
    Query(
        description="Goal names in order, comma-separated; a '?' suffix marks an optional step "
        "(at most 10 steps; the first cannot be optional)",
        examples=["product_view,add_to_cart?,purchase"],
    ),
]
Medians = Annotated[
    bool,
    Query(
        description="Without steps: add each stage's median_seconds_from_previous (scans the period's events)",
        examples=[True],
    ),
]
Kind = Annotated[
    FunnelKind,
    Query(
        alias="funnel",
        description="Without steps: nested (default, persons in this stage and every earlier one) or "
        "independent (persons in this stage, whatever the others)",
        examples=["nested"],
    ),
]
FunnelWindow = Annotated[
    str | None,
    Query(
        description=f"With steps: how long after the entry later steps count: a number and s, m, h, d or w "
        f"(default {DEFAULT_WINDOW}, at most 366d)",
        examples=["7d"],
    ),
]


def _parsed(name: str, text: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadRequest(
            f"invalid {name}: {exc}", "invalid_parameter", [{"field": name, "message": str(exc)}]
        ) from None


@router.get(
    "/v1/funnel",
    summary="The RACE funnel over a period, or an ordered goal funnel (steps=)",
    description=FUNNEL_DESCRIPTION,
    responses=answers(FunnelAnswer, csv=True, not_modified=True, headers=SOURCE_HEADERS),
)
async def funnel(
    request: Request,
    site: ReadSite,
    conn: Conn,
    settings: SettingsDep,
    start: From,
    end: To,
    tz: Tz = None,
    steps: Steps = None,
    window: FunnelWindow = None,
    medians: Medians = False,
    kind: Kind = FunnelKind.NESTED,
    format: Format = None,
    source: Source = "rollups",
) -> Response:
    zone = zone_of(tz, site)
    period = period_of(start, end, zone, max_period_days(request))
    answer = answer_head(site, period, zone, freshness=freshness(request))
    span = _parsed("window", window or DEFAULT_WINDOW, parse_window)  # checked even when unused
    columns = ["persons", "rate_from_previous", "rate_from_top"]
    used = "events"
    if steps is None:
        rows, used = await _stage_funnel(conn, settings, site, period, medians, source, kind)
        answer["funnel"] = kind.value
        columns = ["stage", *columns, "nested_persons", "independent_persons"]
        columns += ["median_seconds_from_previous"] if medians else []
    else:
        goal_steps = _parsed("steps", steps, parse_steps)
        found_steps = await report_queries.ordered_funnel(conn, site.site_id, *period, goal_steps, span)
        rows = goal_funnel(goal_steps, found_steps)
        answer["funnel"] = "ordered_goals"
        answer["window"], answer["window_seconds"] = window or DEFAULT_WINDOW, span.total_seconds()
        columns = ["goal", "optional", *columns, "median_seconds_from_previous"]
    if wants_csv(request, format):
        return with_source(conditional(request, csv_answer(rows, columns, "funnel.csv")), used)
    return with_source(conditional(request, JSONAnswer({**answer, "steps": rows})), used)


async def _stage_funnel(
    conn: asyncpg.Connection,
    settings: Settings,
    site: Site,
    period: tuple[datetime, datetime],
    medians: bool,
    source: str,
    kind: FunnelKind,
) -> tuple[list[dict[str, Any]], str]:
    found: dict[str, tuple[int, int, float | None]] = {}
    independent = nested = None
    if not medians and use_rollups(settings, source):
        sets = await rollups.funnel_sets(conn, site.site_id, site_zone(site), *period)
        if sets is not None:
            independent, nested = {stage: len(persons) for stage, persons in sets.items()}, nested_counts(sets)
    used = "rollups"
    if independent is None or nested is None:
        used = "events"
        found = await report_queries.stage_funnel(conn, site.site_id, *period)
        independent = {stage: n for stage, (n, _, _) in found.items()}
        nested = {stage: n for stage, (_, n, _) in found.items()}
    rows = race_funnel(nested, independent, kind)
    if medians:
        rows = [{**row, "median_seconds_from_previous": found[str(row["stage"])][2]} for row in rows]
    return rows, used
