"""A local Racetrack server for one load-test run: a fresh database, `racetrack serve`, stop by pid."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _where(url: str) -> str:
    """The server of url without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or (parts.query or "the local socket")
    return f"{host}:{parts.port}" if parts.port else host


async def _connect(url: str) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RuntimeError(
            f"could not reach PostgreSQL at {_where(url)} ({type(exc).__name__}: {exc}); start it, or give"
            " --pg-url / LOAD_TEST_PG_URL (unset: the embedded PostgreSQL of ./scripts/run)"
        ) from None


async def _admin(url: str, statement: str) -> None:
    conn = await _connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _show(url: str, setting: str) -> str:
    conn = await _connect(url)
    try:
        return str(await conn.fetchval(f"SHOW {setting}"))
    finally:
        await conn.close()


def autovacuum_off(url: str) -> bool:
    """True when the PostgreSQL server never refreshes planner statistics by itself."""
    return asyncio.run(_show(url, "autovacuum")) == "off"


def create_database(server_url: str) -> tuple[str, str]:
    """A new, empty database on the PostgreSQL server of server_url: (its URL, its name)."""
    name = f"racetrack_load_{datetime.now(UTC):%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return with_database(server_url, name), name


def drop_database(server_url: str, name: str) -> None:
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(slots=True)
class LocalServer:
    process: subprocess.Popen[bytes]
    url: str
    admin_token: str
    log_path: Path
    known: dict[int, psutil.Process] = field(default_factory=dict)  # every child seen, to stop leftovers

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: uvicorn's spawned workers, or the server itself with one."""
        try:
            root = psutil.Process(self.process.pid)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        serving = [c for c in children if "spawn_main" in " ".join(_cmdline(c))]
        self.known.update({c.pid: c for c in children if c.pid not in self.known})
        return serving or [root]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def start_server(database_url: str, workers: int, log_path: Path) -> LocalServer:
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RACETRACK_ADMIN_TOKEN": token,
        "RACETRACK_LOG_LEVEL": os.environ.get("RACETRACK_LOG_LEVEL", "warning"),
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = LocalServer(process, f"http://127.0.0.1:{port}", token, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log_path}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                server.workers()
                return server
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"the server was not ready within {READY_TIMEOUT_S:.0f}s; see {log_path}")


def stop_server(server: LocalServer) -> int | None:
    """SIGTERM (uvicorn drains), then SIGKILL after STOP_TIMEOUT_S; leftover workers by their pid."""
    server.workers()
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    for child in server.known.values():
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:  # is_running: same pid *and* start
                child.kill()
        except psutil.NoSuchProcess:
            pass
    return server.process.returncode
