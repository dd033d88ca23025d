"""Erasure and access for one person (GDPR art. 17 and 15), with the site's admin key:
`DELETE /v1/persons/{id}` and `GET /v1/persons/{id}/export`. The erasure itself is owned by
app.pipeline.erasure; this layer checks the id, answers and records the audit entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.audit import record
from app.api.deps import AdminSite, Conn, Pool, Rulesets, SettingsDep
from app.api.failed import failed_event
from app.api.schemas import FailedEvent, answers
from app.domain.erasure import InvalidPersonId, PersonRef, parse_person_id
from app.domain.normalize import MAX_ID_LENGTH
from app.domain.person import SessionFacts
from app.errors import NotFound, Unprocessable
from app.pipeline.erasure import erase_person
from app.store import erasure as erasure_store
from app.store.events import resolve_links

router = APIRouter(tags=["persons"])
EXPORT_MAX_EVENTS = 100_000  # stored events per export answer (a person past it: `complete` is false)

PersonPath = Annotated[
    str,
    Path(
        pattern=r"^[ua]:[\s\S]+$",
        max_length=2 + MAX_ID_LENGTH,
        description="The person id as the API shows it: 'u:<userId>' or 'a:<anonymousId>' (no bare ids: "
        "erasure and export name one person exactly)",
        examples=["u:42"],
    ),
]


ERRORS = answers(
    e404="Nothing is stored about this person (`person_not_found`)",
    e422="Not a person id (`invalid_parameter`, field `person_id`)",
)


class ErasedCounts(BaseModel):
    events: int = Field(description="Stored events (with their facts)")
    pending_events: int = Field(description="Acknowledged rows not derived yet, removed from the inbox")
    sessions: int
    person_state: int = Field(description="1 when the person's derivation state was removed")
    identity_links: int = Field(description="Links of the person's userId to anonymousIds")
    order_ids: int = Field(description="Order ids the person's counted orders held (free again)")
    duplicate_orders: int = Field(description="Losing order copies: the person's, and every copy of their orders")
    rejected_messages: int = Field(description="Kept rejected messages that carried the person's identifiers")


class ErasureAnswer(BaseModel):
    site: int
    person_id: str
    erased: ErasedCounts


class ExportedFacts(BaseModel):  # as stored: null where derivation left a column empty
    stage: str | None
    goal: str | None
    value: float | None
    is_lead: bool
    is_order: bool
    is_first_event: bool
    is_first_order: bool
    is_repeat_order: bool
    session_key: str | None
    nps_score: float | None
    ruleset_version: int | None


class ExportedEvent(BaseModel):
    event_id: int = Field(description="The event's id (for a pending event: its inbox id, its future event id)")
    message_id: str
    type: str
    event: str | None
    name: str | None
    anonymous_id: str | None
    user_id: str | None
    event_at: datetime
    received_at: datetime
    sent_at: datetime | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any] = Field(description="As received, minus the client IP (never stored)")
    path: str | None
    url: str | None
    referrer: str | None
    campaign: dict[str, Any]
    channel: str
    device: str
    session_id: str | None = Field(description="context.sessionId as sent")
    is_bot: bool
    facts: ExportedFacts | None = Field(description="What derivation decided; null for a pending event")


class IdentityLink(BaseModel):
    anonymous_id: str
    user_id: str
    linked_at: datetime = Field(description="Event time of the earliest message that carried both ids")


class PersonState(BaseModel):
    first_seen_at: datetime | None
    last_event_at: datetime | None
    orders: int
    revenue: float
    leads: int


class DuplicateOrder(BaseModel):
    event_id: int
    order_id: str
    message_id: str
    event_at: datetime
    received_at: datetime
    anonymous_id: str | None
    user_id: str | None
    properties: dict[str, Any]


class KeptRejectedMessage(FailedEvent):
    raw: Any = Field(description="The message as received (minus the client IP)")


class ExportedIdentities(BaseModel):
    user_id: str | None
    anonymous_ids: list[str] = Field(description="AnonymousIds whose anonymous events are this person's")
    emails: list[str] = Field(description="E-mail addresses their events sent (traits, context.traits, properties)")
    phones: list[str] = Field(description="Phone numbers their events sent (digits only)")


class ExportAnswer(BaseModel):
    site: int
    person_id: str
    exported_at: datetime
    complete: bool = Field(description=f"false when the person has more than {EXPORT_MAX_EVENTS} stored events")
    identities: ExportedIdentities
    person_state: PersonState | None
    events: list[ExportedEvent] = Field(description="Stored events, oldest first (bots included, flagged)")
    pending_events: list[ExportedEvent] = Field(description="Acknowledged, not derived yet")
    sessions: list[SessionFacts]  # the stored rows, as derivation keeps them
    identity_links: list[IdentityLink]
    duplicate_orders: list[DuplicateOrder] = Field(description="Copies of an order id that did not count")
    rejected_messages: list[KeptRejectedMessage] = Field(description="Kept rejected messages carrying their ids")


def _person(person_id: str) -> PersonRef:
    try:
        return parse_person_id(person_id)
    except InvalidPersonId as exc:
        detail = {"field": "person_id", "message": str(exc), "type": "value_error"}
        raise Unprocessable(f"invalid value for person_id: {exc}", "invalid_parameter", [detail]) from None


async def _not_found(conn: asyncpg.Connection, site_id: int, person: PersonRef) -> NotFound:
    detail = {"field": "person_id", "message": "nothing is stored about this person"}
    if person.anonymous_id is not None:
        linked = (await resolve_links(conn, site_id, [person.anonymous_id])).get(person.anonymous_id)
        if linked is not None:  # an identified visitor: their anonymous history is the user's
            detail["message"] = f"this anonymousId's events belong to person u:{linked}"
    return NotFound(f"no person {person.person_id!r} on this site", "person_not_found", [detail])


EXPORT_DESCRIPTION = """Everything stored about one person (GDPR art. 15) as JSON, read on one
snapshot: their stored events with what derivation decided about each, their acknowledged events
not derived yet, sessions, person state, identity links, losing order copies and the rejected
messages that carry their ids. Times in UTC. Recorded in the audit log (counts only)."""


@router.get(
    "/v1/persons/{person_id:path}/export",
    summary="Export everything stored about one person (GDPR art. 15)",
    description=EXPORT_DESCRIPTION,
    response_model=ExportAnswer,
    response_class=JSONResponse,
    responses=ERRORS,
)
async def export(person_id: PersonPath, request: Request, site: AdminSite, conn: Conn) -> dict[str, Any]:
    person = _person(person_id)
    site_id, pid = site.site_id, person.person_id
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        ids = await erasure_store.person_identifiers(conn, site_id, person)
        anonymous = sorted(ids.anonymous_ids)
        events = await erasure_store.person_events(conn, site_id, pid, EXPORT_MAX_EVENTS + 1)
        state = await erasure_store.person_state(conn, site_id, pid)
        listed: dict[str, list[dict[str, Any]]] = {
            "events": [_event(e, with_facts=True) for e in events[:EXPORT_MAX_EVENTS]],
            "pending_events": [
                _event({**e, "event_id": e["inbox_id"]}, with_facts=False)
                for e in await erasure_store.pending_events(conn, site_id, person.user_id, anonymous)
            ],
            "sessions": await erasure_store.person_sessions(conn, site_id, pid),
            "identity_links": await erasure_store.person_links(conn, site_id, person.user_id),
            "duplicate_orders": await erasure_store.duplicate_orders(conn, site_id, person.user_id, anonymous),
            "rejected_messages": [failed_event(r) for r in await erasure_store.rejected_messages(conn, site_id, ids)],
        }
    if state is None and not any(listed.values()):
        raise await _not_found(conn, site_id, person)
    counts = {k: len(v) for k, v in listed.items()}
    await record(conn, request, site_id, "person.export", counts)
    identities = {"user_id": person.user_id, "anonymous_ids": anonymous, "emails": sorted(ids.emails),
                  "phones": sorted(ids.phones)}  # fmt: skip
    return {
        "site": site_id,
        "person_id": pid,
        "exported_at": datetime.now(UTC),
        "complete": len(events) <= EXPORT_MAX_EVENTS,
        "identities": identities,
        "person_state": state,
        **listed,
    }


ERASE_DESCRIPTION = """Erase everything stored about one person (GDPR art. 17), in one transaction
under the site's derivation lock: their events and derived facts, sessions, person state, identity
links of their userId (so the anonymous history linked through them goes with them), their
acknowledged events not derived yet, their order copies, and the rejected messages that carry their
userId, one of their anonymousIds, or an e-mail address or phone number their events sent. Every
KPI, funnel and report afterwards is what the remaining events give. The claimed messageIds stay,
so an SDK retrying an erased message gets a duplicate, never a new copy; new messages (new
messageIds) for the same ids are accepted afterwards, as a new person. Recorded in the audit log
(counts only, never the id)."""


@router.delete(
    "/v1/persons/{person_id:path}",
    summary="Erase one person (GDPR art. 17)",
    description=ERASE_DESCRIPTION,
    response_model=ErasureAnswer,
    response_class=JSONResponse,  # a JSONResponse: OpenAPI then describes the answer by its model
    responses=ERRORS,
)
async def erase(
    person_id: PersonPath,
    request: Request,
    site: AdminSite,
    conn: Conn,
    pool: Pool,
    rulesets: Rulesets,
    settings: SettingsDep,
) -> dict[str, Any]:
    person = _person(person_id)

    async def audit(tx: asyncpg.Connection, counts: dict[str, int]) -> None:
        await record(tx, request, site.site_id, "person.erase", counts)

    erased = await erase_person(pool, rulesets, site.site_id, person, settings.derive_batch, audit)
    if erased is None:
        raise await _not_found(conn, site.site_id, person)
    return {"site": site.site_id, "person_id": person.person_id, "erased": erased.counts()}


EXPORTED_NAMES = {"event_name": "event", "session_hint": "session_id"}  # stored column -> ExportedEvent field


def _event(row: dict[str, Any], with_facts: bool) -> dict[str, Any]:
    out = {EXPORTED_NAMES.get(k, k): row[k] for k in erasure_store.EVENT_COLUMNS}
    out["facts"] = {k: row[k] for k in erasure_store.EVENT_FACTS} if with_facts else None
    return out
