"""The OpenAPI document describes what the API really answers: every endpoint, called with data behind
it (orders, targets, a ruleset, jobs, failed events, rotated keys) and on its error paths, answers a
documented status and content type, and a body that validates against the documented schema
(schemathesis's own response validation). The fuzzing in test_schemathesis.py mostly sees empty
sites; this sees full answers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import schemathesis

from tests.security.helpers import ROOT, bearer

MARCH = {"from": "2026-03-01", "to": "2026-04-01"}


def _journey() -> list[dict[str, Any]]:
    def at(day: int, hour: int) -> str:
        return f"2026-03-{day:02d}T{hour:02d}:00:00Z"

    web = {
        "page": {"url": "https://shop.example/?utm_source=news&utm_medium=email", "referrer": "https://www.google.com/"}
    }
    return [
        {"type": "page", "anonymousId": "a-7f3c", "messageId": "m1", "timestamp": at(2, 9), "context": web},
        {"type": "track", "event": "Product Viewed", "anonymousId": "a-7f3c", "messageId": "m2",
         "timestamp": at(2, 10)},
        {"type": "track", "event": "Product Added", "anonymousId": "a-7f3c", "messageId": "m3",
         "timestamp": at(2, 11)},
        {"type": "identify", "anonymousId": "a-7f3c", "userId": "42", "messageId": "m4", "timestamp": at(2, 12)},
        {"type": "track", "event": "Order Completed", "userId": "42", "messageId": "m5", "timestamp": at(2, 13),
         "properties": {"order_id": "o-1", "revenue": 25.5}},
        {"type": "track", "event": "Order Completed", "userId": "42", "messageId": "m6", "timestamp": at(20, 13),
         "properties": {"order_id": "o-2", "revenue": 10}},
        {"type": "track", "event": "Survey Answered", "userId": "42", "messageId": "m7", "timestamp": at(21, 8),
         "properties": {"score": 9}},
        {"type": "page", "anonymousId": "bot", "messageId": "m8", "timestamp": at(3, 9),
         "context": {"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}},
        {"type": "track", "messageId": "m9"},  # no identity: rejected, kept as a failed event
    ]  # fmt: skip


class Contract:
    def __init__(self, client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
        self.client = client
        self.spec = spec
        self.schema = schemathesis.openapi.from_dict(spec)
        self.seen: set[tuple[str, str, int]] = set()

    async def call(self, method: str, template: str, path: str | None = None, **request: Any) -> httpx.Response:
        answer = await self.client.request(method, path or template, **request)
        responses = self.spec["paths"][template][method.lower()]["responses"]
        status = str(answer.status_code)
        assert status in responses, f"{method} {template} answered an undocumented {status}: {answer.text[:300]}"
        if answer.content:
            media = answer.headers["content-type"].split(";")[0].strip()
            documented = responses[status].get("content", {})
            assert media in documented, f"{method} {template} {status}: {media} is not among {sorted(documented)}"
        self.schema[template][method].validate_response(answer)  # raises on a schema violation
        self.seen.add((method, template, answer.status_code))
        return answer

    async def ok(self, method: str, template: str, path: str | None = None, **request: Any) -> Any:
        answer = await self.call(method, template, path, **request)
        assert 200 <= answer.status_code < 300, f"{method} {path or template}: {answer.status_code} {answer.text[:300]}"
        return answer.json() if answer.headers["content-type"].startswith("application/json") else answer.content


@pytest.fixture
async def contract(client: httpx.AsyncClient) -> Contract:
    return Contract(client, (await client.get("/openapi.json")).json())


async def test_every_answer_with_data_behind_it_conforms_to_the_document(contract: Contract) -> None:
    c = contract
    body = {"name": "contract", "timezone": "Europe/Berlin", "currency": "EUR", "domains": ["shop.example"]}
    site = await c.ok("POST", "/v1/sites", json=body, headers=ROOT)
    read, admin, write = bearer(site["read_key"]), bearer(site["admin_key"]), (site["write_key"], "")
    now = datetime.now(UTC)
    this_month = now.strftime("%Y-%m")
    # ingestion, in every wire format
    await c.ok("POST", "/v1/batch", json={"batch": _journey(), "sentAt": None}, auth=write)
    await c.ok("POST", "/v1/track", json={"event": "Signed Up", "userId": "7", "messageId": "s1"}, auth=write)
    await c.ok("POST", "/v1/b", content=orjson.dumps([{"type": "page", "anonymousId": "b1"}]), auth=write,
               headers={"Content-Type": "text/plain"})  # fmt: skip
    await c.ok("POST", "/v1/p", content=orjson.dumps({"anonymousId": "b2", "writeKey": site["write_key"]}))
    await c.ok(
        "POST", "/batch/", json={"api_key": site["write_key"], "batch": [{"event": "$pageview", "distinct_id": "ph"}]}
    )
    event = {"e": "pv", "aid": site["write_key"], "duid": "sp", "url": "https://shop.example/", "tv": "js-3"}
    tp2 = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [event]}
    await c.ok("POST", "/com.snowplowanalytics.snowplow/tp2", json=tp2)
    pixel = base64.urlsafe_b64encode(orjson.dumps({"type": "page", "anonymousId": "px"})).decode().rstrip("=")
    await c.ok("GET", "/v1/pixel.gif", params={"data": pixel, "writeKey": site["write_key"]})
    await c.call("GET", "/v1/pixel.gif", params={"data": "%%%", "writeKey": site["write_key"]})  # 400, a GIF
    await c.ok("GET", "/i", params={"e": "pv", "aid": site["write_key"], "duid": "sp2", "url": "https://shop.example/"})
    await c.call("POST", "/v1/track", json={"event": "x"}, auth=write)  # 400: no identity
    await c.call("POST", "/v1/batch", content=b"{", auth=write)  # 400 malformed_json
    await c.call("POST", "/v1/batch", json={"batch": []}, auth=("wk_unknown", ""))  # 401
    # plan targets, this month's too (pacing) and March's (met or missed)
    targets = [{"kpi": "revenue", "month": m, "value": 30} for m in ("2026-03", this_month)]
    targets.append({"kpi": "bounce_rate", "month": "2026-03", "value": 0.5})
    await c.ok("PUT", "/v1/targets", json={"targets": targets}, headers=admin)
    await c.ok("GET", "/v1/targets", params={"from": "2026-01", "to": "2199-12"}, headers=admin)
    # reads, as JSON and as CSV, with their variants
    for params in ({"granularity": "day"}, {"granularity": "month"}, {"granularity": "total", "breakdown": "channel",
                   "limit": 1}, {"granularity": "week", "source": "events"}):  # fmt: skip
        await c.ok("GET", "/v1/kpis", params={**MARCH, **params}, headers=read)
    start = f"{this_month}-01"
    await c.ok("GET", "/v1/kpis", params={"from": start, "to": now.date().isoformat() + "T23:59:59Z",
               "granularity": "month"}, headers=read)  # fmt: skip
    for params in ({}, {"medians": "true"}, {"funnel": "independent"}, {"steps": "purchase"},
                   {"steps": "product_view,add_to_cart?,purchase", "window": "30d"}):  # fmt: skip
        await c.ok("GET", "/v1/funnel", params={**MARCH, **params}, headers=read)
    for template in ("/v1/kpis", "/v1/funnel", "/v1/goals", "/v1/quality", "/v1/cohorts"):
        await c.ok("GET", template, params=MARCH, headers=read)
        await c.ok("GET", template, params={**MARCH, "format": "csv"}, headers=read)
    for person in ("u:42", "a:a-7f3c", "42"):
        await c.ok("GET", "/v1/persons/{person_id}", f"/v1/persons/{person}", headers=read)
    await c.ok("GET", "/v1/persons/{person_id}", "/v1/persons/u:42", params={"format": "csv"}, headers=read)
    await c.call("GET", "/v1/persons/{person_id}", "/v1/persons/u:nobody", headers=read)  # 404
    await c.ok("GET", "/v1/report", params={"month": "2026-03"}, headers=read)
    await c.ok("GET", "/v1/report", params={"month": "2026-03", "format": "csv"}, headers=read)
    etag = (await c.client.get("/v1/goals", params=MARCH, headers=read)).headers["etag"]
    await c.call("GET", "/v1/goals", params=MARCH, headers={**read, "If-None-Match": etag})  # 304
    for params in (
        {"from": "yesterday", "to": "2026-04-01"},
        {**MARCH, "granularity": "hour"},
        {**MARCH, "tz": "Mars/Base"},
    ):
        await c.call("GET", "/v1/kpis", params=params, headers=read)  # 400 or 422, ErrorBody
    await c.call("GET", "/v1/kpis", params=MARCH)  # 401
    await c.call("GET", "/v1/rules", headers=read)  # 403: a read key
    # rules, preview, jobs
    await c.ok("GET", "/v1/rules", headers=admin)
    rules = {"rules": [{"goal": "purchase", "stage": "convert", "order": True, "value": "properties.revenue",
                        "when": {"type": "track", "event": "Order Completed"}}]}  # fmt: skip
    await c.ok("PUT", "/v1/rules", json=rules, headers=admin)
    yaml_rules = (
        b"rules:\n  - goal: signup\n    stage: act\n    lead: true\n    when: {type: track, event: Signed Up}\n"
    )
    await c.ok("PUT", "/v1/rules", content=yaml_rules, headers={**admin, "Content-Type": "application/yaml"})
    await c.ok("GET", "/v1/rules", params={"version": 1}, headers=admin)
    await c.call("GET", "/v1/rules", params={"version": 99}, headers=admin)  # 404
    await c.call("PUT", "/v1/rules", json={"rules": [{"goal": "x"}]}, headers=admin)  # 422 invalid_ruleset
    sample = [_journey()[4], {"type": "track"}]
    await c.ok("POST", "/v1/rules/test", json={"messages": sample, "person": {"orders_before": 1}}, headers=admin)
    await c.ok("POST", "/v1/rules/test", json={"rules": rules, "messages": sample[:1]}, headers=admin)
    await c.ok("POST", "/v1/rules/preview", json={"rules": rules, **MARCH}, headers=admin)
    job = await c.ok("POST", "/v1/reclassify", json=MARCH, headers=admin)
    await c.ok("GET", "/v1/jobs", headers=admin)
    await c.ok("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job['id']}", headers=admin)
    await c.call("GET", "/v1/jobs/{job_id}", "/v1/jobs/987654", headers=admin)  # 404
    # failed events and their replay
    failed = await c.ok("GET", "/v1/failed-events", params={"include_replayed": "true"}, headers=admin)
    assert failed["items"], "the journey's rejected message is kept"
    await c.ok("POST", "/v1/failed-events/replay", json={}, headers=admin)
    # keys and audit, by the admin key and by root
    await c.ok("GET", "/v1/keys", headers=admin)
    rotated = await c.ok("POST", "/v1/keys/rotate", json={"kinds": ["read"]}, headers=admin)
    old_read = next(k["id"] for k in rotated["keys"] if k["kind"] == "read" and not k["valid"])
    await c.call("DELETE", "/v1/keys/{key_id}", f"/v1/keys/{old_read}", headers=admin)  # 404: already invalid
    write_id = next(k["id"] for k in rotated["keys"] if k["kind"] == "write")
    await c.ok("DELETE", "/v1/keys/{key_id}", f"/v1/keys/{write_id}", headers=admin)
    await c.ok("GET", "/v1/audit", params={"limit": 2}, headers=admin)
    sid = site["id"]
    await c.ok("GET", "/v1/sites", headers=ROOT)
    await c.ok("GET", "/v1/sites/{site_id}/keys", f"/v1/sites/{sid}/keys", headers=ROOT)
    await c.ok("POST", "/v1/sites/{site_id}/keys/rotate", f"/v1/sites/{sid}/keys/rotate", json={"kinds": ["admin"]},
               headers=ROOT)  # fmt: skip
    await c.ok("GET", "/v1/sites/{site_id}/audit", f"/v1/sites/{sid}/audit", headers=ROOT)
    await c.call("POST", "/v1/sites", json={"name": "x\u0000"}, headers=ROOT)  # 422
    await c.call("GET", "/v1/sites", headers=admin)  # 401: not the root token
    await c.ok("DELETE", "/v1/sites/{site_id}", f"/v1/sites/{sid}", headers=ROOT)
    await c.call("DELETE", "/v1/sites/{site_id}", f"/v1/sites/{sid}", headers=ROOT)  # 404
    await c.call("DELETE", "/v1/sites/{site_id}", f"/v1/sites/{2**63}", headers=ROOT)  # 422
    # operations
    for template in ("/healthz", "/readyz", "/metrics", "/race.js", "/race.core.js"):
        await c.ok("GET", template)
    statuses = {status for _, _, status in c.seen}
    assert {200, 201, 202, 304, 400, 401, 403, 404, 422} <= statuses


async def test_the_edge_refusals_are_documented_on_every_operation(contract: Contract) -> None:
    # a NUL in the query: the edge answers before any route; every operation documents that 400
    await contract.call("GET", "/v1/kpis", "/v1/kpis?from=%00", headers=bearer("rk_x"))
    await contract.call("POST", "/v1/batch", "/v1/batch?writeKey=%00", json={"batch": []})
    await contract.call("GET", "/healthz", "/healthz?x=%00")


async def test_numbers_out_of_range_are_refused_by_name_not_a_server_error(contract: Contract) -> None:
    site = await contract.ok("POST", "/v1/sites", json={"name": "ranges"}, headers=ROOT)
    admin = bearer(site["admin_key"])
    refusals = [
        await contract.call("GET", "/v1/rules", params={"version": 601344311848}, headers=admin),  # past int4
        await contract.call("GET", "/v1/failed-events", params={"before_id": 2**63}, headers=admin),
        await contract.call("POST", "/v1/failed-events/replay", json={"ids": [5, -2**70]}, headers=admin),
        await contract.call(
            "PUT", "/v1/targets", content=b'{"targets": [{"kpi": "revenue", "month": "2026-03", "value": 1e999}]}',
            headers={**admin, "Content-Type": "application/json"},
        ),  # infinity would be stored, then answered as null
    ]  # fmt: skip
    fields = [(r.status_code, r.json()["details"][0]["field"]) for r in refusals]
    assert fields == [(422, "version"), (422, "before_id"), (422, "ids.1"), (422, "targets.0.value")]
