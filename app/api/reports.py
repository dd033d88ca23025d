"""Read endpoints beside /v1/kpis (DESIGN §6): goals, a person's stage and history, data quality,
repeat-purchase cohorts, the RACE one-pager. JSON or CSV, explicit tz, conditional GET."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app import rollups
from app.api import report_source
from app.api.caching import conditional
from app.api.deps import Conn, Pool, ReadSite, SettingsDep
from app.api.kpi_source import Source, bucket_counts, site_zone, use_rollups, with_source
from app.api.params import (
    Format,
    From,
    GranularityParam,
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
from app.api.schemas import CohortsAnswer, GoalsAnswer, PersonAnswer, QualityAnswer, ReportAnswer, answers
from app.config import Settings
from app.domain.kpis import Bucket, Granularity, buckets, kpis_of, money
from app.domain.person import person_ids
from app.domain.reports import (
    anonymous_part,
    cohort_table,
    highest_stage,
    month_index,
    month_of_index,
    parse_month,
    person_candidates,
    report_stages,
)
from app.errors import BadRequest, NotFound
from app.jsonresponse import JSONAnswer
from app.store import kpi_queries, report_queries
from app.store import targets as targets_store
from app.store.events import resolve_links
from app.store.sites import Site

router = APIRouter(tags=["reports"])

PersonId = Annotated[
    str,
    Path(
        max_length=1024,
        description="'u:<userId>', 'a:<anonymousId>', or a bare userId or anonymousId (resolved through "
        "identity links to the person it belongs to now)",
        examples=["u:42"],
    ),
]
Month = Annotated[str, Query(description="Calendar month YYYY-MM (in tz)", examples=["2026-03"])]


def _local(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return moment.astimezone(zone).isoformat() if moment else None


GOALS_DESCRIPTION = """Per bucket (by event time in tz) and goal, over non-bot events of [from, to):
`completions` (events classified with that goal), `persons` (distinct persons with a completion),
`value` (sum of the events' values; 0 when none has one). Every goal seen in the period is listed in
every bucket (zeros where it had no completion), sorted by name. CSV: one row per bucket and goal.
Answered from the rollups' goal rows when the period's edges are on quarter hours (as /v1/kpis;
`X-Racetrack-Source` says which answered), else from the events: the same numbers."""


@router.get(
    "/v1/goals",
    summary="Completions, persons and value per goal and bucket",
    description=GOALS_DESCRIPTION,
    responses=answers(GoalsAnswer, csv=True, not_modified=True),
)
async def goals(
    request: Request,
    site: ReadSite,
    conn: Conn,
    settings: SettingsDep,
    start: From,
    end: To,
    tz: Tz = None,
    granularity: GranularityParam = Granularity.DAY,
    format: Format = None,
    source: Source = "rollups",
) -> Response:
    window = window_of(site, start, end, tz, granularity, max_days=max_period_days(request))
    zone, period, periods = window.zone, window.period, window.buckets
    found, answered = await _goal_counts(conn, settings, site, window.query, periods, source)
    names = sorted({goal for _, goal in found})
    rows: list[dict[str, Any]] = []
    for b in periods:
        per_goal = []
        for goal in names:
            completions, persons, value = found.get((b.aligned, goal), (0, 0, 0.0))
            per_goal.append({"goal": goal, "completions": completions, "persons": persons, "value": value})
        rows.append({"start": b.start.isoformat(), "end": b.end.isoformat(), "goals": per_goal})
    if wants_csv(request, format):
        flat = [{"start": r["start"], "end": r["end"], **g} for r in rows for g in r["goals"]]
        answer = csv_answer(flat, ["start", "end", "goal", "completions", "persons", "value"], "goals.csv")
        return with_source(conditional(request, answer), answered)
    head = answer_head(site, period, zone, granularity=granularity.value, buckets=rows)
    return with_source(conditional(request, JSONAnswer(head)), answered)


async def _goal_counts(
    conn: asyncpg.Connection,
    settings: Settings,
    site: Site,
    q: kpi_queries.Query,
    periods: list[Bucket],
    source: str,
) -> tuple[dict[tuple[datetime, str], tuple[int, int, float]], str]:
    """Per (aligned bucket start, goal): completions, persons, value; from the rollups when asked
    and they can answer (as /v1/kpis), else from the events. And which it was."""
    if use_rollups(settings, source):
        counted = await rollups.goal_counts(conn, site.site_id, site_zone(site), periods)
        if counted is not None:
            return {key: (n, persons, money(value)) for key, (n, persons, value) in counted.items()}, "rollups"
    found = await report_queries.goal_counts(conn, q)
    return {(r["bucket"], r["goal"]): (r["completions"], r["persons"], r["value"]) for r in found}, "events"


PERSON_DESCRIPTION = """A person's RACE profile. `stage`: the highest stage any of their events ever
reached (engage > convert > act > reach; `none` if no event matched a rule). `first_seen`,
`last_seen`, `orders`, `revenue` (sum of order values), `leads`: over their non-bot events;
`sessions`: their sessions; `identities`: their user id (for `u:` persons) and every anonymous id
seen on their events; `events`: their latest 100 events, newest first (bot events included and
flagged), times in tz. A bare id is tried as a user id, then as an anonymous id linked to a user,
then as an anonymous id; `a:<id>` of a since identified visitor answers for the user it belongs to.
404 `person_not_found` when no event belongs to it. CSV: one row per listed event."""


@router.get(
    "/v1/persons/{person_id:path}",
    summary="A person's RACE stage, totals and history",
    description=PERSON_DESCRIPTION,
    responses=answers(PersonAnswer, csv=True, not_modified=True, e404="No event belongs to it (person_not_found)"),
)
async def person(
    request: Request, site: ReadSite, conn: Conn, person_id: PersonId, tz: Tz = None, format: Format = None
) -> Response:
    zone = zone_of(tz, site)
    anonymous = anonymous_part(person_id)
    linked = (await resolve_links(conn, site.site_id, [anonymous])).get(anonymous) if anonymous else None
    found = await report_queries.first_existing_person(conn, site.site_id, person_candidates(person_id, linked))
    if found is None:
        raise NotFound(
            f"no person {person_id!r} on this site",
            "person_not_found",
            [{"field": "person_id", "message": "no event belongs to this person"}],
        )
    summary = await report_queries.person_summary(conn, site.site_id, found)
    events = [
        {**dict(r), "event_at": _local(r["event_at"], zone)}
        for r in await report_queries.person_events(conn, site.site_id, found)
    ]
    if wants_csv(request, format):
        columns = ["person_id", "event_at", "type", "event", "stage", "goal", "value", "is_bot"]
        return conditional(request, csv_answer([{"person_id": found, **e} for e in events], columns, "person.csv"))
    answer = {
        "site": site.site_id,
        "person_id": found,
        "tz": zone.key,
        "stage": highest_stage(summary["stages"]),
        "first_seen": _local(summary["first_seen"], zone),
        "last_seen": _local(summary["last_seen"], zone),
        "orders": summary["orders"],
        "revenue": summary["revenue"],
        "leads": summary["leads"],
        "sessions": summary["sessions"],
        "identities": {
            "user_id": person_ids(found)[0],
            "anonymous_ids": list(summary["anonymous_ids"]),
        },
        "events_total": summary["events"],
        "events": events,
    }
    return conditional(request, JSONAnswer(answer))


QUALITY_DESCRIPTION = """Data quality per bucket of *receipt* time in tz. `accepted`, `duplicates`,
`rejected`: the ingestion counters, kept per UTC hour; an hour counts in the bucket (and the period)
its start falls in, so in a zone with a half-hour offset a bucket edge can be off by 30 minutes.
`rejected_by_reason`: kept rejected messages per code, by receipt time. `bots`: stored events flagged
as bots. `late`: stored events (bots included, as in `accepted`) whose event time is more than 24 h
before their receipt. `duplicate_orders`: stored copies of an order id that did not count, because
an earlier copy (by event time, then messageId) of the same order id did. CSV: one row per bucket,
a `rejected_<code>` column per code seen. `other_currency_orders`: orders sent in another currency
than the site's (when it has one): counted as orders, their value left out of revenue. Bots, late
and other-currency orders come from the deriver's 15-minute receipt slots when every bucket edge is
on a quarter hour, else from the events (`source=events` asks for them; `X-Racetrack-Source` says
which answered): the same numbers."""


@router.get(
    "/v1/quality",
    summary="Accepted, duplicate, rejected, bot and late events",
    description=QUALITY_DESCRIPTION,
    responses=answers(QualityAnswer, csv=True, not_modified=True),
)
async def quality(
    request: Request,
    site: ReadSite,
    conn: Conn,
    settings: SettingsDep,
    start: From,
    end: To,
    tz: Tz = None,
    granularity: GranularityParam = Granularity.DAY,
    format: Format = None,
    source: Source = "rollups",
) -> Response:
    window = window_of(site, start, end, tz, granularity, max_days=max_period_days(request))
    zone, period, periods = window.zone, window.period, window.buckets
    found, answered = await report_source.quality_counts(conn, settings, site, window, source)
    counters = {r["bucket"]: r for r in found["counters"]}
    events = {r["bucket"]: r for r in found["events"]}
    repeated = {r["bucket"]: r["n"] for r in found["duplicate_orders"]}
    rows: list[dict[str, Any]] = []
    for b in periods:
        c, e = counters.get(b.aligned), events.get(b.aligned)
        rows.append(
            {
                "start": b.start.isoformat(),
                "end": b.end.isoformat(),
                "accepted": c["accepted"] if c else 0,
                "duplicates": c["duplicates"] if c else 0,
                "rejected": c["rejected"] if c else 0,
                "rejected_by_reason": {r["code"]: r["n"] for r in found["reasons"] if r["bucket"] == b.aligned},
                "bots": e["bots"] if e else 0,
                "late": e["late"] if e else 0,
                "duplicate_orders": repeated.get(b.aligned, 0),
                "other_currency_orders": e["other_currency_orders"] if e else 0,
            }
        )
    if wants_csv(request, format):
        codes = sorted({r["code"] for r in found["reasons"]})
        flat = [{**r, **{f"rejected_{k}": r["rejected_by_reason"].get(k, 0) for k in codes}} for r in rows]
        columns = [
            "start",
            "end",
            "accepted",
            "duplicates",
            "rejected",
            "bots",
            "late",
            "duplicate_orders",
            "other_currency_orders",
            *(f"rejected_{k}" for k in codes),
        ]
        return with_source(conditional(request, csv_answer(flat, columns, "quality.csv")), answered)
    head = answer_head(site, period, zone, granularity=granularity.value, buckets=rows)
    return with_source(conditional(request, JSONAnswer(head)), answered)


COHORTS_DESCRIPTION = """Repeat-purchase cohorts. A customer's cohort is the calendar month (in tz) of their
first order ever, for first orders in [from, to); every month from `from`'s to the last month before
`to` is a cohort (0 customers if none). For each cohort and each month offset 0, 1, ... up to the last
month before `to` (orders at or after `to` are not counted, so that month may be partial):
`active` = cohort customers with at least one order in that month (at offset 0 that is every
customer of the cohort); `active_share` = active / customers; `repeat_customers` = cohort customers
with a repeat order (an order after their first, by event time) in that month, so at offset 0 those
who ordered again in their first month; `repeat_share` = repeat_customers / customers; `orders` and
`revenue` = the cohort's orders and their value in that month. Shares are null for an empty cohort.
Bot events are excluded. CSV: one row per cohort and offset. Answered from the deriver's cohort
months (whole months in the site's zone) or its per-customer order slots (edges and month starts
on quarter hours), else from the events (`source=events`; `X-Racetrack-Source` says which): the
same numbers."""


@router.get(
    "/v1/cohorts",
    summary="Repeat-purchase cohorts by month of first order",
    description=COHORTS_DESCRIPTION,
    responses=answers(CohortsAnswer, csv=True, not_modified=True),
)
async def cohorts(
    request: Request,
    site: ReadSite,
    conn: Conn,
    settings: SettingsDep,
    start: From,
    end: To,
    tz: Tz = None,
    format: Format = None,
    source: Source = "rollups",
) -> Response:
    zone = zone_of(tz, site)
    period = period_of(start, end, zone, max_period_days(request))
    first = period[0].astimezone(zone).date().replace(day=1)
    last = (period[1] - timedelta(microseconds=1)).astimezone(zone).date().replace(day=1)
    activity, answered = await report_source.cohort_activity(conn, settings, site, period, zone, source)
    sizes = {a.cohort: a.active for a in activity if a.month == a.cohort}  # month 0: every first order
    table = cohort_table(sizes, activity, first, last)
    if wants_csv(request, format):
        flat = [{"cohort": c["cohort"], "customers": c["customers"], **m} for c in table for m in c["months"]]
        columns = ["cohort", "customers", "offset", "month", "active", "active_share"]
        columns += ["repeat_customers", "repeat_share", "orders", "revenue"]
        return with_source(conditional(request, csv_answer(flat, columns, "cohorts.csv")), answered)
    return with_source(conditional(request, JSONAnswer(answer_head(site, period, zone, cohorts=table))), answered)


REPORT_DESCRIPTION = """The RACE one-pager for a calendar month (in tz): every KPI of /v1/kpis for that
month, grouped by stage (reach, act, convert, engage), each with `value`, `previous` (the month
before), `change` = value - previous, `change_ratio` = change / |previous| (null when previous is 0 or
null), `target` (from /v1/targets, null if none), `direction` (`higher` or `lower` is better:
bounce_rate is lower), `attainment` (value / target when higher is better, target / value when lower
is better: above 1 beats the plan) and `status` (met, missed, on_track, off_track, too_early,
not_started, no_data; see the README's Plan section). CSV: one row per KPI."""


@router.get(
    "/v1/report",
    summary="The RACE one-pager of a month",
    description=REPORT_DESCRIPTION,
    responses=answers(ReportAnswer, csv=True, not_modified=True),
)
async def report(
    request: Request,
    site: ReadSite,
    conn: Conn,
    pool: Pool,
    settings: SettingsDep,
    month: Month,
    tz: Tz = None,
    format: Format = None,
) -> Response:
    zone = zone_of(tz, site)
    try:
        first_day = parse_month(month)
    except ValueError as exc:
        raise BadRequest(
            f"invalid month {month!r}: {exc}", "invalid_parameter", [{"field": "month", "message": str(exc)}]
        ) from None
    index = month_index(first_day)
    previous_day, next_day = month_of_index(index - 1), month_of_index(index + 1)
    start, end = (datetime.combine(d, time(), tzinfo=zone) for d in (first_day, next_day))
    periods = buckets(datetime.combine(previous_day, time(), tzinfo=zone), end, Granularity.MONTH, zone)
    q = kpi_queries.Query(site.site_id, periods[0].start, end, zone.key, Granularity.MONTH, None)
    counts, _, _ = await bucket_counts(conn, pool, settings, site, q, periods, None)
    before, current = (kpis_of(counts.get((b.aligned, "")) or {}) for b in periods)
    targets = await targets_store.targets_between(conn, site.site_id, first_day, first_day)
    planned = {kpi: value for (kpi, _), value in targets.items()}
    stages = report_stages(current, before, planned, periods[1], datetime.now(UTC))
    if wants_csv(request, format):
        flat = [{"stage": s["stage"], **k} for s in stages for k in s["kpis"]]
        columns = ["stage", "kpi", "value", "previous", "change", "change_ratio", "target", "direction"]
        columns += ["attainment", "status"]
        return conditional(request, csv_answer(flat, columns, "report.csv"))
    head = answer_head(site, (start, end), zone, month=month, previous_month=previous_day.strftime("%Y-%m"))
    return conditional(request, JSONAnswer({**head, "stages": stages}))
