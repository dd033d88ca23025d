"""After the run: resend what was left pending, then balance the client's ledger against the service.

- stored events: every acknowledged messageId is stored for the run's site, once (no loss), and
  nothing else is (no phantoms, no duplicate rows);
- KPIs: /v1/kpis (granularity=total, over the run's period) and /v1/funnel equal what the
  acknowledged journeys imply (payloads.fact_of), bots excluded.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from load_tests.ledger import answer_problem
from load_tests.payloads import Fact
from load_tests.server import asyncpg_dsn

KPI_FIELDS = (
    "visitors",
    "new_visitors",
    "sessions",
    "pageviews",
    "leads",
    "orders",
    "revenue",
    "new_customers",
    "repeat_orders",
)
FUNNEL_FIELDS = ("reach", "act", "convert")
DRAIN_ATTEMPTS = 6
DRAIN_BUDGET_S = 180.0
SETTLE_TIMEOUT_S = 120.0  # an upper bound: the wait ends when derivation is through


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    client: Any
    service: Any
    ok: bool | None  # None: informative only


def drain(base_url: str, ledger: dict[str, Any], timeout: float = 30.0) -> dict[str, int]:
    """Resend each pending payload (same bytes) until acknowledged, as an SDK flushing its queue."""
    outcome = {"resent_payloads": 0, "resent_acknowledged": 0, "resent_failed": 0}
    deadline = time.monotonic() + DRAIN_BUDGET_S
    for item in ledger["pending"]:
        outcome["resent_payloads"] += 1
        facts = item["facts"]
        ledger["unresolved"].update(facts)  # until an answer settles them below
        if time.monotonic() > deadline:  # the service is down: what is left stays unanswered
            outcome["resent_failed"] += 1
            continue
        body = base64.b64decode(item["body"])
        for attempt in range(1, DRAIN_ATTEMPTS + 1):
            try:
                answer = requests.post(base_url + item["path"], data=body, headers=item["headers"], timeout=timeout)
            except requests.RequestException:
                time.sleep(min(2.0**attempt, 10.0))
                continue
            try:
                parsed = answer.json() if answer.status_code == 200 else None
            except ValueError:
                parsed = None
            if answer_problem(answer.status_code, parsed, len(facts)) is None:
                ledger["acked"].update(facts)
                _settle(ledger, facts)
                outcome["resent_acknowledged"] += 1
                break
            if answer.status_code not in (429, 500, 502, 503, 504):
                ledger["refused"].extend(facts)
                _settle(ledger, facts)
                outcome["resent_failed"] += 1
                break
            time.sleep(min(float(answer.headers.get("Retry-After") or 2.0), 30.0))
        else:
            outcome["resent_failed"] += 1
    ledger["pending"] = []
    return outcome


def _settle(ledger: dict[str, Any], facts: dict[str, Any]) -> None:
    for mid in facts:
        ledger["unresolved"].pop(mid, None)


@dataclass(frozen=True, slots=True)
class Expected:
    kpis: dict[str, float]
    funnel: dict[str, int]


def expected_of(acked: dict[str, list[Any]]) -> Expected:
    facts = [Fact.from_list(row) for row in acked.values()]
    humans = [f for f in facts if not f.bot]
    orders_by_person: dict[str, list[float]] = defaultdict(list)
    for f in humans:
        if f.kind == "order":
            orders_by_person[f.person].append(f.at)
    orders = sum(len(times) for times in orders_by_person.values())
    persons = {f.person for f in humans}
    kpis = {
        "visitors": len(persons),
        "new_visitors": len(persons),  # every person of the run is new: its ids are the run's own
        "sessions": len({f.session for f in humans}),
        "pageviews": sum(f.kind == "page" for f in humans),
        "leads": sum(f.kind == "lead" for f in humans),
        "orders": orders,
        "revenue": sum(f.cents for f in humans if f.kind == "order") / 100,
        "new_customers": len(orders_by_person),
        "repeat_orders": orders - len(orders_by_person),
    }
    funnel = {
        "reach": len(persons),
        "act": len({f.person for f in humans if f.kind in ("act", "lead")}),
        "convert": len(orders_by_person),  # each customer's first order is a convert-stage purchase
    }
    return Expected(kpis, funnel)


async def _stored(database_url: str, site_id: int) -> tuple[int, set[str], int]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # wait for the watermark: until the site's inbox is empty, every acknowledged event derived
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM inbox WHERE site_id = $1)", site_id):
            if time.monotonic() > deadline:
                break  # reported below as missing events
            await asyncio.sleep(0.1)
        rows = await conn.fetchval("SELECT count(*) FROM event WHERE site_id = $1", site_id)
        ids = {r["message_id"] for r in await conn.fetch("SELECT message_id FROM event WHERE site_id = $1", site_id)}
        failed = await conn.fetchval("SELECT count(*) FROM failed_event WHERE site_id = $1", site_id)
    finally:
        await conn.close()
    return int(rows), ids, int(failed)


def event_rows(database_url: str, site_id: int, ledger: dict[str, Any]) -> tuple[list[Row], set[str]]:
    """The stored-events figures, and the messages stored though their sender never got an answer."""
    rows, ids, failed = asyncio.run(_stored(database_url, site_id))
    acked_ids = set(ledger["acked"])
    lost = acked_ids - ids
    unanswered = ids & set(ledger["unresolved"])  # sent, never answered: stored or not, both are correct
    phantoms = ids - acked_ids - unanswered
    phantoms_refused = phantoms & set(ledger["refused"])
    expected = len(acked_ids) + len(unanswered)
    figures = [
        Row("events stored (SELECT count(*) FROM event)", expected, rows, rows == expected),
        Row("distinct messageIds stored", expected, len(ids), len(ids) == expected),
        Row("acknowledged, not stored (loss)", 0, len(lost), not lost),
        Row("stored, never acknowledged", 0, len(phantoms), not phantoms),
        Row("  of which refused by the service", 0, len(phantoms_refused), not phantoms_refused),
        Row("stored, sent without any answer (not judged)", None, len(unanswered), None),
        Row("duplicate event rows", 0, rows - len(ids), rows == len(ids)),
        Row("failed_event rows (all messages valid)", 0, failed, failed == 0),
    ]
    return figures, unanswered


def _get(base_url: str, read_key: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    answer = requests.get(base_url + path, params=params, headers={"Authorization": f"Bearer {read_key}"}, timeout=60)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def kpi_rows(base_url: str, read_key: str, start: datetime, end: datetime, expected: Expected) -> list[Row]:
    """Compare once the answer says it includes every acknowledged event (its freshness), asking
    again while it does not, for up to SETTLE_TIMEOUT_S."""
    params = {"from": start.isoformat(), "to": end.isoformat(), "tz": "UTC"}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        answer = _get(base_url, read_key, "/v1/kpis", {**params, "granularity": "total"})
        if not answer["freshness"]["complete"] and time.monotonic() < deadline:
            continue  # the read waited its bound for derivation: ask again
        kpis = answer["buckets"][0]["kpis"]
        funnel = _get(base_url, read_key, "/v1/funnel", {**params, "funnel": "independent"})
        steps = {s["stage"]: s["persons"] for s in funnel["steps"]}
        rows = [_kpi_row(f"KPI {name}", expected.kpis[name], kpis.get(name)) for name in KPI_FIELDS]
        rows += [
            _kpi_row(f"funnel {stage} persons", expected.funnel[stage], steps.get(stage)) for stage in FUNNEL_FIELDS
        ]
        return rows


def _kpi_row(figure: str, client: float, service: Any) -> Row:
    if figure == "KPI revenue":
        ok = isinstance(service, int | float) and abs(service - client) < 0.005
        return Row(figure, f"{client:.2f}", f"{service:.2f}" if isinstance(service, int | float) else service, ok)
    return Row(figure, client, service, service == client)
