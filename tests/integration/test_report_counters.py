"""/v1/quality and /v1/cohorts from the deriver's report counters (app.store.report_counters)
against the same endpoints scanning the events (source=events), and both against plain Python over
the raw messages: in several zones (half-hour and 45-minute offsets, DST), granularities and
periods, on realistic traffic with receipt times of their own (late events), bots, orders in other
currencies, order copies that displace a stored one, late identifies that merge buyers, repeat
buyers, and an erasure; then with the counters rebuilt (as a migrated database has them built)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from app.demo import generate_messages
from app.domain.normalize import IncomingEvent, Receipt, normalize
from app.pipeline import ingest
from app.rollups import convert
from app.store import rollups as rollup_store
from app.store.database import create_pool
from tests.conftest import create_site, drain
from tests.oracle import ORDER_NAMES, Oracle, is_bot_agent, local_midnight, make_buckets, parse_ts

START = datetime(2026, 1, 10, tzinfo=UTC)
DAYS, PERSONS, SEED = 75, 120, 23
CURRENCY = "EUR"
ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu", "Europe/Berlin")
PERIODS = (
    (date(2026, 1, 1), date(2026, 4, 1)),
    (date(2026, 1, 20), date(2026, 3, 10)),
    (date(2026, 2, 1), date(2026, 5, 1)),
)
GRANULARITIES = ("day", "week", "month", "total")
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
ERASED = "u:rc-erased"


def _msg(kind: str, mid: str, at: str, anon: str | None = None, user: str | None = None, ua: str = DESKTOP,
         **extra: Any) -> dict[str, Any]:  # fmt: skip
    msg: dict[str, Any] = {"type": kind, "messageId": f"rc-{mid}", "timestamp": at, "context": {"userAgent": ua}}
    msg.update(extra)
    if anon:
        msg["anonymousId"] = anon
    if user:
        msg["userId"] = user
    return msg


def _order(mid: str, at: str, anon: str | None = None, user: str | None = None, **properties: Any) -> dict[str, Any]:
    return _msg("track", mid, at, anon, user, event="Order Completed", properties=properties)


def _edge_messages() -> list[tuple[dict[str, Any], datetime]]:
    """(message, received at) of the cases the demo traffic lacks."""
    cases = [
        # orders in other currencies (case and spaces do not matter; '' is none), and in none
        (_order("cur-1", "2026-02-03T10:00:00Z", "rc-cur", order_id="rc-o1", revenue=20, currency="usd"), None),
        (_order("cur-2", "2026-02-03T11:00:00Z", "rc-cur", order_id="rc-o2", revenue=30, currency=" eur "), None),
        (_order("cur-3", "2026-02-04T11:00:00Z", "rc-cur", order_id="rc-o3", revenue=15, currency=""), None),
        (_order("cur-4", "2026-02-05T11:00:00Z", "rc-cur", order_id="rc-o4", revenue=12), None),
        (_order("cur-5", "2026-03-05T23:50:00Z", "rc-cur", order_id="rc-o5", currency="GBP"), None),
        (_order("cur-6", "2026-03-06T09:00:00Z", "rc-cur2", order_id="rc-o6", revenue=8.55, currency="Usd"), None),
        # bots, one of them ordering
        (_msg("page", "bot-1", "2026-02-10T08:00:00Z", "rc-bot", ua=BOT), None),
        (_order("bot-2", "2026-02-10T08:01:00Z", "rc-bot", order_id="rc-o7", revenue=99, currency="usd")
         | {"context": {"userAgent": BOT}}, None),
        # a buyer who orders anonymously, then as a user, identified late: the merge moves the
        # anonymous first order into the user's history (their cohort moves a month back)
        (_order("merge-1", "2026-01-28T12:00:00Z", "rc-anon", order_id="rc-o8", revenue=40), None),
        (_order("merge-2", "2026-02-20T12:00:00Z", None, "rc-user", order_id="rc-o9", revenue=25), None),
        (_order("merge-3", "2026-03-02T12:00:00Z", "rc-anon", order_id="rc-o10", revenue=5), None),
        (_msg("identify", "merge-4", "2026-01-27T09:00:00Z", "rc-anon", "rc-user"), datetime(2026, 3, 20, tzinfo=UTC)),
        # an order id sent twice: the copy received later happened earlier, and displaces the stored one
        (_order("copy-1", "2026-02-14T15:00:00Z", None, "rc-copies", order_id="rc-o11", revenue=70, currency="usd"),
         None),
        (_order("copy-2", "2026-02-12T15:00:00Z", None, "rc-copies", order_id="rc-o11", revenue=70,
                currency="usd"), datetime(2026, 3, 28, tzinfo=UTC)),
        (_order("copy-3", "2026-03-14T15:00:00Z", None, "rc-copies", order_id="rc-o12", revenue=10), None),
        # a repeat buyer, whom the erasure takes away
        (_order("erase-1", "2026-02-02T10:00:00Z", None, "rc-erased", order_id="rc-o13", revenue=11,
                currency="usd"), None),
        (_order("erase-2", "2026-02-02T10:05:00Z", None, "rc-erased", order_id="rc-o14", revenue=12), None),
        (_order("erase-3", "2026-03-09T10:05:00Z", None, "rc-erased", order_id="rc-o15", revenue=13), None),
        # a late event near a month's edge in every zone checked
        (_msg("page", "late-1", "2026-02-28T23:59:00Z", "rc-late"), datetime(2026, 3, 3, 1, tzinfo=UTC)),
    ]
    return [(m, received or parse_ts(m["timestamp"]) + timedelta(minutes=3)) for m, received in cases]


def _traffic() -> list[tuple[dict[str, Any], datetime]]:
    """Demo journeys received after a delay of their own (a second to four days: some late), and the
    edge cases; in order of receipt."""
    rng = random.Random(SEED)
    delays = (timedelta(seconds=1), timedelta(minutes=7), timedelta(hours=3), timedelta(hours=30), timedelta(days=4))
    demo = generate_messages(PERSONS, DAYS, START, SEED)
    received = [(m, parse_ts(m["timestamp"]) + rng.choice(delays)) for m in demo]
    return sorted(received + _edge_messages(), key=lambda item: item[1])


async def _load(database_url: str, site_id: int, traffic: list[tuple[dict[str, Any], datetime]]) -> None:
    """Into the inbox with their receipt times (as the demo loader stages them), derived a chunk at a
    time in order of receipt."""
    pool = await create_pool(database_url, 1, 2)
    try:
        for offset in range(0, len(traffic), 400):
            chunk = [normalize(m, Receipt(received_at=r, site_domains=())) for m, r in traffic[offset : offset + 400]]
            events = [e for e in chunk if isinstance(e, IncomingEvent)]
            assert len(events) == len(chunk)
            async with pool.acquire() as conn, conn.transaction():
                await ingest.append(conn, site_id, events)
            await drain(database_url)
    finally:
        await pool.close()


# --- plain Python over the raw messages ------------------------------------------------------------


def _stored(traffic: list[tuple[dict[str, Any], datetime]]) -> list[tuple[dict[str, Any], datetime]]:
    """The messages that are stored events: of the copies of an order id, the first by event time
    (then messageId) only."""
    best: dict[str, tuple[datetime, str]] = {}
    for m, _ in traffic:
        order_id = (m.get("properties") or {}).get("order_id")
        if m["type"] == "track" and m.get("event") in ORDER_NAMES and order_id:
            key = (parse_ts(m["timestamp"]), m["messageId"])
            best[order_id] = min(best.get(order_id, key), key)
    return [(m, r) for m, r in traffic
            if not (order_id := (m.get("properties") or {}).get("order_id"))
            or best.get(order_id, (None, m["messageId"]))[1] == m["messageId"]]  # fmt: skip


def _other_currency(m: dict[str, Any]) -> bool:
    """Sent in another currency than the site's (an empty one is none)."""
    currency = (m.get("properties") or {}).get("currency")
    return isinstance(currency, str) and currency.strip() != "" and currency.strip().upper() != CURRENCY


def _quality_oracle(stored: list[tuple[dict[str, Any], datetime]], frm: date, to: date, gran: str, tz: str
                    ) -> list[tuple[datetime, int, int, int]]:  # fmt: skip
    """(bucket start, bots, late, other-currency orders) by receipt time."""
    out = []
    for b in make_buckets(frm, to, gran, ZoneInfo(tz)):
        inside = [(m, r) for m, r in stored if b.start <= r < b.end]
        bots = sum(1 for m, _ in inside if is_bot_agent(m["context"].get("userAgent")))
        late = sum(1 for m, r in inside if parse_ts(m["timestamp"]) < r - timedelta(hours=24))
        other = sum(1 for m, _ in inside if m["type"] == "track" and m.get("event") in ORDER_NAMES
                    and not is_bot_agent(m["context"].get("userAgent")) and _other_currency(m))  # fmt: skip
        out.append((b.start, bots, late, other))
    return out


def _cohort_oracle(stored: list[tuple[dict[str, Any], datetime]], frm: date, to: date, tz: str
                   ) -> dict[tuple[str, str], tuple[int, int, int, int]]:  # fmt: skip
    """(cohort, month) -> (active, repeat customers, orders, revenue in cents); other currencies'
    values left out."""
    messages = [m for m, _ in stored]
    unvalued = frozenset(m["messageId"] for m in messages if _other_currency(m))
    zone = ZoneInfo(tz)
    return Oracle(messages).cohorts(local_midnight(frm, zone), local_midnight(to, zone), tz, unvalued)


# --- the answers -----------------------------------------------------------------------------------


async def _get(client: httpx.AsyncClient, site: dict[str, Any], path: str, source: str, **params: Any) -> Any:
    answer = await client.get(path, params={**params, "source": source},
                              headers={"Authorization": f"Bearer {site['read_key']}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-racetrack-source"] == source, (path, params, answer.headers["x-racetrack-source"])
    return answer.json()


def _cohort_cells(body: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {(c["cohort"], m["month"]): (m["active"], m["repeat_customers"], m["orders"], round(m["revenue"] * 100))
            for c in body["cohorts"] for m in c["months"] if m["active"]}  # fmt: skip


async def _check(client: httpx.AsyncClient, site: dict[str, Any], stored: list[tuple[dict[str, Any], datetime]] | None,
                 quick: bool = False) -> list[str]:  # fmt: skip
    """Counters against the event scans, and (unless `stored` is None) against the oracle."""
    problems: list[str] = []
    for tz in ZONES[:2] if quick else ZONES:
        for frm, to in PERIODS:
            period = {"from": frm.isoformat(), "to": to.isoformat(), "tz": tz}
            for gran in ("week", "total") if quick else GRANULARITIES:
                counted = await _get(client, site, "/v1/quality", "rollups", **period, granularity=gran)
                scanned = await _get(client, site, "/v1/quality", "events", **period, granularity=gran)
                if counted != scanned:
                    problems.append(f"quality {tz} {frm}..{to} {gran}: counters {counted} != events {scanned}")
                got = [(parse_ts(b["start"]), b["bots"], b["late"], b["other_currency_orders"])
                       for b in counted["buckets"]]  # fmt: skip
                if stored is not None and got != (want := _quality_oracle(stored, frm, to, gran, tz)):
                    problems.append(f"quality {tz} {frm}..{to} {gran}: {got} != oracle {want}")
            counted = await _get(client, site, "/v1/cohorts", "rollups", **period)
            scanned = await _get(client, site, "/v1/cohorts", "events", **period)
            if counted != scanned:
                problems.append(f"cohorts {tz} {frm}..{to}: counters {counted} != events {scanned}")
            if stored is None:
                continue
            if (got_cells := _cohort_cells(counted)) != (want_cells := _cohort_oracle(stored, frm, to, tz)):
                problems.append(f"cohorts {tz} {frm}..{to}: {got_cells} != oracle {want_cells}")
    return problems


def _assert_exercised(stored: list[tuple[dict[str, Any], datetime]]) -> None:
    """The data holds what the comparison is about (in the edge cases' period)."""
    frm, to = PERIODS[0]
    (_, bots, late, other), = _quality_oracle(stored, frm, to, "total", "UTC")  # fmt: skip
    assert bots >= 2 and late >= 50 and other >= 4, (bots, late, other)
    cells = _cohort_oracle(stored, frm, to, "UTC")
    assert len({c for c, _ in cells}) == 3 and any(r for _, r, _, _ in cells.values()), cells
    assert any(m != c for c, m in cells), "no activity after a cohort's first month"


async def test_counters_answer_as_the_events_and_the_oracle(client: httpx.AsyncClient, database_url: str,
                                                            db: asyncpg.Connection) -> None:  # fmt: skip
    traffic = _traffic()
    stored = _stored(traffic)
    _assert_exercised(stored)
    site = await create_site(client, timezone="America/St_Johns", currency=CURRENCY)
    await _load(database_url, site["id"], traffic)
    assert await db.fetchval("SELECT count(*) FROM duplicate_order WHERE site_id = $1", site["id"]) == 1
    assert not (problems := await _check(client, site, stored)), "\n".join(problems[:20])

    # an erasure takes the person out of both
    admin = {"Authorization": f"Bearer {site['admin_key']}"}
    assert (await client.delete(f"/v1/persons/{ERASED}", headers=admin)).status_code == 200
    stored = [(m, r) for m, r in stored if m.get("userId") != "rc-erased"]
    assert not (problems := await _check(client, site, stored, quick=True)), "\n".join(problems[:20])

    # rebuilt from the events (a migrated database's counters): the same, read only once complete
    before = await db.fetch("SELECT * FROM quality_counter WHERE site_id = $1 AND (bots, late, unvalued_orders)"
                            " <> (0, 0, 0) ORDER BY slot, currency", site["id"])  # fmt: skip
    cohorts = await db.fetch("SELECT * FROM cohort_month WHERE site_id = $1 AND active > 0 ORDER BY 2, 3", site["id"])
    await db.execute("DELETE FROM quality_counter WHERE site_id = $1", site["id"])
    await db.execute("UPDATE customer_orders SET orders = orders + 1 WHERE site_id = $1", site["id"])
    await db.execute("UPDATE rollup_layout SET complete = false WHERE site_id = $1 AND family IN ('quality', 'cohort')",
                     site["id"])  # fmt: skip
    period = {"from": "2026-01-01", "to": "2026-04-01"}
    await _get(client, site, "/v1/quality", "events", **period)  # asked for the counters: answered from the events
    answer = await client.get("/v1/cohorts", params=period, headers={"Authorization": f"Bearer {site['read_key']}"})
    assert answer.headers["x-racetrack-source"] == "events"
    pool = await create_pool(database_url, 1, 1)
    try:
        async with pool.acquire() as conn:
            await convert(conn, site["id"], ZoneInfo("America/St_Johns"))
            layouts = await rollup_store.rollup_layouts(conn, site["id"])
    finally:
        await pool.close()
    assert all(complete for _, complete in layouts.values()), layouts
    assert await db.fetch("SELECT * FROM quality_counter WHERE site_id = $1 AND (bots, late, unvalued_orders)"
                          " <> (0, 0, 0) ORDER BY slot, currency", site["id"]) == before  # fmt: skip
    assert await db.fetch("SELECT * FROM cohort_month WHERE site_id = $1 AND active > 0 ORDER BY 2, 3",
                          site["id"]) == cohorts  # fmt: skip
    assert not (problems := await _check(client, site, stored, quick=True)), "\n".join(problems[:20])


async def test_edges_off_quarter_hours_are_answered_from_the_events(client: httpx.AsyncClient,
                                                                    database_url: str) -> None:  # fmt: skip
    site = await create_site(client, currency=CURRENCY)
    await _load(database_url, site["id"], sorted(_edge_messages(), key=lambda item: item[1]))
    off = {"from": "2026-02-03T10:07:00Z", "to": "2026-03-10T00:00:00Z"}
    quality = await _get(client, site, "/v1/quality", "events", **off, granularity="total")
    # GBP and Usd (of the order sent twice, the copy that counts is received after the period);
    # ' eur ' is the site's currency, '' none
    assert quality["buckets"][0]["other_currency_orders"] == 2
    assert (await _get(client, site, "/v1/cohorts", "events", **off))["cohorts"]
    answer = await client.get("/v1/quality", params={**off, "granularity": "total"},
                              headers={"Authorization": f"Bearer {site['read_key']}"})  # fmt: skip
    assert answer.headers["x-racetrack-source"] == "events" and answer.json() == quality


# orders of 30 or more only: cheaper ones stop being orders, so first orders and cohorts move
RULES = """rules:
  - goal: repeat_purchase
    stage: engage
    order: true
    when: {type: track, event: Order Completed, properties.revenue: {gte: 30}, person.orders_before: {gte: 1}}
  - goal: purchase
    stage: convert
    order: true
    when: {type: track, event: Order Completed, properties.revenue: {gte: 30}}
  - goal: page_view
    stage: reach
    when: {type: {in: [page, screen]}}
"""


async def test_a_reclassification_keeps_the_counters_exact(client: httpx.AsyncClient, database_url: str) -> None:
    site = await create_site(client, timezone="Asia/Kolkata", currency=CURRENCY)
    await _load(database_url, site["id"], _traffic())
    admin = {"Authorization": f"Bearer {site['admin_key']}"}
    before = await _get(client, site, "/v1/cohorts", "rollups", **{"from": "2026-01-01", "to": "2026-04-01"})
    put = await client.put("/v1/rules", content=RULES, headers={**admin, "Content-Type": "application/yaml"})
    assert put.status_code == 200, put.text
    job = await client.post("/v1/reclassify", json={"from": "2026-01-01", "to": "2026-03-01"}, headers=admin)
    assert job.status_code == 202, job.text
    for _ in range(300):
        status = (await client.get(f"/v1/jobs/{job.json()['id']}", headers=admin)).json()
        if status["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "done", status
    after = await _get(client, site, "/v1/cohorts", "rollups", **{"from": "2026-01-01", "to": "2026-04-01"})
    assert _cohort_cells(after) != _cohort_cells(before)
    assert not (problems := await _check(client, site, None, quick=True)), "\n".join(problems[:20])
