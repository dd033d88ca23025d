"""Real-browser fixtures: Debian's chromium, headless, driven by Playwright's async API.

Package-scoped (browser, server) so they are gone before the rest of the suite runs.
- `browser`: one chromium for tests/browser. Skipped, with the reason shown in pytest's
  summary, when Playwright or the browser is missing (`CHROMIUM` names another binary).
- `context` / `page` (per test): a fresh profile (empty localStorage and cookies) with a desktop
  Chrome user agent: headless chromium says "HeadlessChrome", which Racetrack stores as a bot.
- `racetrack`: a real `racetrack serve` process on a free port, on the test database.
- `pages`: a static server on another origin for tests/browser/pages/*.html, the way a
  customer's site embeds race.js; `{{racetrack}}` and `{{key}}` in a page are filled in from the URL.
- `wait_for(probe)`: polls until probe() is truthy (never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import PROJECT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = Path(__file__).resolve().parent / "pages"
ROOT_TOKEN = "browser-root-token"
T = TypeVar("T")

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright
except ImportError:  # the test extra not installed: every browser test skips, saying so
    async_playwright = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.skip("browser tests need Playwright: pip install -e '.[test]'")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.skip(f"browser tests need chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def desktop_user_agent(browser: Browser) -> str:
    major = browser.version.split(".")[0]
    return f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    created = await browser.new_context(user_agent=desktop_user_agent(browser))
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def wait_for(probe: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition") -> T:
    """probe()'s first truthy answer, polled until `timeout` seconds; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last answer: {got!r}")
        await asyncio.sleep(0.1)


@dataclass
class Racetrack:
    """A running `racetrack serve`: its base URL and a client holding the root admin token."""

    url: str
    http: httpx.AsyncClient

    async def create_site(self, **extra: Any) -> dict[str, Any]:
        answer = await self.http.post(
            "/v1/sites",
            json={"name": f"browser-{os.urandom(3).hex()}", "timezone": "UTC", **extra},
            headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
        )
        assert answer.status_code == 201, answer.text
        site: dict[str, Any] = answer.json()
        return site

    async def read(self, site: dict[str, Any], path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers={"Authorization": f"Bearer {site['read_key']}"})


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"racetrack serve exited {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"racetrack serve not ready after 60 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="package")
async def racetrack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Racetrack]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("racetrack") / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    env |= {"DATABASE_URL": database_url, "RACETRACK_ADMIN_TOKEN": ROOT_TOKEN, "RACETRACK_ACCESS_LOG": "false"}
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(_wait_ready, base, server, log_path)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Racetrack(base, http)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@dataclass
class Pages:
    """The fixture site. `url("signup.html", key)` is a page with that site's write key."""

    origin: str

    def url(self, name: str, key: str, query: str = "") -> str:
        return f"{self.origin}/k/{quote(key)}/{name}{query}"


def _handler(racetrack_url: str) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            # /k/<write key>/<page>.html[?query]
            parts = self.path.split("?", 1)[0].split("/")
            file = PAGES / parts[-1] if len(parts) == 4 and parts[1] == "k" else None
            if file is None or not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            if file.suffix == ".html":
                body = body.replace(b"{{racetrack}}", racetrack_url.encode()).replace(b"{{key}}", parts[2].encode())
            self.send_response(200)
            self.send_header("Content-Type", self.guess_type(file.name))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="package")
def pages(racetrack: Racetrack) -> Iterator[Pages]:
    # "localhost" while Racetrack is at 127.0.0.1: another site, as on the web (and a secure context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(racetrack.url))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Pages(f"http://localhost:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
