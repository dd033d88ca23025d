"""Breakdown groups named by trackers: quotes and backslashes in SQL, formulas in CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests.conftest import create_site


def _visit(n: int, campaign: str) -> dict[str, Any]:
    return {"type": "page", "anonymousId": f"v{n}", "messageId": f"m{n}", "timestamp": f"2026-03-01T10:{n:02d}:00Z",
            "context": {"campaign": {"name": campaign, "medium": "email"}}}  # fmt: skip


async def test_limit_keeps_odd_group_names_exact_and_csv_defuses_formulas(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    tricky, formula = "O'Brien \\ sale", '=HYPERLINK("http://x")'
    batch = [_visit(n, tricky) for n in range(3)] + [_visit(n, formula) for n in range(3, 5)]
    batch += [_visit(5, "plain")]
    answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
    assert answer.json()["accepted"] == 6
    params = {"from": "2026-03-01", "to": "2026-03-02", "granularity": "total", "breakdown": "campaign", "tz": "UTC"}
    headers = {"Authorization": f"Bearer {site['read_key']}"}
    limited = await client.get("/v1/kpis", params={**params, "limit": 2}, headers=headers)
    groups = {b["group"]: b["kpis"]["sessions"] for b in limited.json()["buckets"]}
    assert groups == {tricky: 3, formula: 2, "(other)": 1}
    one = await client.get("/v1/kpis", params={**params, "limit": 1}, headers=headers)
    assert {b["group"]: b["kpis"]["visitors"] for b in one.json()["buckets"]} == {tricky: 3, "(other)": 3}
    rows = list(csv.DictReader(io.StringIO((await client.get(
        "/v1/kpis", params={**params, "format": "csv"}, headers=headers)).text)))  # fmt: skip
    assert sorted(r["group"] for r in rows) == sorted([tricky, "'" + formula, "plain"])
