"""The service's /v1/kpis and /v1/funnel against an independent plain-Python oracle (tests/oracle.py)
of DESIGN §3-§5, on realistic demo traffic, in several time zones, granularities and breakdowns."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import httpx

from app.demo import generate_messages
from tests.conftest import create_site, drain
from tests.oracle import KPI_NAMES, Oracle, parse_ts

START = datetime(2026, 2, 9, tzinfo=UTC)  # data: 2026-02-09 .. 2026-04-05 (UTC)
DAYS, PERSONS, SEED = 55, 300, 11
# Wednesday to Thursday, mid-month to mid-month: first and last week and month buckets are clipped,
# orders before FROM feed "to date" KPIs, and both DST switches (St John's 8 Mar, Berlin 29 Mar) fall inside.
FROM, TO = date(2026, 2, 18), date(2026, 4, 2)
ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Berlin")
GRANULARITIES = ("day", "week", "month", "total")
BREAKDOWN_CASES = (
    ("UTC", "day"),
    ("UTC", "week"),
    ("UTC", "total"),
    ("Asia/Kolkata", "week"),
    ("America/St_Johns", "total"),
    ("America/St_Johns", "month"),
)
INTEGER_KPIS = frozenset(
    {
        "visitors",
        "new_visitors",
        "sessions",
        "pageviews",
        "act_events",
        "leads",
        "orders",
        "new_customers",
        "offline_orders",
        "engage_events",
        "repeat_orders",
        "repeat_customers",
        "customers_to_date",
    }
)
CHUNK = 400
MAX_REPORTED = 80
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
SHOP = "https://shop.example.com"


def _msg(
    kind: str, mid: str, at: str, anon: str | None = None, user: str | None = None, **extra: Any
) -> dict[str, Any]:
    context: dict[str, Any] = {"userAgent": DESKTOP}
    if "session" in extra:
        context["sessionId"] = extra.pop("session")
    if "referrer" in extra or kind in ("page", "screen"):
        context["page"] = {"url": f"{SHOP}/", "path": "/", "referrer": extra.pop("referrer", None)}
    msg: dict[str, Any] = {"type": kind, "messageId": f"edge-{mid}", "timestamp": at, "context": context, **extra}
    if anon:
        msg["anonymousId"] = anon
    if user:
        msg["userId"] = user
    return msg


def _edge_messages() -> list[dict[str, Any]]:
    """Hand-made persons for what random demo traffic rarely hits exactly."""
    google, facebook = "https://www.google.com/", "https://www.facebook.com/"
    order = "Order Completed"
    return [
        # 30-minute gap: exactly 30 min stays in the session, 30 min + 1 microsecond cuts it
        _msg("page", "gap-1", "2026-03-10T10:00:00Z", "edge-gap", referrer=google),
        _msg("track", "gap-2", "2026-03-10T10:30:00Z", "edge-gap", event="Product Viewed"),
        _msg("page", "gap-3", "2026-03-10T11:00:00.000001Z", "edge-gap"),
        # equal event times: messageId decides the order (session channel, first vs repeat order)
        _msg("page", "tie-b", "2026-03-12T08:00:00Z", "edge-tie", referrer=google),
        _msg("page", "tie-a", "2026-03-12T08:00:00Z", "edge-tie", referrer=facebook),
        _msg(
            "track",
            "tie-ob",
            "2026-03-12T08:05:00Z",
            "edge-tie",
            event=order,
            properties={"order_id": "edge-o1", "revenue": 100.0},
        ),
        _msg(
            "track",
            "tie-oa",
            "2026-03-12T08:05:00Z",
            "edge-tie",
            event="purchase",
            properties={"order_id": "edge-o2", "total": 40.5},
        ),
        _msg(
            "track",
            "tie-oc",
            "2026-03-12T08:06:00Z",
            "edge-tie",
            event=order,
            properties={"order_id": "edge-o3", "value": 7},
        ),
        _msg("track", "tie-od", "2026-03-12T08:07:00Z", "edge-tie", event=order, properties={"order_id": "edge-o4"}),
        # several userIds for one anonymousId: the earliest link wins, ties go to the smallest userId
        _msg("page", "link-1", "2026-03-14T09:00:00Z", "edge-link", session="edge-link-s"),
        _msg(
            "track", "link-2", "2026-03-14T09:10:00Z", "edge-link", "edge-z", event="Signed Up", session="edge-link-s"
        ),
        _msg("identify", "link-3", "2026-03-14T09:10:00Z", "edge-link", "edge-y", session="edge-link-s"),
        _msg("identify", "link-4", "2026-03-14T09:20:00Z", "edge-link", "edge-x"),
        _msg(
            "track",
            "link-5",
            "2026-03-14T09:25:00Z",
            "edge-link",
            event=order,
            properties={"order_id": "edge-o5", "revenue": 12.25},
        ),
        # alias links retroactively: the guest order becomes the person's first
        _msg("page", "alias-1", "2026-03-16T12:00:00Z", "edge-alias", referrer="https://news.example.org/"),
        _msg(
            "track",
            "alias-2",
            "2026-03-16T12:01:00Z",
            "edge-alias",
            event="purchase",
            properties={"order_id": "edge-o6", "revenue": 30},
        ),
        {
            "type": "alias",
            "messageId": "edge-alias-3",
            "previousId": "edge-alias",
            "userId": "edge-alias-user",
            "timestamp": "2026-03-20T12:00:00Z",
        },
        _msg(
            "track",
            "alias-4",
            "2026-03-20T12:05:00Z",
            None,
            "edge-alias-user",
            event=order,
            properties={"order_id": "edge-o7", "revenue": 55.5},
        ),
        # bucket boundaries: FROM, TO and month starts in UTC and Asia/Kolkata; an order just before FROM
        _msg(
            "track",
            "bound-0",
            "2026-02-17T23:59:59.999999Z",
            "edge-bound",
            event=order,
            session="edge-b0",
            properties={"order_id": "edge-o8", "revenue": 20},
        ),
        _msg("page", "bound-1", "2026-02-18T00:00:00Z", "edge-bound", session="edge-b1"),
        _msg("page", "bound-2", "2026-02-28T18:30:00Z", "edge-bound", session="edge-b2"),
        _msg("page", "bound-3", "2026-03-01T00:00:00Z", "edge-bound", session="edge-b3"),
        _msg("page", "bound-4", "2026-04-01T18:30:00Z", "edge-bound", session="edge-b4"),
        _msg("page", "bound-5", "2026-04-02T00:00:00Z", "edge-bound", session="edge-b5"),
        _msg(
            "track",
            "bound-6",
            "2026-03-01T00:00:00Z",
            "edge-bound-2",
            event=order,
            properties={"order_id": "edge-o9", "revenue": 64},
        ),
        _msg(
            "track",
            "bound-7",
            "2026-02-28T18:30:00Z",
            "edge-bound-3",
            event=order,
            properties={"order_id": "edge-o10", "revenue": 16},
        ),
        # NPS edges, a survey without a score, screen views, other goals
        *(
            _msg(
                "track",
                f"nps-{i}",
                f"2026-03-18T10:0{i}:00Z",
                "edge-misc",
                event="Survey Answered",
                session="edge-misc-s",
                properties={"score": score},
            )
            for i, score in enumerate((0, 6, 7, 8, 9, 10))
        ),
        _msg(
            "track",
            "nps-x",
            "2026-03-18T10:07:00Z",
            "edge-misc",
            event="Survey Answered",
            session="edge-misc-s",
            properties={"comment": "no score"},
        ),
        _msg("screen", "misc-1", "2026-03-18T10:08:00Z", "edge-misc", session="edge-misc-s"),
        _msg("track", "misc-2", "2026-03-18T10:09:00Z", "edge-misc", event="Comment Posted", session="edge-misc-s"),
        _msg("track", "misc-3", "2026-03-18T10:10:00Z", "edge-misc", event="newsletter_signup", session="edge-misc-s"),
        _msg("track", "misc-4", "2026-03-18T10:11:00Z", "edge-misc", event="Something Else", session="edge-misc-s"),
        _msg("screen", "misc-5", "2026-03-18T12:00:00Z", "edge-misc"),
    ]


async def _ingest(client: httpx.AsyncClient, site: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    accepted = duplicates = 0
    for offset in range(0, len(messages), CHUNK):
        answer = await client.post(
            "/v1/batch", json={"batch": messages[offset : offset + CHUNK]}, auth=(site["write_key"], "")
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["success"] is True and body["rejected"] == [], body
        accepted += body["accepted"]
        duplicates += body["duplicates"]
    assert (accepted, duplicates) == (len(messages), 0)


def _same(name: str, expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if name in INTEGER_KPIS:
        return isinstance(got, int) and not isinstance(got, bool) and got == expected
    if isinstance(got, bool) or not isinstance(got, int | float):
        return False
    return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-9)


def _answered(label: str, answer: httpx.Response) -> list[str]:
    if answer.status_code != 200:
        return [f"{label}: HTTP {answer.status_code} {answer.text[:300]}"]
    wanted = answer.request.url.params.get("source", "rollups")
    if answer.headers["x-racetrack-source"] != wanted:
        return [f"{label}: answered from {answer.headers['x-racetrack-source']}, not {wanted}"]
    return []


def _compare_kpis(label: str, expected: list[dict[str, Any]], answer: httpx.Response) -> list[str]:
    if failed := _answered(label, answer):
        return failed
    got_rows = answer.json()["buckets"]
    problems: list[str] = []

    def key(start: Any, group: Any) -> tuple[datetime, Any]:
        return (start if isinstance(start, datetime) else parse_ts(start), group)

    want = {key(r["start"], r["group"]): r for r in expected}
    have = {key(r["start"], r["group"]): r for r in got_rows}
    if len(have) != len(got_rows):
        problems.append(f"{label}: duplicate (start, group) rows in the answer")
    for k in sorted(set(want) - set(have), key=str):
        problems.append(f"{label}: missing bucket start={k[0].isoformat()} group={k[1]!r}")
    for k in sorted(set(have) - set(want), key=str):
        problems.append(f"{label}: unexpected bucket start={k[0].isoformat()} group={k[1]!r}: {have[k]['kpis']}")
    for k in sorted(set(want) & set(have), key=str):
        w, h = want[k], have[k]
        where = f"{label} [{w['start'].isoformat()} .. {w['end'].isoformat()}) group={k[1]!r}"
        if parse_ts(h["end"]) != w["end"]:
            problems.append(f"{where}: end expected {w['end'].isoformat()}, got {h['end']}")
        if set(h["kpis"]) != set(KPI_NAMES):
            problems.append(f"{where}: KPI names differ: {sorted(set(h['kpis']) ^ set(KPI_NAMES))}")
        for name in KPI_NAMES:
            if name in h["kpis"] and not _same(name, w["kpis"][name], h["kpis"][name]):
                problems.append(f"{where} {name}: expected {w['kpis'][name]!r}, got {h['kpis'][name]!r}")
    return problems


def _compare_funnel(label: str, expected: list[dict[str, Any]], answer: httpx.Response, kind: str) -> list[str]:
    if failed := _answered(label, answer):
        return failed
    if answer.json()["funnel"] != kind:
        return [f"{label}: funnel {answer.json()['funnel']!r}, expected {kind!r}"]
    steps = answer.json()["steps"]
    if [s["stage"] for s in steps] != [s["stage"] for s in expected]:
        return [f"{label}: stages {[s['stage'] for s in steps]}"]
    problems = []
    for w, h in zip(expected, steps, strict=True):
        for field in ("persons", "nested_persons", "independent_persons"):
            if h[field] != w[field]:
                problems.append(f"{label} {w['stage']} {field}: expected {w[field]}, got {h[field]}")
        for field in ("rate_from_previous", "rate_from_top"):
            if not _same(field, w[field], h[field]):
                problems.append(f"{label} {w['stage']} {field}: expected {w[field]!r}, got {h[field]!r}")
    return problems


def _assert_data_exercises_everything(oracle: Oracle) -> None:
    """The generated data must really contain what the KPIs are tricky about (no vacuous pass)."""
    start = datetime.combine(FROM, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(TO, datetime.min.time(), tzinfo=UTC)
    events = oracle.events
    in_period = [e for e in events if start <= e.at < end]
    assert sum(e.bot for e in oracle.all_events) >= 3, "no bot traffic"
    assert len({e.person for e in oracle.all_events if e.bot}) >= 2
    assert sum(e.repeat_order for e in in_period) >= 20, "too few repeat orders"
    independent = {s["stage"]: s["independent_persons"] for s in oracle.funnel(FROM, TO, "UTC")}
    nested = {s["stage"]: s["nested_persons"] for s in oracle.funnel(FROM, TO, "UTC")}
    assert nested["convert"] < independent["convert"], "no buyer without an act-stage event: nested = independent"
    guest_linked = [e for e in events if e.order and not e.user and e.person.startswith("u:")]
    assert len(guest_linked) >= 5, "no guest checkouts linked by a later signup"
    assert sum(1 for e in events if not e.user and e.person.startswith("u:")) >= 50, "few retroactive links"
    assert sum(1 for e in events if e.order and e.at < start) >= 10, "no orders before FROM (to-date KPIs)"
    assert any(e.at >= end for e in events), "no data after TO (clipping)"
    assert sum(1 for e in in_period if e.order and e.channel == "Offline") >= 3, "no offline orders"
    assert sum(1 for e in in_period if e.goal == "nps") >= 10, "no NPS answers"
    assert sum(1 for e in in_period if e.lead) >= 20, "no leads"
    channels = Counter(s.channel for s in oracle.sessions)
    assert len(channels) >= 8, channels
    with_id = [s for s in oracle.sessions if s.events[0].session_id]
    without_id = [s for s in oracle.sessions if not s.events[0].session_id]
    assert len(with_id) >= 50 and len(without_id) >= 50
    assert sum(1 for s in without_id if len(s.events) > 1) >= 30
    assert sum(1 for s in oracle.sessions if s.bounce) >= 10
    cut = Counter(s.person for s in without_id)
    assert sum(1 for n in cut.values() if n >= 2) >= 10, "no person whose id-less events are cut by the gap"
    mixed = {e.session for e in events if e.channel != oracle.sessions[e.session].channel}
    assert len(mixed) >= 10, "no sessions whose events' own channels differ from the session's"


def _assert_oracle_reads_edge_cases_as_meant(oracle: Oracle) -> None:
    by_id = {e.mid: e for e in oracle.all_events}
    gap = [s for s in oracle.sessions if s.person == "a:edge-gap"]
    assert [len(s.events) for s in gap] == [2, 1] and gap[0].seconds == 1800
    tie = oracle.sessions[by_id["edge-tie-a"].session]
    assert tie.events[0].mid == "edge-tie-a" and tie.channel == "Organic Social"
    assert by_id["edge-tie-oa"].first_order and by_id["edge-tie-ob"].repeat_order
    assert [by_id[f"edge-tie-o{x}"].value for x in "abcd"] == [40.5, 100.0, 7.0, 0.0]
    assert by_id["edge-link-1"].person == "u:edge-y" and by_id["edge-link-5"].person == "u:edge-y"
    assert by_id["edge-link-2"].person == "u:edge-z" and by_id["edge-link-4"].person == "u:edge-x"
    assert by_id["edge-alias-2"].person == "u:edge-alias-user" and by_id["edge-alias-2"].first_order
    assert by_id["edge-alias-4"].repeat_order and by_id["edge-alias-4"].goal == "repeat_purchase"
    assert by_id["edge-nps-x"].stage == "none" and by_id["edge-misc-1"].stage == "reach"
    assert by_id["edge-misc-2"].stage == "act" and by_id["edge-misc-3"].lead and by_id["edge-misc-4"].stage == "none"


async def _check_all(
    client: httpx.AsyncClient, read_key: str, oracle: Oracle, quick: bool = False, source: str = "rollups"
) -> list[str]:
    """Every answer against the oracle; each must come from `source` (rollups or events)."""
    headers = {"Authorization": f"Bearer {read_key}"}
    problems: list[str] = []
    period = {"from": FROM.isoformat(), "to": TO.isoformat(), "source": source}
    zones = ZONES[:2] if quick else ZONES
    grans = ("week", "total") if quick else GRANULARITIES
    for tz in zones:
        for gran in grans:
            answer = await client.get("/v1/kpis", params={**period, "granularity": gran, "tz": tz}, headers=headers)
            problems += _compare_kpis(f"{tz}/{gran}", oracle.kpis(FROM, TO, gran, tz), answer)
            answer = await client.get("/v1/goals", params={**period, "granularity": gran, "tz": tz}, headers=headers)
            problems += _compare_goals(f"{tz}/{gran}/goals", oracle.goals(FROM, TO, gran, tz), answer, source)
        answer = await client.get("/v1/funnel", params={**period, "tz": tz}, headers=headers)
        problems += _compare_funnel(f"{tz}/funnel", oracle.funnel(FROM, TO, tz), answer, "nested")
        answer = await client.get("/v1/funnel", params={**period, "tz": tz, "funnel": "independent"}, headers=headers)
        expected = oracle.funnel(FROM, TO, tz, nested=False)
        problems += _compare_funnel(f"{tz}/funnel=independent", expected, answer, "independent")
    for tz, gran in BREAKDOWN_CASES[1:3] if quick else BREAKDOWN_CASES:
        params = {**period, "granularity": gran, "tz": tz, "breakdown": "channel"}
        answer = await client.get("/v1/kpis", params=params, headers=headers)
        problems += _compare_kpis(f"{tz}/{gran}/channel", oracle.kpis(FROM, TO, gran, tz, breakdown=True), answer)
    problems += await _check_limit(client, headers, oracle, source)
    return problems


def _compare_goals(
    label: str, expected: dict[tuple[datetime, str], tuple[int, int, int]], answer: httpx.Response, source: str
) -> list[str]:
    if answer.status_code != 200 or answer.headers.get("x-racetrack-source") != source:
        return [f"{label}: {answer.status_code} from {answer.headers.get('x-racetrack-source')}: {answer.text[:200]}"]
    got = {
        (parse_ts(b["start"]), g["goal"]): (g["completions"], g["persons"], round(g["value"] * 100))
        for b in answer.json()["buckets"]
        for g in b["goals"]
        if g["completions"]
    }
    return [f"{label} {key}: expected {expected.get(key)}, got {got.get(key)}"
            for key in sorted(set(expected) | set(got)) if expected.get(key) != got.get(key)]  # fmt: skip


async def _check_limit(client: httpx.AsyncClient, headers: dict[str, str], oracle: Oracle, source: str) -> list[str]:
    """breakdown with limit=3: the 3 channels with most sessions in the period, the rest as '(other)'."""
    start = datetime.combine(FROM, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(TO, datetime.min.time(), tzinfo=UTC)
    sessions = Counter(s.channel for s in oracle.sessions if start <= s.start < end)
    top = [c for c, _ in sorted(sessions.items(), key=lambda item: (-item[1], item[0]))[:3]]
    params = {"from": FROM.isoformat(), "to": TO.isoformat(), "granularity": "week", "tz": "UTC",
              "breakdown": "channel", "limit": 3, "source": source}  # fmt: skip
    answer = await client.get("/v1/kpis", params=params, headers=headers)
    oracle.merge = lambda channel: channel if channel in top else "(other)"  # type: ignore[method-assign]
    try:
        expected = oracle.kpis(FROM, TO, "week", "UTC", breakdown=True)
    finally:
        del oracle.merge
    groups = list(dict.fromkeys(b["group"] for b in answer.json()["buckets"]))
    order = [] if groups == [*top, "(other)"] else [f"UTC/week/channel/limit=3: groups {groups}, top {top}"]
    return order + _compare_kpis("UTC/week/channel/limit=3", expected, answer)


def _report(problems: list[str]) -> str:
    shown = "\n".join(problems[:MAX_REPORTED])
    more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{len(problems)} mismatches against the oracle:\n{shown}{more}"


async def test_kpis_and_funnel_match_the_oracle(client: httpx.AsyncClient, database_url: str) -> None:
    """From the events, and from the rollups (whose site-local days are not UTC days here)."""
    messages = generate_messages(PERSONS, DAYS, START, SEED) + _edge_messages()
    oracle = Oracle(messages)
    _assert_data_exercises_everything(oracle)
    _assert_oracle_reads_edge_cases_as_meant(oracle)
    site = await create_site(client, timezone="America/St_Johns")
    await _ingest(client, site, messages)
    problems = await _check_all(client, site["read_key"], oracle, source="events")
    await drain(database_url)
    problems += await _check_all(client, site["read_key"], oracle, source="rollups")
    assert not problems, _report(problems)


async def test_arrival_order_does_not_change_the_kpis(client: httpx.AsyncClient, database_url: str) -> None:
    """DESIGN §3: every KPI is a function of the set of stored events, whatever order they arrived in."""
    messages = generate_messages(PERSONS, DAYS, START, SEED) + _edge_messages()
    oracle = Oracle(messages)
    shuffled = list(messages)
    random.Random(5).shuffle(shuffled)
    site = await create_site(client, timezone="UTC")
    await _ingest(client, site, shuffled)
    await drain(database_url)
    problems = await _check_all(client, site["read_key"], oracle, quick=True)
    assert not problems, _report(problems)
