"""`racetrack serve` with no DATABASE_URL starts an embedded PostgreSQL and works end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

PROJECT = Path(__file__).resolve().parents[2]
UVICORN_MESSAGES = ("Started server process", "Uvicorn running on", "Application startup complete",
                    "Application shutdown complete")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_without_database_url_uses_embedded_postgres(tmp_path: Path) -> None:
    port = _free_port()
    data_dir = PROJECT / ".racetrack" / f"serve-test-{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env |= {"RACETRACK_ADMIN_TOKEN": "embedded-root", "RACETRACK_DATA_DIR": str(data_dir)}
    racetrack = Path(sys.executable).parent / "racetrack"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(racetrack), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server, tmp_path / "serve.log")
        site = httpx.post(
            f"{base}/v1/sites",
            json={"name": "embedded", "timezone": "UTC"},
            headers={"Authorization": "Bearer embedded-root"},
        ).json()
        batch = [
            {"type": "page", "anonymousId": "a1", "messageId": "e1", "timestamp": "2026-03-01T10:00:00Z"},
            {
                "type": "track",
                "event": "Order Completed",
                "anonymousId": "a1",
                "userId": "u1",
                "messageId": "e2",
                "timestamp": "2026-03-01T10:05:00Z",
                "properties": {"revenue": 42.5, "order_id": "o1"},
            },
        ]
        sent = httpx.post(f"{base}/v1/batch", json={"batch": batch}, auth=(site["write_key"], ""))
        assert sent.status_code == 200 and sent.json()["accepted"] == 2, sent.text
        kpis = _complete_kpis(base, site["read_key"])
        got = kpis["buckets"][0]["kpis"]
        assert (got["visitors"], got["orders"], got["revenue"], got["new_customers"]) == (1, 1, 42.5, 1)
        assert (data_dir / "pgdata" / "PG_VERSION").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert server.returncode == 0, output[-2000:]
    assert "Application shutdown complete" in output
    # uvicorn's own lines are JSON like the app's (start-up, the address, shutdown)
    own = [line for line in output.splitlines() if any(m in line for m in UVICORN_MESSAGES)]
    assert len(own) >= len(UVICORN_MESSAGES), output[-2000:]
    for line in own:
        entry = json.loads(line)
        assert entry["logger"].startswith("uvicorn") and entry["level"] == "info", line
    assert not _postgres_running(data_dir), "the embedded PostgreSQL outlived serve"
    shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    for _ in range(50):
        if not pid_file.exists():
            return False
        time.sleep(0.1)
    return True


def _complete_kpis(base: str, read_key: str) -> dict[str, Any]:
    """The KPIs once they cover the batch: a read waits about 2 s for derivation (the README's
    promise), but a deriver process that is still starting on a loaded machine may need longer."""
    deadline = time.monotonic() + 60
    while True:
        kpis: dict[str, Any] = httpx.get(
            f"{base}/v1/kpis",
            params={"from": "2026-03-01", "to": "2026-03-02", "granularity": "total"},
            headers={"Authorization": f"Bearer {read_key}"},
        ).json()
        if kpis["freshness"]["complete"] or time.monotonic() > deadline:
            return kpis


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"serve not ready in time:\n{log.read_text()[-3000:]}")
