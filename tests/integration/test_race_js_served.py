"""GET /race.js: the right content type, gzip, ETag revalidation, the versioned immutable URL, and
headers that let any site's page load it."""

from __future__ import annotations

import httpx

from tests.unit.test_race_js_build import CORE_LIMIT, FULL_LIMIT, STATIC


async def test_served_gzipped_with_an_etag_and_an_hour_of_cache(client: httpx.AsyncClient) -> None:
    answer = await client.get("/race.js", headers={"Accept-Encoding": "gzip", "Origin": "https://shop.example"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["content-encoding"] == "gzip" and "Accept-Encoding" in answer.headers["vary"]
    assert answer.headers["cache-control"] == "public, max-age=3600"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cross-origin-resource-policy"] == "cross-origin"
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    assert answer.content == (STATIC / "race.js").read_bytes()  # httpx decodes the gzip
    assert int(answer.headers["content-length"]) <= FULL_LIMIT  # what travels is what the size test measures


async def test_a_matching_etag_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/race.core.js", headers={"Accept-Encoding": "gzip"})
    assert int(first.headers["content-length"]) <= CORE_LIMIT
    tag = first.headers["etag"]
    again = await client.get("/race.core.js", headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    plain = await client.get("/race.core.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != first.headers["etag"]
    assert plain.content == (STATIC / "race.core.js").read_bytes()


async def test_the_versioned_url_is_immutable(client: httpx.AsyncClient) -> None:
    plain = await client.get("/race.js", headers={"Accept-Encoding": "identity"})
    version = plain.headers["etag"].strip('"')
    pinned = await client.get("/race.js", params={"v": version})
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = await client.get("/race.js", params={"v": "000000000000"})  # an old version: today's, briefly cached
    assert stale.status_code == 200 and stale.headers["cache-control"] == "public, max-age=3600"
    head = await client.head("/race.js", headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and head.content == b""
    assert pinned.content == (STATIC / "race.js").read_bytes()
