"""Goal rules over the API: versions, try-before-apply (test, preview) and reclassification jobs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from app.api.audit import record
from app.api.body import read_body
from app.api.deps import AdminSite, Conn, Rulesets
from app.api.ingest import rejection_fields
from app.api.params import max_period_days, period_of, zone_of
from app.api.schemas import (
    Job,
    Jobs,
    PreviewAnswer,
    Ruleset,
    RulesetIn,
    RuleTestAnswer,
    answers,
    documented_body,
)
from app.domain.classify import classify, explain
from app.domain.model import PersonHistory
from app.domain.normalize import Receipt, Rejection, normalize
from app.domain.person import derive_person
from app.domain.rule_limits import DocumentError, load_yaml
from app.domain.rules import CompiledRuleset, RuleError, compile_ruleset
from app.errors import BadRequest, NotFound, Unprocessable
from app.pipeline.rulesets import default_document
from app.store import jobs as job_store
from app.store import persons as person_store
from app.store import rulesets as ruleset_store
from app.wire.body import parse_json

router = APIRouter(tags=["rules"])
INVALID_RULESET = "A parameter or body field is invalid (invalid_parameter), or the ruleset is (invalid_ruleset: "
INVALID_RULESET += "details name each rule and field)"
PREVIEW_MAX_PERSONS = 200_000


def compile_or_422(document: Any, version: int = -1) -> CompiledRuleset:
    try:
        return compile_ruleset(document, version)
    except RuleError as exc:
        raise Unprocessable(str(exc), "invalid_ruleset", exc.problems) from None


async def _document(request: Request) -> Any:
    body = await read_body(request, 512 * 1024)
    if "yaml" in request.headers.get("content-type", ""):
        try:
            return load_yaml(body)
        except DocumentError as exc:
            message = f"ruleset: {exc.message}"
            problem = {"rule": None, "goal": None, "field": exc.field, "message": message}
            raise Unprocessable(message, "invalid_ruleset", [problem]) from None
        except yaml.YAMLError as exc:
            raise BadRequest(f"malformed YAML: {exc}", "malformed_yaml") from None
    return parse_json(body)


@router.get(
    "/v1/rules",
    summary="The current ruleset, or an older version",
    responses=answers(Ruleset, e404="No such version (ruleset_not_found)"),
)
async def get_rules(
    site: AdminSite,
    conn: Conn,
    version: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="A version number (0: the shipped default)")
    ] = None,
) -> dict[str, Any]:
    if version == 0:
        return {"version": 0, "default": True, **default_document()}
    if version is None:
        found = await ruleset_store.latest_ruleset(conn, site.site_id)
        if found is None:
            return {"version": 0, "default": True, **default_document()}
        version, document = found
    else:
        document = await ruleset_store.ruleset_version(conn, site.site_id, version)
        if document is None:
            raise NotFound(f"no ruleset version {version}", "ruleset_not_found")
    return {"version": version, "default": False, **document}


@router.put(
    "/v1/rules",
    summary="Replace the ruleset (JSON or YAML body); makes a new version",
    responses=answers(
        Ruleset,
        e400="Malformed JSON or YAML (malformed_json, malformed_yaml), an empty body (empty_body)",
        e422=INVALID_RULESET,
    ),
    openapi_extra=documented_body(RulesetIn, also=("application/yaml",)),
)
async def put_rules(request: Request, site: AdminSite, conn: Conn, rulesets: Rulesets) -> dict[str, Any]:
    document = await _document(request)
    compiled = compile_or_422(document)
    stored = {"rules": list(compiled.source)}
    # A new version applies to events acknowledged after it: the admin key's dependency has waited
    # (bounded) for the ones before to be derived; a backlog past the wait gets the new rules.
    async with conn.transaction():
        version = await ruleset_store.insert_ruleset(conn, site.site_id, stored)
        await record(conn, request, site.site_id, "rules.put", {"version": version, "rules": len(compiled.rules)})
    rulesets.forget(site.site_id)
    return {"version": version, "default": False, **stored}


class RuleTest(BaseModel):
    rules: dict[str, Any] | None = Field(None, description="A proposed ruleset; default: the current one")
    messages: list[Any] = Field(min_length=1, max_length=1000, description="Segment messages to classify")
    person: dict[str, Any] = Field(
        default_factory=dict,
        description="History before each message: orders_before, revenue_before, leads_before, first_seen_at",
    )


@router.post(
    "/v1/rules/test",
    summary="Classify sample messages and explain which rule matched and why",
    responses=answers(
        RuleTestAnswer, e400="person's history is not numbers and an ISO time (invalid_parameter)", e422=INVALID_RULESET
    ),
)
async def test_rules(body: RuleTest, site: AdminSite, conn: Conn, rulesets: Rulesets) -> dict[str, Any]:
    ruleset = compile_or_422(body.rules) if body.rules else await rulesets.current(conn, site.site_id)
    history = _history(body.person)
    receipt = Receipt(received_at=datetime.now(UTC), site_domains=site.domains)
    results: list[dict[str, Any]] = []
    for index, message in enumerate(body.messages):
        normalized = normalize(message, receipt)
        if isinstance(normalized, Rejection):
            results.append({"index": index, "rejected": rejection_fields(normalized)})
            continue
        got = classify(normalized, history, ruleset)  # an IncomingEvent is an Event
        results.append(
            {
                "index": index,
                "stage": got.stage.value,
                "goal": got.goal,
                "value": got.value,
                "lead": got.lead,
                "order": got.order,
                "explain": explain(normalized, history, ruleset),
            }
        )
    # a proposed ruleset has no version yet
    return {"version": None if body.rules else ruleset.version, "results": results}


def _history(raw: dict[str, Any]) -> PersonHistory:
    try:
        first = raw.get("first_seen_at")
        return PersonHistory(
            orders_before=int(raw.get("orders_before", 0)),
            revenue_before=float(raw.get("revenue_before", 0.0)),
            leads_before=int(raw.get("leads_before", 0)),
            first_seen_at=datetime.fromisoformat(first.replace("Z", "+00:00")) if first else None,
        )
    except (TypeError, ValueError, AttributeError):
        raise BadRequest(
            "person: orders_before, revenue_before, leads_before must be numbers, first_seen_at ISO",
            "invalid_parameter",
            [{"field": "person", "message": "invalid history"}],
        ) from None


class RulePreview(BaseModel):
    rules: dict[str, Any] = Field(description="The proposed ruleset")
    from_: str = Field(alias="from", examples=["2026-03-01"])
    to: str = Field(examples=["2026-04-01"])
    tz: str | None = None


@router.post(
    "/v1/rules/preview",
    summary="How stage and goal counts over a range would change (writes nothing)",
    responses=answers(
        PreviewAnswer, e400="A bad period, or too many persons in it (range_too_large)", e422=INVALID_RULESET
    ),
)
async def preview_rules(body: RulePreview, request: Request, site: AdminSite, conn: Conn) -> dict[str, Any]:
    proposed = compile_or_422(body.rules)
    zone = zone_of(body.tz, site)
    start, end = period_of(body.from_, body.to, zone, max_period_days(request))
    persons = await person_store.persons_between(conn, site.site_id, start, end)
    if len(persons) > PREVIEW_MAX_PERSONS:
        raise BadRequest(
            f"{len(persons)} persons in range; preview at most {PREVIEW_MAX_PERSONS}",
            "range_too_large",
            [{"field": "to", "message": "narrow the range"}],
        )
    current = Counter[tuple[str, str | None]]()
    for row in await person_store.stage_goal_counts(conn, site.site_id, start, end):
        current[(row["stage"], row["goal"])] = row["events"]
    after = Counter[tuple[str, str | None]]()
    by_person = await person_store.load_person_events(conn, site.site_id, persons)
    for person_id, events in by_person.items():
        in_range = {e.event_id for e in events if start <= e.event_at < end and not e.is_bot}
        facts, _ = derive_person(person_id, events, lambda version: proposed)
        after.update((f.stage.value, f.goal) for f in facts if f.event_id in in_range)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "current": _summary(current),
        "proposed": _summary(after),
        "changes": _changes(current, after),
    }


def _summary(counts: Counter[tuple[str, str | None]]) -> dict[str, dict[str, int]]:
    stages: Counter[str] = Counter()
    goals: Counter[str] = Counter()
    for (stage, goal), n in counts.items():
        stages[stage] += n
        goals[goal or "(none)"] += n
    return {"stages": dict(stages), "goals": dict(goals)}


def _changes(before: Counter[tuple[str, str | None]], after: Counter[tuple[str, str | None]]) -> list[dict[str, Any]]:
    out = []
    for kind, index in (("stage", 0), ("goal", 1)):
        old: Counter[str] = Counter()
        new: Counter[str] = Counter()
        for key, n in before.items():
            old[str(key[index] or "(none)")] += n
        for key, n in after.items():
            new[str(key[index] or "(none)")] += n
        out += [
            {kind: k, "current": old[k], "proposed": new[k], "delta": new[k] - old[k]}
            for k in sorted(set(old) | set(new))
            if old[k] != new[k]
        ]
    return out


class Reclassify(BaseModel):
    from_: str = Field(alias="from", examples=["2026-03-01"])
    to: str = Field(examples=["2026-04-01"])
    tz: str | None = None


@router.post(
    "/v1/reclassify",
    status_code=202,
    summary="Reclassify a range under the current ruleset (a job)",
    responses=answers(Job, status=202),
)
async def reclassify(body: Reclassify, request: Request, site: AdminSite, conn: Conn) -> dict[str, Any]:
    zone: ZoneInfo = zone_of(body.tz, site)
    start, end = period_of(body.from_, body.to, zone, max_period_days(request))
    job = await request.state.jobs.start_reclassify(site.site_id, start, end, zone.key)
    summary = {"job": job["job_id"], "from": start.isoformat(), "to": end.isoformat(), "tz": zone.key}
    await record(conn, request, site.site_id, "reclassify", summary)
    return _job(job)


JobStatus = Literal["queued", "running", "done", "failed"]


@router.get("/v1/jobs", summary="The site's jobs, newest first", responses=answers(Jobs))
async def list_jobs(
    site: AdminSite,
    conn: Conn,
    status: Annotated[JobStatus | None, Query(description="Only jobs of this status", examples=["running"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many jobs (default 100)")] = 100,
) -> dict[str, Any]:
    return {"jobs": [_job(job) for job in await job_store.list_jobs(conn, site.site_id, status, limit)]}


@router.get(
    "/v1/jobs/{job_id}",
    summary="A job's status and progress",
    responses=answers(Job, e404="No such job (job_not_found)"),
)
async def get_job(
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The id POST /v1/reclassify answered", examples=[1])],
    site: AdminSite,
    conn: Conn,
) -> dict[str, Any]:
    job = await job_store.get_job(conn, site.site_id, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", "job_not_found")
    return _job(job)


def _job(job: dict[str, Any]) -> dict[str, Any]:
    total = job["total"]
    return {
        "id": job["job_id"],
        "kind": job["kind"],
        "status": job["status"],
        "params": job["params"],
        "done": job["done"],
        "total": total,
        "progress": 1.0 if total == 0 else job["done"] / total,
        "error": job["error"],
        "created_at": job["created_at"],
        "updated_at": job["updated_at"],
    }
