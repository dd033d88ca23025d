"""Read endpoints for dashboards (goals, goal funnel, persons, quality, cohorts, report), their CSV
forms, conditional GET, and the BI views, against real PostgreSQL. Data goes in through /v1/batch;
expected numbers are worked out by hand (the SHOP journeys below) or by plain Python over the same
messages (tests/oracle.py's facts, and demo traffic)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.demo import generate_messages
from tests.conftest import create_site
from tests.oracle import KPI_NAMES, Oracle

BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HUMAN = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
ORDER = "Order Completed"


def msg(
    kind: str, mid: str, at: str, anon: str | None = None, user: str | None = None, ua: str = HUMAN, **fields: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind, "messageId": mid, "timestamp": at, "context": {"userAgent": ua}, **fields}
    if anon:
        message["anonymousId"] = anon
    if user:
        message["userId"] = user
    return message


def order(mid: str, at: str, revenue: float, anon: str | None = None, user: str | None = None) -> dict[str, Any]:
    return msg("track", mid, at, anon, user, event=ORDER, properties={"order_id": f"o-{mid}", "revenue": revenue})


# Hand-made journeys (UTC). Facts worked out by hand are in the comments.
SHOP = [
    # alice: browses anonymously, identifies, buys (first order, March), buys again in April (repeat)
    msg("page", "m1", "2026-03-02T10:00:00Z", "a-alice", name="Home"),
    msg("track", "m2", "2026-03-02T10:05:00Z", "a-alice", event="Product Viewed"),
    msg("track", "m3", "2026-03-02T10:10:00Z", "a-alice", event="Product Added"),
    msg("identify", "m4", "2026-03-02T11:00:00Z", "a-alice", "alice", traits={"email": "alice@example.com"}),
    order("m5", "2026-03-03T09:00:00Z", 100, user="alice"),
    order("m6", "2026-04-10T09:00:00Z", 50, user="alice"),
    # bob: anonymous; views, signs up (lead), buys 15 days later without a cart event
    msg("page", "b1", "2026-03-05T12:00:00Z", "a-bob", name="Home"),
    msg("track", "b2", "2026-03-05T12:01:00Z", "a-bob", event="product_view"),
    msg("track", "b3", "2026-03-05T12:02:00Z", "a-bob", event="signup"),
    order("b4", "2026-03-20T12:00:00Z", 30, anon="a-bob"),
    # carol: first order in February; in March views, adds, buys again (repeat_purchase), NPS 9
    order("c1", "2026-02-25T08:00:00Z", 20, user="carol"),
    msg("track", "c2", "2026-03-10T08:00:00Z", user="carol", event="Product Viewed"),
    msg("track", "c3", "2026-03-10T08:30:00Z", user="carol", event="Product Added"),
    order("c4", "2026-03-10T09:00:00Z", 40, user="carol"),
    msg("track", "c5", "2026-03-12T10:00:00Z", user="carol", event="Survey Answered", properties={"score": 9}),
    # dave: adds to cart *before* viewing, then buys; buys again 10 days later
    msg("track", "d1", "2026-03-15T10:00:00Z", "a-dave", event="Product Added"),
    msg("track", "d2", "2026-03-15T10:10:00Z", "a-dave", event="Product Viewed"),
    order("d3", "2026-03-15T10:20:00Z", 10, anon="a-dave"),
    order("d4", "2026-03-25T10:00:00Z", 15, anon="a-dave"),
    # erin: one February page view
    msg("page", "e1", "2026-02-10T10:00:00Z", "a-erin", name="Home"),
    # a crawler: stored, excluded everywhere
    msg("track", "x1", "2026-03-04T10:00:00Z", "a-bot", ua=BOT, event="Product Viewed"),
    order("x2", "2026-03-04T10:01:00Z", 999, anon="a-bot") | {"context": {"userAgent": BOT}},
]
MARCH = {"from": "2026-03-01", "to": "2026-04-01"}


def read(site: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['read_key']}"}


async def ingest(client: httpx.AsyncClient, site: dict[str, Any], batch: list[dict[str, Any]]) -> dict[str, Any]:
    for start in range(0, len(batch), 400):
        answer = await client.post(
            "/v1/batch", json={"batch": batch[start : start + 400]}, auth=(site["write_key"], "")
        )
        assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def get(client: httpx.AsyncClient, site: dict[str, Any], path: str, **params: Any) -> Any:
    answer = await client.get(path, params=params, headers=read(site))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def get_csv(client: httpx.AsyncClient, site: dict[str, Any], path: str, **params: Any) -> list[dict[str, str]]:
    answer = await client.get(path, params=params, headers={**read(site), "Accept": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


@pytest.fixture
async def shop(client: httpx.AsyncClient) -> dict[str, Any]:
    site = await create_site(client, timezone="UTC")
    await ingest(client, site, SHOP)
    return site


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


# ---- /v1/goals -----------------------------------------------------------------------------------


async def test_goals_per_goal_completions_persons_and_value(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    body = await get(client, shop, "/v1/goals", **MARCH, granularity="total")
    assert (body["granularity"], body["tz"], len(body["buckets"])) == ("total", "UTC", 1)
    got = {g["goal"]: (g["completions"], g["persons"], g["value"]) for g in body["buckets"][0]["goals"]}
    assert got == {
        "page_view": (2, 2, 0.0),  # m1, b1
        "product_view": (4, 4, 0.0),  # m2, b2, c2, d2 (the crawler's x1 excluded)
        "add_to_cart": (3, 3, 0.0),  # m3, c3, d1
        "signup": (1, 1, 0.0),  # b3
        "purchase": (3, 3, 140.0),  # m5 100, b4 30, d3 10 (x2 excluded)
        "repeat_purchase": (2, 2, 55.0),  # c4 40, d4 15
        "nps": (1, 1, 0.0),  # c5
    }
    assert [g["goal"] for g in body["buckets"][0]["goals"]] == sorted(got)

    months = await get(client, shop, "/v1/goals", **{"from": "2026-02-01", "to": "2026-05-01"}, granularity="month")
    purchases = [
        next((g["completions"], g["value"]) for g in b["goals"] if g["goal"] == "purchase") for b in months["buckets"]
    ]
    repeats = [
        next((g["completions"], g["value"]) for g in b["goals"] if g["goal"] == "repeat_purchase")
        for b in months["buckets"]
    ]
    assert purchases == [(1, 20.0), (3, 140.0), (0, 0.0)]  # zero-filled in April
    assert repeats == [(0, 0.0), (2, 55.0), (1, 50.0)]


async def test_goals_csv_and_time_zone(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    rows = await get_csv(client, shop, "/v1/goals", **MARCH, granularity="week")
    by_week = {
        (r["start"][:10], r["goal"]): (int(r["completions"]), int(r["persons"]), float(r["value"])) for r in rows
    }
    assert by_week[("2026-03-02", "purchase")] == (1, 1, 100.0)  # m5; weeks start on Monday
    assert by_week[("2026-03-16", "purchase")] == (1, 1, 30.0)  # b4 on the 20th
    assert by_week[("2026-03-23", "repeat_purchase")] == (1, 1, 15.0)  # d4
    assert by_week[("2026-03-01", "purchase")] == (0, 0, 0.0)  # the clipped first week (Sunday 1 March)
    assert list(rows[0]) == ["start", "end", "goal", "completions", "persons", "value"]

    # St John's is UTC-3:30 until 8 March: a view at 02:00 UTC on the 3rd is 22:30 on the 2nd there
    late = msg("track", "z1", "2026-03-03T02:00:00Z", "a-zed", event="Product Viewed")
    await ingest(client, shop, [late])
    body = await get(
        client,
        shop,
        "/v1/goals",
        **{"from": "2026-03-02", "to": "2026-03-04"},
        granularity="day",
        tz="America/St_Johns",
    )
    views = [next(g["completions"] for g in b["goals"] if g["goal"] == "product_view") for b in body["buckets"]]
    assert body["tz"] == "America/St_Johns" and body["buckets"][0]["start"] == "2026-03-02T00:00:00-03:30"
    assert views == [2, 0]  # m2 and z1 (22:30 on the 2nd local)


# ---- /v1/funnel ----------------------------------------------------------------------------------


def steps_of(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (s["goal"], s["persons"], s["rate_from_previous"], s["rate_from_top"], s["median_seconds_from_previous"])
        for s in body["steps"]
    ]


async def test_ordered_goal_funnel(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    body = await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart,purchase")
    # entries: alice, bob, carol, dave; carts after the view: alice +300 s, carol +1800 s (dave's is before);
    # purchase after the cart: alice (22h50m later); carol's March order is a repeat_purchase
    assert steps_of(body) == [
        ("product_view", 4, None, 1.0, None),
        ("add_to_cart", 2, 0.5, 0.5, 1050.0),
        ("purchase", 1, 0.5, 0.25, 82200.0),
    ]
    assert (body["window"], body["window_seconds"]) == ("30d", 30 * 86400)

    optional = await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart?,purchase")
    # purchase: alice (82200 s after her cart), bob (15 days - 60 s after his view), dave (600 s after his view)
    assert steps_of(optional) == [
        ("product_view", 4, None, 1.0, None),
        ("add_to_cart", 2, 0.5, 0.5, 1050.0),
        ("purchase", 3, 0.75, 0.75, 82200.0),
    ]
    assert [s["optional"] for s in optional["steps"]] == [False, True, False]

    week = await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart?,purchase", window="7d")
    assert steps_of(week)[2] == ("purchase", 2, 0.5, 0.5, 41400.0)  # bob's order is 15 days after entry

    # the window is inclusive: carol's cart is exactly 30 minutes after her view
    assert (await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart", window="30m"))["steps"][1][
        "persons"
    ] == 2
    assert (await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart", window="29m"))["steps"][1][
        "persons"
    ] == 1


async def test_goal_funnel_period_bounds_the_entry_only(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    body = await get(
        client, shop, "/v1/funnel", **{"from": "2026-03-01", "to": "2026-03-06"}, steps="product_view,purchase"
    )
    assert [s["persons"] for s in body["steps"]] == [2, 2]  # alice and bob enter; bob buys on the 20th
    unknown = await get(client, shop, "/v1/funnel", **MARCH, steps="product_view,teleport")
    assert steps_of(unknown)[1] == ("teleport", 0, 0.0, 0.0, None)
    rows = await get_csv(client, shop, "/v1/funnel", **MARCH, steps="product_view,add_to_cart?,purchase", format="csv")
    assert list(rows[0]) == [
        "goal",
        "optional",
        "persons",
        "rate_from_previous",
        "rate_from_top",
        "median_seconds_from_previous",
    ]
    assert [(r["goal"], r["optional"], r["persons"]) for r in rows] == [
        ("product_view", "False", "4"),
        ("add_to_cart", "True", "2"),
        ("purchase", "False", "3"),
    ]


async def test_race_funnel_is_nested_by_default_with_independent_counts_beside(
    client: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    plain = await get(client, shop, "/v1/funnel", **MARCH)
    step_fields = {"stage", "persons", "rate_from_previous", "rate_from_top", "nested_persons", "independent_persons"}
    assert plain["funnel"] == "nested" and [set(s) for s in plain["steps"]] == [step_fields] * 4
    # by hand, March: everyone has an act event; alice, bob and dave a first purchase; carol's only
    # order is a repeat (engage) and dave's second one too: nested engage = dave alone
    assert [(s["stage"], s["persons"], s["independent_persons"]) for s in plain["steps"]] == [
        ("reach", 4, 4),
        ("act", 4, 4),
        ("convert", 3, 3),
        ("engage", 1, 2),
    ]
    assert (plain["steps"][3]["rate_from_previous"], plain["steps"][3]["rate_from_top"]) == (1 / 3, 0.25)
    by_events = await get(client, shop, "/v1/funnel", **MARCH, source="events")
    assert by_events["steps"] == plain["steps"]
    body = await get(client, shop, "/v1/funnel", **MARCH, medians="true", funnel="independent")
    assert set(body) == {"site", "from", "to", "tz", "freshness", "funnel", "steps"} and body["funnel"] == "independent"
    got = [
        (s["stage"], s["persons"], s["rate_from_previous"], s["rate_from_top"], s["median_seconds_from_previous"])
        for s in body["steps"]
    ]
    # first event / act / convert / engage per person in March:
    # alice 10:00 / +300 s / m5 (+82500 s) / - (April); bob 12:00 / +60 / b4 (+1295940) / -;
    # carol c2 / +0 / - (her order is a repeat) / c4; dave d1 / +0 / d3 (+1200) / d4 (+862800)
    assert got == [
        ("reach", 4, None, 1.0, None),
        ("act", 4, 1.0, 1.0, 30.0),
        ("convert", 3, 0.75, 0.75, 82500.0),
        ("engage", 2, 2 / 3, 0.5, 862800.0),
    ]
    assert [s["nested_persons"] for s in body["steps"]] == [4, 4, 3, 1]
    rows = await get_csv(client, shop, "/v1/funnel", **MARCH, medians="true")
    assert list(rows[0]) == [
        "stage", "persons", "rate_from_previous", "rate_from_top", "nested_persons", "independent_persons",
        "median_seconds_from_previous",
    ]  # fmt: skip
    assert rows[0]["median_seconds_from_previous"] == "" and rows[3]["persons"] == "1"


async def test_funnel_errors_name_the_field(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    for params, field in (
        ({"steps": "product_view,purchase", "window": "7 days"}, "window"),
        ({"steps": "product_view,purchase", "window": "0d"}, "window"),
        ({"window": "7x"}, "window"),
        ({"steps": "add_to_cart?,purchase"}, "steps"),
        ({"steps": "product_view,,purchase"}, "steps"),
    ):
        answer = await client.get("/v1/funnel", params={**MARCH, **params}, headers=read(shop))
        assert answer.status_code == 400, (params, answer.text)
        body = answer.json()
        assert body["code"] == "invalid_parameter" and body["details"][0]["field"] == field, body


async def test_an_unknown_funnel_kind_is_refused_naming_the_field(
    client: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    answer = await client.get("/v1/funnel", params={**MARCH, "funnel": "closed"}, headers=read(shop))
    assert answer.status_code == 422 and answer.json()["details"][0]["field"] == "funnel", answer.text


# ---- /v1/persons ---------------------------------------------------------------------------------


async def test_person_profile_and_history(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    body = await get(client, shop, "/v1/persons/u:alice")
    assert {k: body[k] for k in ("person_id", "stage", "first_seen", "last_seen", "orders", "revenue")} == {
        "person_id": "u:alice",
        "stage": "engage",  # her April order is a repeat purchase
        "first_seen": "2026-03-02T10:00:00+00:00",
        "last_seen": "2026-04-10T09:00:00+00:00",
        "orders": 2,
        "revenue": 150.0,
    }
    # sessions: m1-m3, then m4 50 minutes later, m5, m6
    assert (body["leads"], body["sessions"], body["events_total"]) == (0, 4, 6)
    assert body["identities"] == {"user_id": "alice", "anonymous_ids": ["a-alice"]}
    assert [(e["type"], e["event"], e["stage"], e["goal"], e["value"]) for e in body["events"]] == [
        ("track", ORDER, "engage", "repeat_purchase", 50.0),
        ("track", ORDER, "convert", "purchase", 100.0),
        ("identify", None, "none", None, None),
        ("track", "Product Added", "act", "add_to_cart", None),
        ("track", "Product Viewed", "act", "product_view", None),
        ("page", "Home", "reach", "page_view", None),
    ]
    assert body["events"][0]["event_at"] == "2026-04-10T09:00:00+00:00"

    # every way to name her finds the same person; times follow tz
    for ref in ("alice", "a-alice", "a:a-alice"):
        assert (await get(client, shop, f"/v1/persons/{ref}"))["person_id"] == "u:alice"
    berlin = await get(client, shop, "/v1/persons/alice", tz="Europe/Berlin")
    assert berlin["first_seen"] == "2026-03-02T11:00:00+01:00"

    bob = await get(client, shop, "/v1/persons/a-bob")
    assert (bob["person_id"], bob["stage"], bob["orders"], bob["revenue"], bob["leads"], bob["sessions"]) == (
        "a:a-bob",
        "convert",
        1,
        30.0,
        1,
        2,
    )
    assert bob["identities"] == {"user_id": None, "anonymous_ids": ["a-bob"]}
    carol = await get(client, shop, "/v1/persons/carol")
    assert (carol["stage"], carol["orders"], carol["revenue"], carol["identities"]["anonymous_ids"]) == (
        "engage",
        2,
        60.0,
        [],
    )
    crawler = await get(client, shop, "/v1/persons/a-bot")
    assert (crawler["stage"], crawler["orders"], crawler["first_seen"]) == ("none", 0, None)
    assert [e["is_bot"] for e in crawler["events"]] == [True, True]

    rows = await get_csv(client, shop, "/v1/persons/a-bob")
    assert [(r["person_id"], r["event"], r["goal"]) for r in rows] == [
        ("a:a-bob", ORDER, "purchase"),
        ("a:a-bob", "signup", "signup"),
        ("a:a-bob", "product_view", "product_view"),
        ("a:a-bob", "Home", "page_view"),
    ]


async def test_unknown_person_is_404(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    other = await create_site(client)
    for ref, site in (("nobody", shop), ("u:nobody", shop), ("a:nobody", shop), ("alice", other)):
        answer = await client.get(f"/v1/persons/{ref}", headers=read(site))
        assert answer.status_code == 404, answer.text
        body = answer.json()
        assert body["code"] == "person_not_found" and body["details"][0]["field"] == "person_id"


async def test_person_history_is_the_latest_100(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    views = [
        msg("page", f"p{i}", (start + timedelta(minutes=i)).isoformat(), "a-busy", name=f"P{i}") for i in range(130)
    ]
    await ingest(client, site, views)
    body = await get(client, site, "/v1/persons/a-busy")
    assert body["events_total"] == 130 and len(body["events"]) == 100
    assert (body["events"][0]["event"], body["events"][-1]["event"]) == ("P129", "P30")


# ---- /v1/quality ---------------------------------------------------------------------------------


async def test_quality_counts_by_receipt(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    now = datetime.now(UTC)

    def ago(delta: timedelta) -> str:
        return (now - delta).isoformat()

    batch = [
        msg("track", "q1", ago(timedelta(hours=1)), "v1", event="Product Viewed"),
        msg("page", "q2", ago(timedelta(days=3)), "v1"),  # late
        msg("page", "q3", ago(timedelta(hours=2)), "crawler", ua=BOT),  # bot
        msg("page", "q4", ago(timedelta(days=2)), "crawler", ua=BOT),  # bot and late
        {"type": "bogus", "messageId": "r1", "anonymousId": "v1"},  # invalid_type
        {"type": "track", "messageId": "r2", "anonymousId": "v1"},  # missing_event
        {"type": "track", "messageId": "r3", "anonymousId": "v1"},  # missing_event
        msg("page", "r4", ago(timedelta(days=-2)), "v1"),  # future_timestamp
    ]
    first = await ingest(client, site, batch)
    assert (first["accepted"], len(first["rejected"])) == (4, 4)
    second = await ingest(client, site, [batch[0]])
    assert second["duplicates"] == 1
    period = {"from": (now - timedelta(days=1)).date().isoformat(), "to": (now + timedelta(days=2)).date().isoformat()}
    body = await get(client, site, "/v1/quality", **period, granularity="total")
    (bucket,) = body["buckets"]
    assert {k: v for k, v in bucket.items() if k not in ("start", "end")} == {
        "accepted": 4,
        "duplicates": 1,
        "rejected": 4,
        "rejected_by_reason": {"future_timestamp": 1, "invalid_type": 1, "missing_event": 2},
        "bots": 2,
        "late": 2,
        "duplicate_orders": 0,
        "other_currency_orders": 0,
    }
    days = await get(client, site, "/v1/quality", **period, granularity="day")
    assert len(days["buckets"]) == 3
    for name in ("accepted", "duplicates", "rejected", "bots", "late"):
        assert sum(b[name] for b in days["buckets"]) == bucket[name]
    rows = await get_csv(client, site, "/v1/quality", **period, granularity="total")
    assert [(r["accepted"], r["rejected_missing_event"], r["rejected_invalid_type"], r["late"]) for r in rows] == [
        ("4", "2", "1", "2")
    ]
    # receipt time, not event time: nothing was received in March 2026
    march = await get(client, site, "/v1/quality", **MARCH, granularity="total")
    assert march["buckets"][0]["accepted"] == 0 and march["buckets"][0]["rejected_by_reason"] == {}


# ---- /v1/cohorts ---------------------------------------------------------------------------------


def cohort_rows(body: dict[str, Any]) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {
        (c["cohort"], m["offset"]): (
            c["customers"],
            m["month"],
            m["active"],
            m["active_share"],
            m["repeat_customers"],
            m["repeat_share"],
            m["orders"],
            m["revenue"],
        )
        for c in body["cohorts"]
        for m in c["months"]
    }


async def test_cohorts_by_month_of_first_order(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    body = await get(client, shop, "/v1/cohorts", **{"from": "2026-02-01", "to": "2026-05-01"})
    assert [c["cohort"] for c in body["cohorts"]] == ["2026-02", "2026-03", "2026-04"]
    assert cohort_rows(body) == {
        # carol: first order in February, a repeat in March
        ("2026-02", 0): (1, "2026-02", 1, 1.0, 0, 0.0, 1, 20.0),
        ("2026-02", 1): (1, "2026-03", 1, 1.0, 1, 1.0, 1, 40.0),
        ("2026-02", 2): (1, "2026-04", 0, 0.0, 0, 0.0, 0, 0.0),
        # alice, bob, dave: dave orders again in his first month, alice in April
        ("2026-03", 0): (3, "2026-03", 3, 1.0, 1, 1 / 3, 4, 155.0),
        ("2026-03", 1): (3, "2026-04", 1, 1 / 3, 1, 1 / 3, 1, 50.0),
        ("2026-04", 0): (0, "2026-04", 0, None, 0, None, 0, 0.0),
    }
    clipped = await get(client, shop, "/v1/cohorts", **MARCH)
    assert cohort_rows(clipped) == {("2026-03", 0): (3, "2026-03", 3, 1.0, 1, 1 / 3, 4, 155.0)}
    rows = await get_csv(client, shop, "/v1/cohorts", **{"from": "2026-02-01", "to": "2026-04-01"})
    assert [(r["cohort"], r["offset"], r["active"], r["revenue"]) for r in rows] == [
        ("2026-02", "0", "1", "20.0"),
        ("2026-02", "1", "1", "40.0"),
        ("2026-03", "0", "3", "155.0"),
    ]


async def test_cohort_months_follow_the_time_zone(client: httpx.AsyncClient) -> None:
    site = await create_site(client, timezone="Europe/Berlin")
    # 23:30 UTC on 31 March is 01:30 on 1 April in Berlin (summer time)
    await ingest(client, site, [order("f1", "2026-03-31T23:30:00Z", 70, user="frank")])
    period = {"from": "2026-03-01", "to": "2026-05-01"}
    berlin = await get(client, site, "/v1/cohorts", **period)
    utc = await get(client, site, "/v1/cohorts", **period, tz="UTC")
    assert berlin["tz"] == "Europe/Berlin"
    assert [(c["cohort"], c["customers"]) for c in berlin["cohorts"]] == [("2026-03", 0), ("2026-04", 1)]
    assert [(c["cohort"], c["customers"]) for c in utc["cohorts"]] == [("2026-03", 1), ("2026-04", 0)]


# ---- /v1/report ----------------------------------------------------------------------------------


async def test_report_is_the_month_by_stage_with_change_and_targets(
    client: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    targets = {
        "targets": [
            {"kpi": "revenue", "month": "2026-03", "value": 300},
            {"kpi": "orders", "month": "2026-02", "value": 9},
        ]
    }
    answer = await client.put("/v1/targets", json=targets, headers={"Authorization": f"Bearer {shop['admin_key']}"})
    assert answer.status_code == 200, answer.text
    body = await get(client, shop, "/v1/report", month="2026-03")
    assert (body["month"], body["previous_month"], body["from"], body["to"]) == (
        "2026-03",
        "2026-02",
        "2026-03-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
    )
    assert [s["stage"] for s in body["stages"]] == ["reach", "act", "convert", "engage"]
    kpis = {k["kpi"]: k for s in body["stages"] for k in s["kpis"]}
    assert list(kpis) == list(KPI_NAMES)
    # by hand: March orders m5 b4 c4 d3 d4 (195), February c1 (20)
    assert {k: kpis["revenue"][k] for k in kpis["revenue"]} == {
        "kpi": "revenue",
        "value": 195.0,
        "previous": 20.0,
        "change": 175.0,
        "change_ratio": 8.75,
        "target": 300.0,
        "direction": "higher",
        "attainment": 0.65,
        "status": "missed",
    }
    assert (kpis["bounce_rate"]["direction"], kpis["bounce_rate"]["status"]) == ("lower", None)
    assert (kpis["visitors"]["value"], kpis["visitors"]["previous"], kpis["visitors"]["change"]) == (4, 2, 2)
    assert (kpis["orders"]["value"], kpis["orders"]["target"], kpis["orders"]["attainment"]) == (5, None, None)
    assert (kpis["nps"]["value"], kpis["nps"]["previous"], kpis["nps"]["change_ratio"]) == (100.0, None, None)
    assert (kpis["new_customers"]["previous"], kpis["new_customers"]["change_ratio"]) == (1, 2.0)

    # every value is the oracle's month KPI (plain Python over the same messages)
    oracle = Oracle(SHOP)
    march = oracle.kpis(date(2026, 3, 1), date(2026, 4, 1), "month", "UTC")[0]["kpis"]
    february = oracle.kpis(date(2026, 2, 1), date(2026, 3, 1), "month", "UTC")[0]["kpis"]
    for name in KPI_NAMES:
        assert close(kpis[name]["value"], march[name]), (name, kpis[name], march[name])
        assert close(kpis[name]["previous"], february[name]), (name, kpis[name], february[name])

    rows = await get_csv(client, shop, "/v1/report", month="2026-03", format="csv")
    assert list(rows[0]) == [
        "stage", "kpi", "value", "previous", "change", "change_ratio", "target", "direction", "attainment", "status"
    ]  # fmt: skip
    assert len(rows) == len(KPI_NAMES)
    revenue = next(r for r in rows if r["kpi"] == "revenue")
    assert (revenue["stage"], revenue["value"], revenue["attainment"]) == ("convert", "195.0", "0.65")


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "March", "1999-12", ""])
async def test_report_refuses_a_bad_month(client: httpx.AsyncClient, shop: dict[str, Any], month: str) -> None:
    answer = await client.get("/v1/report", params={"month": month}, headers=read(shop))
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "invalid_parameter" and body["details"][0]["field"] == "month"


async def test_report_month_is_required(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    answer = await client.get("/v1/report", headers=read(shop))
    assert answer.status_code == 422 and answer.json()["details"][0]["field"] == "month"


# ---- conditional GET -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/kpis", {**MARCH, "granularity": "week"}),
        ("/v1/funnel", MARCH),
        ("/v1/funnel", {**MARCH, "steps": "product_view,purchase"}),
        ("/v1/goals", MARCH),
        ("/v1/persons/alice", {}),
        ("/v1/quality", MARCH),
        ("/v1/cohorts", MARCH),
        ("/v1/report", {"month": "2026-03"}),
    ],
)
async def test_read_endpoints_answer_304_to_a_matching_etag(
    client: httpx.AsyncClient, shop: dict[str, Any], path: str, params: dict[str, str]
) -> None:
    first = await client.get(path, params=params, headers=read(shop))
    assert first.status_code == 200, first.text
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and first.headers["cache-control"] == "private, max-age=5"
    again = await client.get(path, params=params, headers={**read(shop), "If-None-Match": tag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag)
    assert again.headers["cache-control"] == "private, max-age=5"
    listed = await client.get(path, params=params, headers={**read(shop), "If-None-Match": f'"x", {tag[2:]}'})
    assert listed.status_code == 304  # weak comparison, in a list
    as_csv = await client.get(path, params={**params, "format": "csv"}, headers={**read(shop), "If-None-Match": tag})
    assert as_csv.status_code == 200 and as_csv.headers["etag"] != tag


async def test_etag_changes_when_the_data_does(client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    first = await client.get("/v1/goals", params=MARCH, headers=read(shop))
    await ingest(client, shop, [msg("track", "n1", "2026-03-20T10:00:00Z", "a-new", event="Product Viewed")])
    second = await client.get("/v1/goals", params=MARCH, headers={**read(shop), "If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    error = await client.get("/v1/report", params={"month": "x"}, headers=read(shop))
    assert error.status_code == 400 and "etag" not in error.headers


# ---- the BI views --------------------------------------------------------------------------------


async def test_bi_views_match_the_api_and_the_role_reads_only_them(
    client: httpx.AsyncClient, shop: dict[str, Any], db: asyncpg.Connection
) -> None:
    daily = await get(client, shop, "/v1/kpis", **MARCH, granularity="day", tz="UTC")
    rows = {
        r["day"]: r
        for r in await db.fetch(
            "SELECT * FROM bi_kpi_daily WHERE site_id = $1 AND day >= '2026-03-01' AND day < '2026-04-01'", shop["id"]
        )
    }
    columns = ("visitors", "sessions", "pageviews", "orders", "revenue", "leads", "new_customers")
    for bucket in daily["buckets"]:
        day = date.fromisoformat(bucket["start"][:10])
        want = tuple(bucket["kpis"][c] for c in columns)
        got = tuple(rows[day][c] for c in columns) if day in rows else (0, 0, 0, 0, 0.0, 0, 0)
        assert got == want, (day, got, want)
    assert tuple(rows[date(2026, 3, 15)][c] for c in columns) == (1, 1, 0, 1, 10.0, 0, 1)  # dave

    events = await db.fetch("SELECT * FROM bi_event WHERE site_id = $1", shop["id"])
    assert len(events) == len(SHOP) - 2  # the crawler's two events are left out
    assert not {"context", "traits", "properties", "url", "referrer", "is_bot"} & set(events[0].keys())
    carol = next(e for e in events if e["message_id"] == "c4")
    assert (carol["goal"], carol["is_repeat_order"], carol["session_channel"]) == ("repeat_purchase", True, "Direct")
    sessions = await db.fetchval("SELECT count(*) FROM bi_session WHERE site_id = $1", shop["id"])
    assert sessions == await db.fetchval("SELECT count(*) FROM session WHERE site_id = $1", shop["id"])

    role = await db.fetchrow("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'racetrack_bi'")
    assert role is not None and role["rolcanlogin"] is False
    async with db.transaction():
        await db.execute("SET LOCAL ROLE racetrack_bi")
        for view in ("bi_event", "bi_session", "bi_kpi_daily"):
            await db.fetchval(f"SELECT count(*) FROM {view}")
        for table in ("event", "session", "site", "failed_event"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with db.transaction():
                    await db.fetchval(f"SELECT count(*) FROM {table}")


# ---- demo traffic against plain Python -----------------------------------------------------------

DEMO_START = datetime(2026, 2, 9, tzinfo=UTC)
ENTRY_FROM, ENTRY_TO = date(2026, 2, 16), date(2026, 3, 9)
TZ = "Europe/Berlin"
FUNNELS = (
    ("product_view,add_to_cart,purchase", "7d"),
    ("product_view,add_to_cart?,purchase", "30d"),
    ("page_view,product_view?,add_to_cart?,purchase,repeat_purchase", "60d"),
    ("signup,purchase?,review", "30d"),
    ("page_view,product_view?,review", "12h"),
    ("page_view,social?,nps", "30d"),
)


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(TZ))


def naive_funnel(oracle: Oracle, spec: str, window: timedelta) -> list[tuple[int, float | None]]:
    """The documented matching rules, person by person, in plain Python."""
    steps = [(s.rstrip("?"), s.endswith("?")) for s in spec.split(",")]
    start, end = local_midnight(ENTRY_FROM), local_midnight(ENTRY_TO)
    reached: list[list[float]] = [[] for _ in steps]
    for events in oracle.by_person.values():
        entries = [e.at for e in events if e.goal == steps[0][0] and start <= e.at < end]
        if not entries:
            continue
        t0 = min(entries)
        times = {0: t0}
        last_required = 0
        for i in range(1, len(steps)):
            if steps[i][1]:
                continue
            found = [e.at for e in events if e.goal == steps[i][0] and times[last_required] < e.at <= t0 + window]
            if not found:
                break
            times[i], last_required = min(found), i
        for i in range(1, len(steps)):
            after = max(k for k in range(i) if not steps[k][1])
            if not steps[i][1] or after not in times:
                continue
            lower = times[max(k for k in times if after <= k < i)]
            following = next((k for k in range(i + 1, len(steps)) if not steps[k][1]), None)
            upper = times.get(following) if following is not None else None
            found = [
                e.at
                for e in events
                if e.goal == steps[i][0] and lower < e.at <= t0 + window and (upper is None or e.at < upper)
            ]
            if found:
                times[i] = min(found)
        for i, at in times.items():
            previous = max((k for k in times if k < i), default=None)
            reached[i].append(0.0 if previous is None else (at - times[previous]).total_seconds())
    return [(len(gaps), statistics.median(gaps) if i and gaps else None) for i, gaps in enumerate(reached)]


async def test_goals_funnels_and_cohorts_match_plain_python_on_demo_traffic(client: httpx.AsyncClient) -> None:
    messages = generate_messages(120, 60, DEMO_START, seed=5)
    oracle = Oracle(messages)
    site = await create_site(client, timezone=TZ)
    await ingest(client, site, messages)
    period = {"from": ENTRY_FROM.isoformat(), "to": ENTRY_TO.isoformat()}
    start, end = local_midnight(ENTRY_FROM), local_midnight(ENTRY_TO)

    # goals per ISO week in Berlin
    want: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, set(), 0.0])
    for e in oracle.events:
        if e.goal and start <= e.at < end:
            local = e.at.astimezone(ZoneInfo(TZ)).date()
            week = max(local - timedelta(days=local.weekday()), ENTRY_FROM).isoformat()
            slot = want[(week, e.goal)]
            slot[0], slot[2] = slot[0] + 1, slot[2] + e.value
            slot[1].add(e.person)
    body = await get(client, site, "/v1/goals", **period, granularity="week")
    got = {
        (b["start"][:10], g["goal"]): (g["completions"], g["persons"], g["value"])
        for b in body["buckets"]
        for g in b["goals"]
        if g["completions"]
    }
    assert set(got) == set(want)
    for key, (n, persons, value) in want.items():
        assert got[key][:2] == (n, len(persons)) and close(got[key][2], value), key

    # ordered goal funnels
    assert any(e.goal == "review" for e in oracle.events)
    for spec, window_text in FUNNELS:
        window = (
            timedelta(hours=int(window_text[:-1]))
            if window_text.endswith("h")
            else timedelta(days=int(window_text[:-1]))
        )
        expected = naive_funnel(oracle, spec, window)
        answer = await get(client, site, "/v1/funnel", **period, steps=spec, window=window_text)
        found = [(s["persons"], s["median_seconds_from_previous"]) for s in answer["steps"]]
        assert [n for n, _ in found] == [n for n, _ in expected], spec
        assert all(close(a, b) for (_, a), (_, b) in zip(found, expected, strict=True)), (spec, found, expected)
        assert expected[-1][0] > 0, f"{spec}: nobody reached the last step, the comparison proves little"

    # cohorts: first orders from 16 Feb to 9 Mar, activity until 9 Mar
    active = oracle.cohorts(start, end, TZ)
    body = await get(client, site, "/v1/cohorts", **period)
    sizes = {c["cohort"]: c["customers"] for c in body["cohorts"]}
    assert sizes == {m: active.get((m, m), (0,))[0] for m in ("2026-02", "2026-03")}
    for c in body["cohorts"]:
        for m in c["months"]:
            persons, repeaters, orders, cents = active.get((c["cohort"], m["month"]), (0, 0, 0, 0))
            assert (m["active"], m["repeat_customers"], m["orders"]) == (persons, repeaters, orders)
            assert close(m["revenue"], cents / 100)
    assert any(m["repeat_customers"] for c in body["cohorts"] for m in c["months"]), "no repeat in the cohorts"
