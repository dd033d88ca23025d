"""Rate limits: per write key and per client address on ingestion, per key on reads, failed
authentication per client address (logged truncated, never a whole key); shared through Redis."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import types
import uuid
from typing import Any

import httpx
import limits.aio.storage.memory
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from app.api.ratelimit import RateLimits
from app.config import Settings
from app.errors import TooManyRequests
from app.main import create_app
from tests.conftest import create_site
from tests.security.helpers import app_client, assert_error, bearer

REDIS = "redis://127.0.0.1:6379/0"
BATCH = {"batch": [{"type": "page", "anonymousId": "a", "timestamp": "2026-03-01T10:00:00Z"}]}


async def ingest(client: httpx.AsyncClient, write_key: str) -> httpx.Response:
    return await client.post("/v1/batch", json=BATCH, auth=(write_key, ""))


def assert_limited(answer: httpx.Response) -> None:
    assert_error(answer, 429, "rate_limited")
    assert 1 <= int(answer.headers["retry-after"]) <= 60


async def test_ingestion_is_limited_per_write_key(settings: Settings) -> None:
    async with app_client(settings, rate_limit_ingest_key="3/minute") as client:
        site, other = await create_site(client), await create_site(client)
        assert [(await ingest(client, site["write_key"])).status_code for _ in range(3)] == [200] * 3
        assert_limited(await ingest(client, site["write_key"]))
        assert (await ingest(client, other["write_key"])).status_code == 200  # another key: its own budget


async def test_ingestion_is_limited_per_client_address(settings: Settings) -> None:
    async with app_client(settings, rate_limit_ingest_address="3/minute") as client:
        sites = [await create_site(client) for _ in range(4)]
        codes = [(await ingest(client, s["write_key"])).status_code for s in sites[:3]]
        assert codes == [200] * 3
        assert_limited(await ingest(client, sites[3]["write_key"]))
        pixel = await client.get("/v1/pixel.gif", params={"data": "e30", "writeKey": sites[3]["write_key"]})
        assert (pixel.status_code, pixel.headers["x-racetrack-error"]) == (429, "rate_limited")
        assert int(pixel.headers["retry-after"]) >= 1


async def test_a_small_limit_is_exact_across_a_window_edge(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """One request just before a minute's edge and two after fill a 3/minute limit: the fourth is
    refused (a sliding window counter would weigh the first at 0.99 and round it away)."""
    clock = [1_800_000_059.5]  # half a second before a minute's edge
    monkeypatch.setattr(limits.aio.storage.memory, "time", types.SimpleNamespace(time=lambda: clock[0]))
    rate_limits = RateLimits(settings.model_copy(update={"rate_limit_ingest_key": "3/minute", "redis_url": None}))
    await rate_limits.hit("ingest_key", rate_limits.ingest_key, "k")
    clock[0] += 1.0
    for _ in range(2):
        await rate_limits.hit("ingest_key", rate_limits.ingest_key, "k")
    with pytest.raises(TooManyRequests):
        await rate_limits.hit("ingest_key", rate_limits.ingest_key, "k")


async def test_a_burst_at_a_paced_limit_waits_its_turn_and_past_a_window_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100/second from one address, 150 requests at the same instant: the first ten pass at once (a
    burst of 10), the next wait 1/90 s more each (so that no second holds more than 100), and those
    whose turn is more than a second away get 429."""
    monkeypatch.setattr("app.api.ratelimit.time", types.SimpleNamespace(monotonic=lambda: 1000.0, time=time.time))
    rate_limits = RateLimits(settings.model_copy(update={"rate_limit_ingest_address": "100/second", "redis_url": None}))
    waits: list[float] = []
    released = asyncio.Event()

    async def wait_turn(seconds: float) -> None:
        waits.append(seconds)
        await released.wait()

    rate_limits._sleep = wait_turn  # type: ignore[method-assign]
    hits = [asyncio.create_task(rate_limits.hit("ingest_address", rate_limits.ingest_address, "a")) for _ in range(150)]
    await asyncio.sleep(0)
    refused = [h for h in hits if h.done() and isinstance(h.exception(), TooManyRequests)]
    assert [h.done() and h.exception() is None for h in hits[:10]] == [True] * 10
    assert waits == pytest.approx([k / 90 for k in range(1, 91)])  # turns up to one window away
    assert len(refused) == 150 - 10 - 90 and all(h in refused for h in hits[100:])
    assert rate_limits.paced == 90
    released.set()
    await asyncio.gather(*hits[:100], return_exceptions=True)
    assert rate_limits.paced == 0


@pytest.mark.parametrize(
    ("limit", "is_paced", "passes_at_once"),
    [("3/minute", False, None), ("30/minute", False, None), ("20/second", True, 10), ("50/second", True, 10),
     ("2000/second", True, 20)],
)
def test_fast_limits_are_paced_and_slow_ones_counted_exactly(limit: str, is_paced: bool, passes_at_once: int) -> None:
    from limits import parse

    from app.api.ratelimit import burst, paced

    item = parse(limit)
    assert paced(item) is is_paced
    if is_paced:
        assert burst(item) == passes_at_once


async def test_a_paced_read_waits_its_turn_holding_no_database_connection(settings: Settings) -> None:
    """A read key's flood waits its turn at the key's rate; while it waits, the pool's connections stay
    free for everyone else (the key lookup's connection is released before the wait)."""
    app = create_app(settings.model_copy(update={"rate_limit_read_key": "20/second", "pool_max_size": 2}))
    async with LifespanManager(app) as manager:
        state = manager._state
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as client:
            site = await create_site(client)
            params = {"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"}
            get = functools.partial(client.get, "/v1/kpis", params=params, headers=bearer(site["read_key"]))
            reads = [asyncio.create_task(get()) for _ in range(25)]

            async def waiting(count: int) -> None:
                while state["limits"].paced < count:
                    await asyncio.sleep(0.001)

            # 25 at once: 10 pass, the next wait their turn at 100 ms each, those more than a second
            # away get 429; with a pool of 2, 8 can wait at once only if waiting holds no connection
            # (otherwise it never happens, and the deadline fails the test)
            await asyncio.wait_for(waiting(8), timeout=30)
            assert (await ingest(client, site["write_key"])).status_code == 200  # nor is anyone else starved
            assert state["limits"].paced > 0  # answered while reads still waited
            statuses = [r.status_code for r in await asyncio.gather(*reads)]
            assert statuses.count(200) >= 20 and set(statuses) <= {200, 429}, statuses


async def test_reads_are_limited_per_key(settings: Settings) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"}
    async with app_client(settings, rate_limit_read_key="2/minute") as client:
        site = await create_site(client)
        for _ in range(2):
            assert (await client.get("/v1/kpis", params=params, headers=bearer(site["read_key"]))).status_code == 200
        assert_limited(await client.get("/v1/kpis", params=params, headers=bearer(site["read_key"])))
        admin = await client.get("/v1/rules", headers=bearer(site["admin_key"]))
        assert admin.status_code == 200  # the admin key is another key


@pytest.mark.parametrize(
    ("kind", "attempt"),
    [
        ("write", lambda c, guess: ingest(c, guess)),
        (
            "secret",
            lambda c, guess: c.get(
                "/v1/kpis", params={"from": "2026-03-01", "to": "2026-03-02"}, headers=bearer(guess)
            ),
        ),
        ("root", lambda c, guess: c.get("/v1/sites", headers=bearer(guess))),
    ],
)
async def test_key_guessing_slows_to_a_crawl_and_shows_in_the_log(
    settings: Settings, caplog: pytest.LogCaptureFixture, kind: str, attempt: Any
) -> None:
    caplog.set_level(logging.INFO, logger="racetrack")
    async with app_client(settings, rate_limit_failed_auth="5/minute") as client:
        site = await create_site(client)
        guesses = [f"xk_{uuid.uuid4().hex}" for _ in range(8)]
        codes = [(await attempt(client, guess)).status_code for guess in guesses]
        assert codes == [401] * 5 + [429] * 3
        refused = await attempt(client, site["write_key"] if kind == "write" else site["read_key"])
        assert_limited(refused)  # from this address, even a right key waits: guessing gains nothing
    failures = [r for r in caplog.records if r.getMessage() == "authentication failed"]
    assert len(failures) == 5
    assert {r.fields["client"] for r in failures} == {"127.0.0.0/24"}  # type: ignore[attr-defined]
    assert {r.fields["kind"] for r in failures} == {kind}  # type: ignore[attr-defined]
    assert all(len(r.fields["key_prefix"]) <= 7 for r in failures)  # type: ignore[attr-defined]
    logged = caplog.text + " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert not any(guess in logged for guess in guesses)
    assert site["write_key"] not in logged and site["read_key"] not in logged
    assert "127.0.0.1" not in logged


async def test_limits_are_shared_through_redis(settings: Settings) -> None:
    shared = {
        "redis_url": REDIS,
        "rate_limit_prefix": f"rt-test-{uuid.uuid4().hex}",
        "rate_limit_ingest_key": "3/minute",
    }
    async with app_client(settings, **shared) as worker_a, app_client(settings, **shared) as worker_b:
        site = await create_site(worker_a)
        assert [(await ingest(worker_a, site["write_key"])).status_code for _ in range(2)] == [200, 200]
        assert (await ingest(worker_b, site["write_key"])).status_code == 200
        assert_limited(await ingest(worker_b, site["write_key"]))
        assert_limited(await ingest(worker_a, site["write_key"]))


async def test_an_unreachable_redis_does_not_stop_ingestion(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_client(settings, redis_url="redis://127.0.0.1:1/0", rate_limit_ingest_key="1/minute") as client:
        site = await create_site(client)
        assert [(await ingest(client, site["write_key"])).status_code for _ in range(3)] == [200] * 3
    assert "rate limit storage unavailable" in caplog.text


async def test_defaults_are_generous(settings: Settings) -> None:
    async with app_client(settings) as client:
        site = await create_site(client)
        codes = {(await ingest(client, site["write_key"])).status_code for _ in range(100)}
        assert codes == {200}


def _held() -> float:
    return REGISTRY.get_sample_value("racetrack_rate_limit_held_total") or 0.0


async def test_a_refusal_is_held_back_and_holding_is_bounded(settings: Settings) -> None:
    """A client over a limit waits for its 429 (an attacker's loop slows to a crawl); past
    rate_limit_hold_max held answers, a process answers at once."""
    limits = {"rate_limit_ingest_key": "1/minute", "rate_limit_hold_seconds": 30, "rate_limit_hold_max": 1}
    async with app_client(settings, **limits) as client:
        site = await create_site(client)
        assert (await ingest(client, site["write_key"])).status_code == 200
        before = _held()
        held = asyncio.create_task(ingest(client, site["write_key"]))
        while _held() == before:  # the second request's refusal is being held
            await asyncio.sleep(0.01)
        assert not held.done()
        # the one hold slot is taken: this refusal is answered at once (well before the 30 s hold)
        assert_limited(await asyncio.wait_for(ingest(client, site["write_key"]), timeout=20))
        assert _held() == before + 1
        held.cancel()


async def test_guessing_keys_at_the_dashboard_sign_in_is_limited(settings: Settings) -> None:
    async with app_client(settings, rate_limit_failed_auth="3/minute") as client:
        site = await create_site(client)

        async def sign_in(key: str) -> httpx.Response:
            form = await client.get("/dashboard/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            return await client.post(
                "/dashboard/signin", data={"csrf": csrf, "key": key, "next": "/dashboard"},
                headers={"Origin": "http://racetrack.test"},
            )  # fmt: skip

        codes = [(await sign_in(f"rk_{uuid.uuid4().hex}")).status_code for _ in range(5)]
        assert codes == [401] * 3 + [429] * 2
        refused = await sign_in(site["read_key"])  # from this address, even the right key waits
        assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
        assert int(refused.headers["retry-after"]) >= 1


def test_without_redis_each_worker_counts_its_share_of_a_limit(settings: Settings) -> None:
    """`serve --workers 2` without Redis: each worker allows half (rounded up), so the server as a
    whole admits about the limit; with Redis every worker counts against the one shared limit."""
    update = {"rate_limit_ingest_address": "500/second", "rate_limit_failed_auth": "3/minute", "workers": 2}
    alone = RateLimits(settings.model_copy(update={**update, "redis_url": None}))
    assert [(i.amount, i.get_expiry()) for i in alone.ingest_address] == [(250, 1)]
    assert [(i.amount, i.get_expiry()) for i in alone.failed_auth] == [(2, 60)]
    shared = RateLimits(settings.model_copy(update={**update, "redis_url": REDIS}))
    assert [i.amount for i in shared.ingest_address] == [500]
    assert [i.amount for i in shared.failed_auth] == [3]
