"""The load-test runner, short, in CI: a plain run and one per chaos scenario, each ending balanced.

Each test is one `python -m load_tests.run` (a local `racetrack serve --workers 2` on a fresh
database, Locust headless, traffic to 127.0.0.1 only): 10 users for 15 s, about 20 s a run. The
plain, kill-worker and slow-db runs create their database on TEST_DATABASE_URL's server (the
embedded test server without it); restart-db starts its own embedded PostgreSQL, which it stops
and starts mid-run. Every run must end with acknowledged == stored (no loss, no duplicate, KPIs
equal); a chaos run must also see its fault and recover from it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 150  # a run takes about 20 s; this only bounds a hung one

# Short CI runs on shared machines: the real objectives (load_tests/slo.toml) need a longer run with
# more users; these only catch a service that errs or crawls.
CI_SLO = """
max_error_rate = 0.01
min_requests_per_second = 1.0
min_events_per_second = 10.0
[endpoints."POST /v1/batch"]
p99_ms = 5000
[endpoints."POST /v1/page"]
p99_ms = 3000
[endpoints."POST /v1/track"]
p99_ms = 3000
[endpoints."GET /v1/kpis?granularity=total"]
p99_ms = 5000
"""

# More server-SDK batches than the default mix, so a fault finds requests in flight.
CHAOS_ENV = {
    "LOAD_TEST_WEIGHT_SDK": "6",
    "LOAD_TEST_SDK_WAIT_MIN": "0.2",
    "LOAD_TEST_SDK_WAIT_MAX": "0.8",
}

BALANCED = (
    "events stored (SELECT count(*) FROM event)",
    "distinct messageIds stored",
    "acknowledged, not stored (loss)",
    "stored, never acknowledged",
    "duplicate event rows",
    "KPI visitors",
    "KPI orders",
    "KPI revenue",
    "funnel convert persons",
)
CHAOS_CHECKS = {
    "restart-db": ("fault observed", "time to recover", "payloads never acknowledged"),
    "kill-worker": (
        "fault observed",
        "uvicorn started a replacement worker",
        "workers alive now",
        "time to recover",
        "payloads never acknowledged",
    ),
    "slow-db": ("fault observed", "time to recover", "payloads never acknowledged"),
}


def _pg_server() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from app.store.database import start_embedded

    return start_embedded(PROJECT / ".racetrack" / "test")


def _run(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    slo = tmp_path / "slo-ci.toml"
    slo.write_text(CI_SLO)
    command = [
        sys.executable,
        "-m",
        "load_tests.run",
        "--users",
        "10",
        "--spawn-rate",
        "10",
        "--duration",
        "15s",
        "--slo",
        str(slo),
        "--report-dir",
        str(tmp_path / "report"),
        *extra,
    ]
    done = subprocess.run(
        command,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    print(done.stdout)  # shown with -rP, or with a failure
    assert done.returncode == 0, f"exit {done.returncode}\n{output[-6000:]}"
    assert "RESULT: PASS" in done.stdout, output[-6000:]
    return done.stdout


def _row(output: str, figure: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(figure)]
    assert found, f"no row {figure!r} in the output:\n{output[-4000:]}"
    return found[0]


def _assert_balanced(output: str) -> None:
    for figure in BALANCED:
        assert _row(output, figure).rstrip().endswith(" ok"), _row(output, figure)
    stored = re.match(r".*\)\s+(\d+)\s+(\d+)\s+ok$", _row(output, "events stored").rstrip())
    assert stored and stored.group(1) == stored.group(2) and int(stored.group(1)) > 0, _row(output, "events stored")
    assert "events left for site" in output and re.search(r"events left for site \d+: 0", output), output[-2000:]
    assert not any(line.rstrip().endswith("FAIL") for line in output.splitlines()), output[-6000:]


@pytest.mark.slow
def test_load_run_balances(tmp_path: Path) -> None:
    output = _run(tmp_path, "--pg-url", _pg_server())
    _assert_balanced(output)
    assert "Chaos:" not in output


@pytest.mark.slow
@pytest.mark.parametrize("chaos", ["restart-db", "kill-worker", "slow-db"])
def test_chaos_run_recovers_and_balances(chaos: str, tmp_path: Path) -> None:
    extra = ["--chaos", chaos]
    if chaos != "restart-db":  # restart-db runs on its own embedded PostgreSQL, never the shared one
        extra += ["--pg-url", _pg_server()]
    output = _run(tmp_path, *extra, env=CHAOS_ENV)
    _assert_balanced(output)
    assert f"Chaos: {chaos}" in output
    for figure in CHAOS_CHECKS[chaos]:
        assert _row(output, figure).rstrip().endswith(" ok"), _row(output, figure)
    if chaos == "restart-db":  # its own PostgreSQL is gone afterwards, data dir and all
        deleted = re.search(r"embedded PostgreSQL stopped and (\S+) deleted", output)
        assert deleted and not Path(deleted.group(1)).exists(), output[-2000:]
