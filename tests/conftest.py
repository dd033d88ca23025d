"""Real PostgreSQL for every test: TEST_DATABASE_URL's server when set (CI), else the embedded one.
Each test session gets a fresh database, migrated once; tests isolate themselves by creating sites."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from app.store.database import asyncpg_dsn, migrate, start_embedded, with_database

ROOT_TOKEN = "test-root-token"
PROJECT = Path(__file__).resolve().parents[1]


def _server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    return url or start_embedded(PROJECT / ".racetrack" / "test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    import asyncio

    server = _server_url()
    name = f"racetrack_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = with_database(server, name)
    migrate(url)
    _DATABASE[:] = [url]
    yield url
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    # reads wait for derivation up to read_wait_seconds, and answer as soon as it is done: a long
    # bound keeps a loaded machine from turning "send, then read" into a race
    # the exactness tests compare hundreds of answers a second with one read key: the read limit
    # (50/second by default) would answer some of them 429; tests/security tests the limits, and that
    # a refusal is held back (here answered at once)
    return Settings(database_url=database_url, admin_token=ROOT_TOKEN, read_wait_seconds=60,
                    rate_limit_read_key="100000/second", rate_limit_hold_seconds=0)  # fmt: skip


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            yield c


class DerivedReads:
    """A test's own connection to the database: every read first derives what was acknowledged
    (as the API's reads wait for it), so a test that sends events and then reads `event` or
    `session` with SQL sees them. Everything else goes to the connection as is."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        await drain()
        return await self._conn.fetch(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        await drain()
        return await self._conn.fetchrow(*args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        await drain()
        return await self._conn.fetchval(*args, **kwargs)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield DerivedReads(conn)
    finally:
        await conn.close()


async def create_site(client: httpx.AsyncClient, timezone: str = "UTC", **extra: Any) -> dict[str, Any]:
    answer = await client.post(
        "/v1/sites",
        json={"name": f"site-{uuid.uuid4().hex[:6]}", "timezone": timezone, **extra},
        headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
    )
    assert answer.status_code == 201, answer.text
    site: dict[str, Any] = answer.json()
    return site


@pytest.fixture
async def site(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_site(client)


_DATABASE: list[str] = []  # the session's database URL, for drain()
_POOLS: dict[tuple[str, int], asyncpg.Pool] = {}


async def drain(database_url: str | None = None) -> int:
    """Derive every acknowledged event now (what the service's derivers do behind ingestion); waits
    for a batch another deriver holds. How many events this call derived. Tests that read tables
    with SQL call it first; reads through the API wait for derivation themselves."""
    import asyncio

    from app.pipeline.derive import drain as derive_all
    from app.store.database import create_pool

    url = database_url or _DATABASE[0]
    key = (url, id(asyncio.get_running_loop()))
    if key not in _POOLS:
        _POOLS[key] = await create_pool(url, 1, 2)
    return await derive_all(_POOLS[key])
