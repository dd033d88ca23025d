"""What every endpoint answers, as pydantic models for the OpenAPI document.

Documentation, not serialisation: routes name these in `responses=` and keep building their answers
as before (plain dicts through FastAPI's encoder, or JSONAnswer directly), so no answer changes shape
or costs more. tests/security/test_schemathesis.py checks the real answers against them, and
tests/unit/test_openapi.py that no operation's success lacks a schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from app.domain.kpis import REGISTRY, Direction
from app.domain.plan import Status
from app.errors import ErrorBody

REF = "#/components/schemas/{model}"
# Schemas the routes reference only through openapi_extra (request bodies FastAPI does not parse):
# app/api/contract.py adds them to the document's components.
EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {}
CSV_NOTE = "With format=csv (or Accept: text/csv): the same rows as CSV, as an attachment"
RESPONSE = dict[int | str, dict[str, Any]]


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


READ_HEADERS = {
    "ETag": _header("A weak tag of the answer: send it as If-None-Match to get a 304 while nothing changed"),
    "X-Racetrack-Lag-Seconds": _header("How far the derived data is behind (as freshness.lag_seconds)"),
    "X-Racetrack-Derived-Through": _header("Every event received before this is in the answer"),
}
SOURCE_HEADERS = {"X-Racetrack-Source": _header("Where the counts came from: rollups or events")}


def answers(
    model: Any = None,
    *,
    status: int = 200,
    csv: bool = False,
    not_modified: bool = False,
    headers: dict[str, Any] | None = None,
    **errors: str,
) -> RESPONSE:
    """`responses=` for a route: its success model (JSON; CSV as an alternative) and headers, a 304
    for conditional GETs (with the read headers), and operation-specific errors as `e404="what"` (the
    errors every operation of a kind can answer are added by app/api/contract.py)."""
    found: RESPONSE = {}
    success_headers = {**(READ_HEADERS if not_modified else {}), **(headers or {})}
    if model is not None:
        found[status] = {"model": model}
        if csv:
            found[status]["content"] = {"text/csv": {"schema": {"type": "string", "description": CSV_NOTE}}}
        if success_headers:
            found[status]["headers"] = success_headers
    if not_modified:
        found[304] = {"description": "Not Modified: If-None-Match names the answer's ETag (no body)"}
    for name, description in errors.items():
        found[int(name.removeprefix("e"))] = {"model": ErrorBody, "description": description}
    return found


def schema_of(kind: Any) -> dict[str, Any]:
    """A type's JSON schema; a model's by reference, with every model it uses in EXTRA_SCHEMAS."""
    found = TypeAdapter(kind).json_schema(ref_template=REF)
    EXTRA_SCHEMAS.update(found.pop("$defs", {}))
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        EXTRA_SCHEMAS[kind.__name__] = found
        return {"$ref": REF.format(model=kind.__name__)}
    return found


def documented_body(
    *kinds: Any, text_plain: str | None = None, form: str | None = None, also: tuple[str, ...] = ()
) -> dict[str, Any]:
    """openapi_extra documenting a request body that the handler reads raw: JSON of one of kinds
    (or the same in the media types `also` names, e.g. YAML)."""
    schemas = [schema_of(kind) for kind in kinds]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    content: dict[str, Any] = {media: {"schema": schema} for media in ("application/json", *also)}
    if text_plain:
        content["text/plain"] = {"schema": {"type": "string", "description": text_plain}}
    if form:
        data = {"type": "string", "description": form}
        content["application/x-www-form-urlencoded"] = {"schema": {"type": "object", "properties": {"data": data}}}
    return {"requestBody": {"required": True, "content": content}}


Moment = str  # ISO 8601 with offset, in the answer's tz
Ratio = float | None


class Freshness(BaseModel):
    derived_through: Moment = Field(description="Every event received before this is in the answer")
    lag_seconds: float = Field(description="now - derived_through (0 when nothing waits)")
    complete: bool = Field(description="Every event acknowledged before the read arrived is in the answer")


class Period(BaseModel):
    site: int
    from_: Moment = Field(alias="from")
    to: Moment = Field(description="Exclusive")
    tz: str = Field(examples=["Europe/Berlin"])


# ---------------------------------------------------------------- /v1/kpis


class PlanEntry(BaseModel):
    """A month bucket's plan for one KPI (README: Plan)."""

    target: float
    direction: Direction
    attainment: Ratio = Field(description="Above 1 beats the plan")
    status: Status
    elapsed_share: float | None = Field(None, description="Running month only: the share of it that has passed")
    pacing: float | None = Field(None, description="Running month only: the projected month-end value")
    pacing_attainment: Ratio = None


class KpiBucket(BaseModel):
    start: Moment
    end: Moment
    group: str | None = Field(description="The breakdown value, or null without a breakdown")
    kpis: dict[str, float | None] = Field(description="Every KPI by name: " + ", ".join(REGISTRY.names()))
    targets: dict[str, PlanEntry] | None = Field(
        None, description="granularity=month only: the plan of each KPI that has a target that month"
    )


class KpisAnswer(Period):
    granularity: Literal["day", "week", "month", "total"]
    breakdown: str | None
    freshness: Freshness | None
    buckets: list[KpiBucket]


# ---------------------------------------------------------------- /v1/funnel


class StageStep(BaseModel):
    stage: Literal["reach", "act", "convert", "engage"]
    persons: int = Field(description="Of the answer's funnel kind")
    rate_from_previous: Ratio
    rate_from_top: Ratio
    nested_persons: int
    independent_persons: int
    median_seconds_from_previous: float | None = Field(None, description="medians=true only")


class GoalStep(BaseModel):
    goal: str
    optional: bool
    persons: int
    rate_from_previous: Ratio = Field(description="Against the previous required step")
    rate_from_top: Ratio
    median_seconds_from_previous: float | None


class FunnelAnswer(Period):
    freshness: Freshness | None
    funnel: Literal["nested", "independent", "ordered_goals"]
    window: str | None = Field(None, description="With steps only")
    window_seconds: float | None = Field(None, description="With steps only")
    steps: list[StageStep] | list[GoalStep]


# ---------------------------------------------------------------- reports


class GoalCount(BaseModel):
    goal: str
    completions: int
    persons: int
    value: float


class GoalBucket(BaseModel):
    start: Moment
    end: Moment
    goals: list[GoalCount]


class GoalsAnswer(Period):
    granularity: Literal["day", "week", "month", "total"]
    buckets: list[GoalBucket]


class PersonEvent(BaseModel):
    event_at: Moment | None
    type: str
    event: str | None
    stage: str | None
    goal: str | None
    value: float | None
    is_bot: bool


class Identities(BaseModel):
    user_id: str | None
    anonymous_ids: list[str]


class PersonAnswer(BaseModel):
    site: int
    person_id: str = Field(examples=["u:42"])
    tz: str
    stage: Literal["none", "reach", "act", "convert", "engage"]
    first_seen: Moment | None
    last_seen: Moment | None
    orders: int
    revenue: float
    leads: int
    sessions: int
    identities: Identities
    events_total: int
    events: list[PersonEvent] = Field(description="The latest 100, newest first")


class QualityBucket(BaseModel):
    start: Moment
    end: Moment
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    bots: int
    late: int
    duplicate_orders: int
    other_currency_orders: int


class QualityAnswer(Period):
    granularity: Literal["day", "week", "month", "total"]
    buckets: list[QualityBucket]


class CohortMonth(BaseModel):
    offset: int
    month: str = Field(examples=["2026-03"])
    active: int
    active_share: Ratio
    repeat_customers: int
    repeat_share: Ratio
    orders: int
    revenue: float


class Cohort(BaseModel):
    cohort: str = Field(examples=["2026-03"])
    customers: int
    months: list[CohortMonth]


class CohortsAnswer(Period):
    cohorts: list[Cohort]


class ReportKpi(BaseModel):
    kpi: str
    value: float | None
    previous: float | None
    change: float | None
    change_ratio: Ratio
    target: float | None
    direction: Direction
    attainment: Ratio
    status: Status | None


class ReportStage(BaseModel):
    stage: Literal["reach", "act", "convert", "engage"]
    kpis: list[ReportKpi]


class ReportAnswer(Period):
    month: str = Field(examples=["2026-03"])
    previous_month: str = Field(examples=["2026-02"])
    stages: list[ReportStage]


# ---------------------------------------------------------------- rules and jobs


class Ruleset(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int = Field(description="0: the shipped default")
    default: bool
    rules: list[dict[str, Any]]


class RulesetIn(BaseModel):
    """PUT /v1/rules's body (JSON, or the same as YAML)."""

    model_config = ConfigDict(extra="allow")

    rules: list[dict[str, Any]] = Field(
        examples=[[{"goal": "purchase", "stage": "convert", "when": {"type": "track", "event": "Order Completed"}}]]
    )


class RuleStep(BaseModel):
    rule: int
    goal: str | None
    matched: bool
    failed: list[Any] = Field(description="The conditions that did not hold")


class SampleRejection(BaseModel):
    code: str
    message: str
    field: str | None


class RejectedSample(BaseModel):
    index: int
    rejected: SampleRejection


class ClassifiedSample(BaseModel):
    index: int
    stage: str
    goal: str | None
    value: float | None
    lead: bool
    order: bool
    explain: list[RuleStep]


class RuleTestAnswer(BaseModel):
    version: int | None = Field(description="The ruleset's version; null for a proposed one")
    results: list[ClassifiedSample | RejectedSample]


class CountsByName(BaseModel):
    stages: dict[str, int]
    goals: dict[str, int]


class PreviewAnswer(BaseModel):
    from_: Moment = Field(alias="from")
    to: Moment
    current: CountsByName
    proposed: CountsByName
    changes: list[dict[str, str | int]] = Field(
        description="Each stage or goal whose count changes: {stage or goal, current, proposed, delta}"
    )


class Job(BaseModel):
    id: int
    kind: str
    status: Literal["queued", "running", "done", "failed"]
    params: dict[str, Any]
    done: int
    total: int
    progress: float
    error: str | None
    created_at: datetime
    updated_at: datetime


class Jobs(BaseModel):
    jobs: list[Job]


# ---------------------------------------------------------------- plan targets, failed events


class TargetsUpdated(BaseModel):
    updated: int


class StoredTarget(BaseModel):
    kpi: str
    month: str = Field(examples=["2026-03"])
    value: float
    direction: Direction


class Targets(BaseModel):
    targets: list[StoredTarget]


class FailedEvent(BaseModel):
    id: int
    received_at: datetime
    code: str
    message: str
    field: str | None
    raw: Any = Field(description="The message as received (JSON, or the text when it was not JSON)")
    replayed_at: datetime | None


class FailedEvents(BaseModel):
    items: list[FailedEvent]
    next_before_id: int | None = Field(description="before_id for the next page; null on the last")


class StillFailing(BaseModel):
    id: int
    code: str
    message: str
    field: str | None


class Replayed(BaseModel):
    replayed: int
    accepted: int
    duplicates: int
    still_failing: list[StillFailing]


# ---------------------------------------------------------------- sites, keys, audit


class SiteSummary(BaseModel):
    id: int
    name: str
    timezone: str
    domains: list[str]
    write_key: str | None = Field(description="The current write key (public: it is in every page)")
    created_at: datetime


class SiteDeleted(BaseModel):
    deleted: int


class KeyInfo(BaseModel):
    id: int
    kind: Literal["write", "read", "admin"]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    valid: bool


class SiteKeys(BaseModel):
    site: int
    keys: list[KeyInfo]


class RotatedKeys(SiteKeys):
    write_key: str | None = Field(None, description="When rotated (shown only in this answer)")
    read_key: str | None = Field(None, description="When rotated (shown only in this answer)")
    admin_key: str | None = Field(None, description="When rotated (shown only in this answer)")


class KeyRevoked(BaseModel):
    site: int
    revoked: int
    kind: Literal["write", "read", "admin"]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(examples=["admin"])
    key_id: int | None
    action: str = Field(examples=["rules.put"])
    summary: dict[str, Any]


class AuditPage(BaseModel):
    site: int
    entries: list[AuditEntry]
    next_before: int | None = Field(description="before for the next page; null on the last")


class Health(BaseModel):
    status: Literal["ok", "ready"]
