"""The README's load-test command on a fresh machine: it needs nothing configured (the embedded
PostgreSQL of ./scripts/run is its default server), and when it cannot run it says why in one line
and exits 2 (missing `load` extra, unreachable PostgreSQL), never with a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_load_chaos import RUN_TIMEOUT_S

PROJECT = Path(__file__).resolve().parents[2]
UNCONFIGURED = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "LOAD_TEST_PG_URL"}}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runner(*args: str, env: dict[str, str], python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *python, "-m", "load_tests.run", *args]
    return subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def test_an_unreachable_database_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    done = _runner("--pg-url", url, "--duration", "5s", "--report-dir", str(tmp_path), env=UNCONFIGURED)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "could not reach PostgreSQL at 127.0.0.1" in done.stderr and "--pg-url" in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_missing_load_extra_is_a_clear_message_and_exit_2() -> None:
    # -S: no site-packages, as a Python where the `load` extra (requests, psutil, locust) was never installed
    env = {**UNCONFIGURED, "PYTHONPATH": str(PROJECT)}
    done = _runner("--duration", "5s", env=env, python=("-S",))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not installed; install the load extra" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_with_nothing_configured_it_runs_on_the_embedded_postgresql(tmp_path: Path) -> None:
    # RACETRACK_DATA_DIR as ./scripts/run reads it: here the tests' own embedded server, not the user's
    slo = tmp_path / "slo.toml"
    slo.write_text("max_error_rate = 0.01\n")  # 4 users, 8 s: only what the setup is about
    data_dir = PROJECT / ".racetrack" / "test"
    env = {**UNCONFIGURED, "RACETRACK_DATA_DIR": str(data_dir)}
    args = ("--users", "4", "--spawn-rate", "4", "--duration", "8s", "--slo", str(slo), "--report-dir", str(tmp_path))
    done = _runner(*args, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"the embedded PostgreSQL in {data_dir}/pgdata" in done.stdout, output[-3000:]
    assert "RESULT: PASS" in done.stdout and "dropped" in done.stdout, output[-3000:]
