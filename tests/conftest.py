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
    yield url
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, admin_token=ROOT_TOKEN, flush_max_wait_ms=2.0)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            yield c


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield conn
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


async def drain_rollups(database_url: str) -> None:
    """Refresh every logged rollup slot now (what the background refresher does within a second)."""
    from app.rollups import refresh_all

    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=2)
    try:
        await refresh_all(pool)
    finally:
        await pool.close()
