"""Failed events: every rejected message is kept raw with its reason; admins list and replay them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.api.audit import record
from app.api.deps import AdminSite, Conn, SettingsDep, WriterDep
from app.api.ingest import rejection_fields
from app.api.schemas import FailedEvent, FailedEvents, Replayed, answers
from app.domain.normalize import IncomingEvent, Receipt, Rejection, normalize
from app.store import failed as failed_store

router = APIRouter(tags=["failed events"])
REPLAY_MAX = 5000
BIGINT = 2**63 - 1
FailedId = Annotated[int, Field(ge=1, le=BIGINT)]


def _decoded(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


_FAILED_EVENT_FIELDS = tuple(name for name in FailedEvent.model_fields if name != "id")


def failed_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A failed_event row as the API shows it (FailedEvent): its failed_id as `id`, raw as in row."""
    return {"id": row["failed_id"], **{name: row[name] for name in _FAILED_EVENT_FIELDS}}


@router.get(
    "/v1/failed-events",
    summary="Rejected messages, newest first, with their reason and raw body",
    responses=answers(FailedEvents),
)
async def list_failed(
    site: AdminSite,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first", examples=[100])] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=BIGINT, description="Page: ids below this one")] = None,
    include_replayed: Annotated[
        bool, Query(description="Also list the ones already replayed successfully", examples=[False])
    ] = False,
) -> dict[str, Any]:
    rows = await failed_store.list_failed(conn, site.site_id, limit, before_id, include_replayed)
    items = [failed_event({**r, "raw": _decoded(r["raw"])}) for r in rows]
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}


class Replay(BaseModel):
    ids: list[FailedId] | None = Field(
        None, description="Failed-event ids to replay; default: every pending one", max_length=REPLAY_MAX
    )


@router.post(
    "/v1/failed-events/replay",
    summary="Re-ingest the rejected messages that the current code now accepts",
    responses=answers(Replayed),
)
async def replay(
    body: Replay, request: Request, site: AdminSite, conn: Conn, writer: WriterDep, settings: SettingsDep
) -> dict[str, Any]:
    rows = await failed_store.pending_failed(conn, site.site_id, body.ids, REPLAY_MAX)
    accepted: list[tuple[int, IncomingEvent]] = []
    still: list[tuple[int, Rejection]] = []
    for row in rows:
        raw = _decoded(row["raw"])
        # normalized as of its first arrival: clock-skew correction and event time stay the same
        receipt = Receipt(received_at=row["received_at"], site_domains=site.domains,
                          max_future=timedelta(hours=settings.max_future_skew_hours))  # fmt: skip
        result = (
            normalize(raw, receipt)
            if len(row["raw"]) <= settings.message_max_bytes
            else Rejection("message_too_large", f"message exceeds {settings.message_max_bytes} bytes", "message")
        )
        if isinstance(result, Rejection):
            still.append((row["failed_id"], result))
        else:
            accepted.append((row["failed_id"], result))
    written = await writer.submit(site.site_id, [e for _, e in accepted])  # returns after COMMIT
    async with conn.transaction():
        await failed_store.mark_replayed(conn, site.site_id, [i for i, _ in accepted])
        await failed_store.update_reasons(conn, site.site_id, still)
        summary = {"replayed": len(accepted), "accepted": written.accepted, "still_failing": len(still)}
        await record(conn, request, site.site_id, "failed_events.replay", summary)
    return {
        "replayed": len(accepted),
        "accepted": written.accepted,
        "duplicates": written.duplicates,
        "still_failing": [{"id": i, **rejection_fields(r)} for i, r in still],
    }
