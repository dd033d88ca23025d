"""CORS by kind of path, and the limits at the edge (431, 413 before reading, NUL, slow bodies,
disconnects), through the real app on real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.types import Message

from app import metrics
from app.config import Settings
from tests.conftest import create_site
from tests.security.helpers import ROOT, asgi_app, assert_error, bearer, call, http_scope

ROOT_RAW = [(b"authorization", ROOT["Authorization"].encode())]
KPIS = {"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"}


def cors_headers(answer: httpx.Response) -> set[str]:
    return {k for k in answer.headers if k.startswith("access-control-")}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.example", True),
        ("https://www.shop.example:8443", True),
        ("https://evil.example", False),
        ("https://notshop.example", False),
        ("null", False),
    ],
)
async def test_reads_answer_only_the_sites_origins(client: httpx.AsyncClient, origin: str, allowed: bool) -> None:
    site = await create_site(client, domains=["shop.example"])
    answer = await client.get("/v1/kpis", params=KPIS, headers={**bearer(site["read_key"]), "Origin": origin})
    assert answer.status_code == 200
    assert answer.headers.get("access-control-allow-origin") == (origin if allowed else None)
    assert "access-control-allow-credentials" not in answer.headers


async def test_read_preflights_answer_only_listed_origins(client: httpx.AsyncClient) -> None:
    await create_site(client, domains=["listed.example"])
    ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    ok = await client.options("/v1/kpis", headers={**ask, "Origin": "https://listed.example"})
    assert (ok.status_code, ok.headers["access-control-allow-origin"]) == (204, "https://listed.example")
    evil = await client.options("/v1/funnel", headers={**ask, "Origin": "https://evil.example"})
    assert evil.status_code == 204 and cors_headers(evil) == set()


@pytest.mark.parametrize("path", ["/v1/rules", "/v1/targets", "/v1/audit", "/v1/keys", "/v1/sites"])
async def test_admin_and_root_paths_send_no_cors_headers(client: httpx.AsyncClient, path: str) -> None:
    site = await create_site(client, domains=["shop.example"])
    headers = {**(ROOT if path == "/v1/sites" else bearer(site["admin_key"])), "Origin": "https://shop.example"}
    answer = await client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    assert cors_headers(answer) == set()
    preflight = await client.options(
        path, headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "PUT"}
    )
    assert cors_headers(preflight) == set()


@pytest.mark.parametrize("origin", ["https://anywhere.example", "null"])
async def test_ingestion_answers_any_origin_without_credentials(client: httpx.AsyncClient, origin: str) -> None:
    site = await create_site(client)
    batch = {"batch": [{"type": "page", "anonymousId": "a", "timestamp": "2026-03-01T10:00:00Z"}]}
    answer = await client.post("/v1/batch", json=batch, auth=(site["write_key"], ""), headers={"Origin": origin})
    assert (answer.status_code, answer.headers["access-control-allow-origin"]) == (200, origin)
    assert "access-control-allow-credentials" not in answer.headers
    bad = await client.post("/v1/batch", json=batch, auth=("wk_nope", ""), headers={"Origin": origin})
    assert (bad.status_code, bad.headers["access-control-allow-origin"]) == (401, origin)


async def test_too_many_or_too_large_headers_get_431(client: httpx.AsyncClient) -> None:
    many = {f"x-h{i}": "v" for i in range(150)}
    assert_error(await client.get("/healthz", headers=many), 431, "headers_too_large")
    big = await client.get("/healthz", headers={"x-big": "a" * 20_000, "Origin": "https://a.example"})
    assert_error(big, 431, "headers_too_large")


async def test_a_huge_declared_body_is_refused_before_reading(settings: Settings) -> None:
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async with asgi_app(settings) as app:
        scope = http_scope("POST", "/v1/batch", [(b"content-length", b"99000000000")])
        status, _, body = await call(app, scope, receive)
    assert (status, received) == (413, 0)
    assert b"payload_too_large" in body


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("DELETE", "/v1/sites/%00", b"", 400),
        ("GET", "/v1/persons/u%00x", b"", 400),
        ("GET", "/v1/kpis", b"from=2026-03-01%00&to=2026-03-02", 400),
        ("DELETE", "/v1/sites/99999999999999999999", b"", 422),
        ("GET", "/v1/jobs/99999999999999999999", b"", 422),
        ("DELETE", "/v1/keys/-1", b"", 422),
    ],
)
async def test_nul_and_out_of_range_ids_are_4xx(
    client: httpx.AsyncClient, method: str, path: str, query: bytes, status: int
) -> None:
    site = await create_site(client)
    headers = ROOT if path.startswith("/v1/sites") else bearer(site["admin_key"])
    url = httpx.URL(f"http://racetrack.test{path}", query=query)
    answer = await client.request(method, url, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"]


@pytest.mark.parametrize("body", [{"name": "a\u0000b"}, {"name": "ok", "domains": ["x\u0000.example"]}])
async def test_nul_in_a_new_site_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_error(await client.post("/v1/sites", json=body, headers=ROOT), 422, "invalid_parameter")


async def test_a_dripping_body_times_out_with_408(settings: Settings) -> None:
    async def receive() -> Message:
        await asyncio.sleep(3600)  # never sends the rest
        raise AssertionError("unreachable")

    async with asgi_app(settings, body_timeout_seconds=0.2) as app:
        for path in ("/v1/batch", "/v1/sites"):
            headers = [(b"content-type", b"application/json"), (b"content-length", b"100"), *ROOT_RAW]
            scope = http_scope("POST", path, headers)
            status, _, body = await asyncio.wait_for(call(app, scope, receive), 30)
            assert (path, status) == (path, 408)
            assert b"request_timeout" in body


async def test_a_client_that_goes_away_is_counted_not_logged_as_an_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    before = metrics.CLIENT_DISCONNECTS._value.get()
    async with asgi_app(settings) as app:
        for path in ("/v1/batch", "/v1/track", "/v1/sites"):
            headers = [(b"content-type", b"application/json"), (b"content-length", b"100"), *ROOT_RAW]
            scope = http_scope("POST", path, headers)
            await call(app, scope, receive)
    assert metrics.CLIENT_DISCONNECTS._value.get() - before == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_openapi_names_the_key_every_operation_takes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"writeKeyBasic", "writeKeyQuery", "readKey", "adminKey", "rootToken"} <= set(
        schema["components"]["securitySchemes"]
    )
    paths = schema["paths"]
    assert paths["/v1/batch"]["post"]["security"] == [{"writeKeyBasic": []}, {"writeKeyQuery": []}]
    assert paths["/v1/kpis"]["get"]["security"] == [{"readKey": []}]
    assert paths["/v1/audit"]["get"]["security"] == [{"adminKey": []}]
    assert paths["/v1/sites/{site_id}/keys/rotate"]["post"]["security"] == [{"rootToken": []}]
    unsecured = [
        (path, method)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "security" not in operation and path not in ("/healthz", "/readyz", "/metrics")
    ]
    assert unsecured == []
