"""Erasure keeps every KPI exact: after erasing several persons of realistic mixed traffic (an
identity-merged buyer, an anonymous buyer, tie-broken and alias links, an NPS answerer, the busiest
visitor, a bot), /v1/kpis and /v1/funnel agree with the oracle over the remaining events, from the
events and from the rollups, in every zone, granularity and breakdown of the oracle test; and so
after new messages arrive for an erased user id (erasure is not a block list)."""

from __future__ import annotations

from collections import Counter

import httpx

from app.demo import generate_messages
from tests.conftest import create_site, drain
from tests.integration.test_kpi_oracle import (
    DAYS,
    PERSONS,
    SEED,
    START,
    _check_all,
    _edge_messages,
    _ingest,
    _msg,
    _report,
)
from tests.oracle import Oracle


def _erased_persons(oracle: Oracle) -> list[str]:
    by_person = oracle.by_person
    merged = sorted(  # a signed-up demo visitor whose guest order became theirs, and who bought again
        p
        for p, events in by_person.items()
        if p.startswith("u:user-") and any(e.order and not e.user for e in events) and sum(e.order for e in events) >= 2
    )
    anonymous_buyers = sorted(p for p, evs in by_person.items() if p.startswith("a:") and any(e.order for e in evs))
    busiest = max(sorted(by_person), key=lambda p: len(by_person[p]))
    bots = sorted({e.person for e in oracle.all_events if e.bot})
    assert merged and anonymous_buyers and bots, "the data lacks a kind of person to erase"
    chosen = [merged[0], anonymous_buyers[0], "u:edge-y", "u:edge-alias-user", "a:edge-misc", busiest, bots[0]]
    return list(dict.fromkeys(chosen))


async def test_kpis_match_the_oracle_over_the_remaining_events(client: httpx.AsyncClient, database_url: str) -> None:
    messages = generate_messages(PERSONS, DAYS, START, SEED) + _edge_messages()
    full = Oracle(messages)
    erased = _erased_persons(full)
    merged_user = erased[0].removeprefix("u:")
    site = await create_site(client, timezone="America/St_Johns")
    admin, read_key = {"Authorization": f"Bearer {site['admin_key']}"}, site["read_key"]
    await _ingest(client, site, messages)
    email = next(e for e in messages if e.get("userId") == merged_user and e.get("traits", {}).get("email"))
    rejected = [
        {"type": "track", "messageId": "bad-1", "userId": merged_user, "timestamp": "2026-03-01T00:00:00Z"},
        {"type": "identify", "messageId": "bad-2", "traits": {"email": email["traits"]["email"].upper()}},
        {"type": "track", "messageId": "bad-3", "userId": "someone-else"},
    ]
    answer = await client.post("/v1/batch", json={"batch": rejected}, auth=(site["write_key"], ""))
    assert len(answer.json()["rejected"]) == 3
    await drain(database_url)
    problems = await _check_all(client, read_key, full, quick=True)
    assert not problems, _report(problems)

    events_of = Counter(e.person for e in full.all_events)
    assert sum(events_of[p] for p in erased) >= 60
    for person in erased:
        answer = await client.delete(f"/v1/persons/{person}", headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["erased"]["events"] == events_of[person], person
    failed = await client.get("/v1/failed-events", headers=admin)
    assert [i["raw"]["messageId"] for i in failed.json()["items"]] == ["bad-3"]

    person_of = {e.mid: e.person for e in full.all_events}
    remaining = [m for m in messages if person_of[str(m["messageId"])] not in erased]
    first = next(m for m in messages if person_of[str(m["messageId"])] == erased[0])
    retry = await client.post("/v1/batch", json={"batch": [first]}, auth=(site["write_key"], ""))
    assert (retry.json()["accepted"], retry.json()["duplicates"]) == (0, 1)
    later = [
        _msg("page", "after-1", "2026-03-25T10:00:00Z", None, merged_user, referrer="https://www.google.com/"),
        _msg(
            "track",
            "after-2",
            "2026-03-25T10:03:00Z",
            None,
            merged_user,
            event="Order Completed",
            properties={"order_id": "after-o1", "revenue": 19.99},
        ),
        _msg("page", "after-3", "2026-03-26T08:00:00Z", "after-anon"),
    ]
    await _ingest(client, site, later)
    oracle = Oracle(remaining + later)
    problems = await _check_all(client, read_key, oracle, source="events")
    await drain(database_url)
    problems += await _check_all(client, read_key, oracle, source="rollups")
    assert not problems, _report(problems)
    for person in erased[1:]:
        answer = await client.get(f"/v1/persons/{person}/export", headers=admin)
        assert answer.status_code == 404, (person, answer.text)
