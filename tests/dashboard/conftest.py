"""Browser tests of the dashboard: a real `racetrack` server process on the test database, a demo
site, and Debian's chromium driven by Playwright (no browser download). Without chromium or
Playwright every test here skips, saying which is missing.

The server, the demo site and the browser live as long as a test module (no server process keeps
refreshing rollups on the test database while the rest of the suite runs). Screenshots and the
server's log go to RACETRACK_TEST_OUTPUT (default: test-output/dashboard)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import PROJECT, ROOT_TOKEN, drain

CHROMIUM = os.environ.get("RACETRACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
OUTPUT = Path(os.environ.get("RACETRACK_TEST_OUTPUT", PROJECT / "test-output" / "dashboard"))
DEMO_PERSONS = 300
DEMO_DAYS = 45


def _missing_browser() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium, or set RACETRACK_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(database_url: str, output_dir: Path) -> Iterator[Server]:
    reason = _missing_browser()
    if reason:
        pytest.skip(f"dashboard browser tests skipped: {reason}")
    port = _free_port()
    log = output_dir / "server.log"
    env = {**os.environ, "DATABASE_URL": database_url, "RACETRACK_ADMIN_TOKEN": ROOT_TOKEN}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app_from_env", "--factory", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.2)
        yield Server(url, log)
    finally:
        process.terminate()
        process.wait(timeout=20)


@dataclass
class Demo:
    site: int
    read_key: str
    admin_key: str
    month: str  # the running month (UTC), which has targets
    targets: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def demo(server: Server, database_url: str) -> Demo:
    from app.demo import load_demo

    loaded = await load_demo(database_url, persons=DEMO_PERSONS, days=DEMO_DAYS, seed=11)
    await drain(database_url)
    month = datetime.now(UTC).strftime("%Y-%m")
    targets = {"visitors": 150.0, "orders": 40.0, "revenue": 6000.0, "bounce_rate": 0.3, "leads": 5.0}
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.put(
            "/v1/targets",
            json={"targets": [{"kpi": k, "month": month, "value": v} for k, v in targets.items()]},
            headers={"Authorization": f"Bearer {loaded['admin_key']}"},
        )
        assert answer.status_code == 200, answer.text
        # the demo sets a plan of its own too: the month's targets are both, as the API has them
        stored = await client.get("/v1/targets", params={"from": month, "to": month},
                                  headers={"Authorization": f"Bearer {loaded['admin_key']}"})  # fmt: skip
        targets = {t["kpi"]: t["value"] for t in stored.json()["targets"]}
    return Demo(loaded["site"], loaded["read_key"], loaded["admin_key"], month, targets)


@pytest.fixture
async def api(server: Server, demo: Demo) -> AsyncIterator[httpx.AsyncClient]:
    """The API as a BI tool calls it, with the demo site's read key."""
    headers = {"Authorization": f"Bearer {demo.read_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def browser(server: Server) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A browser page, with what it printed to the console and every request it made."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
async def watched(browser: Any, server: Server) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    page = await context.new_page()
    seen = Watched(page)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
    page.on("request", lambda r: seen.requests.append(r.url))
    yield seen
    await context.close()


async def sign_in(page: Any, key: str, path: str = "/") -> None:
    await page.goto(path)
    await page.fill("#key", key)
    await page.click("form button[type=submit]")
    await page.wait_for_selector("html[data-ready]")


def today_utc() -> datetime:
    return datetime.now(UTC)


def last_days(days: int, tz: str = "UTC") -> tuple[str, str]:
    """A period of whole days ending today in that zone (the page's "last N days" there): (first,
    last) for the page; the API's `to` is last + 1."""
    today = today_utc().astimezone(ZoneInfo(tz)).date()
    return (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
