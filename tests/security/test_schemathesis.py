"""Schemathesis over /openapi.json against a real `racetrack serve` on its own database: no input
makes the server answer 5xx, and every answer is documented (status code, content type) and conforms
to its schema, with an admin key, a write key and the root token. Bounded in time.

The runs that would lock the others out come last: key rotation and revocation (they can revoke the
admin and write keys the other runs use), then the root run (it can purge the site)."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.store.database import asyncpg_dsn, migrate, with_database
from tests.conftest import ROOT_TOKEN
from tests.integration.test_faults import _free_port, _serve

SECONDS_PER_RUN = 30
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
KEY_CHANGES = ("--include-name", "POST /v1/keys/rotate", "--include-name", "DELETE /v1/keys/{key_id}")
INGESTION = ("--include-tag", "ingestion", "--include-tag", "ingestion: other trackers")


def _schemathesis(port: int, cwd: Path, header: str, *selection: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "schemathesis"
    command = [str(tool), "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", CHECKS,
               "--header", header, "--max-examples", "10", "--max-time", str(SECONDS_PER_RUN), "--workers", "1",
               "--seed", "14", *selection]  # fmt: skip
    # cwd: its cache folder (.schemathesis/) lands in the test's tmp_path, not the checkout
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=SECONDS_PER_RUN * 4)


@pytest.mark.slow
async def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"racetrack_fuzz_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    await admin.execute(f"CREATE DATABASE {name}")
    own = with_database(database_url, name)  # keeps an embedded server's ?host= socket folder
    port = _free_port()
    try:
        await asyncio.to_thread(migrate, own)  # alembic runs its own event loop
        # fuzzing sends thousands of requests from one address: lift the limits it would hit
        monkeypatch.setenv("RACETRACK_RATE_LIMIT_READ_KEY", "100000/second")
        monkeypatch.setenv("RACETRACK_RATE_LIMIT_FAILED_AUTH", "100000/minute")
        monkeypatch.setenv("RACETRACK_RATE_LIMIT_INGEST_ADDRESS", "100000/second")
        server = _serve(own, port, tmp_path / "serve.log")
        try:
            created = httpx.post(f"http://127.0.0.1:{port}/v1/sites", json={"name": "fuzz"},
                                 headers={"Authorization": f"Bearer {ROOT_TOKEN}"})  # fmt: skip
            site = created.json()
            basic = base64.b64encode(f"{site['write_key']}:".encode()).decode()
            admin_key = f"Authorization: Bearer {site['admin_key']}"
            keyed = ("--exclude-path-regex", "^/v1/sites", "--exclude-tag", "ingestion", "--exclude-tag",
                     "ingestion: other trackers", *(a.replace("include", "exclude") for a in KEY_CHANGES))  # fmt: skip
            runs = [
                _schemathesis(port, tmp_path, admin_key, *keyed),
                _schemathesis(port, tmp_path, f"Authorization: Basic {basic}", *INGESTION),
                _schemathesis(port, tmp_path, admin_key, *KEY_CHANGES),
                _schemathesis(
                    port, tmp_path, f"Authorization: Bearer {ROOT_TOKEN}", "--include-path-regex", "^/v1/sites"
                ),
            ]
        finally:
            server.terminate()
            server.wait(timeout=30)
        for run in runs:
            assert run.returncode == 0, run.stdout[-3000:]
            counts = re.search(r"(\d+) generated, (\d+) passed\n", run.stdout)  # nothing failed or errored
            assert counts and counts[1] == counts[2] and int(counts[1]) > 50, run.stdout[-3000:]
        logged = (tmp_path / "serve.log").read_text()
        assert '"level":"info"' in logged and '"level":"error"' not in logged  # the JSON log lines
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
