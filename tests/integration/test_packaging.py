"""The Docker image's commands work from a plain (non-editable) install: the wheel carries the
migrations and the default rules, and `racetrack migrate` runs from a folder that is not the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from app.store.database import asyncpg_dsn, with_database

PROJECT = Path(__file__).resolve().parents[2]
MIGRATE = """
import sys, app, racetrack_migrations
print(app.__file__, list(racetrack_migrations.__path__)[0])
from app.cli import main
sys.exit(main(["migrate"]))
"""


def _wheel_installed_into(folder: Path) -> Path:
    wheels = folder / "wheels"
    pip = [sys.executable, "-m", "pip", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheels), str(PROJECT)], check=True, capture_output=True, text=True
    )
    # every importable folder is declared (setuptools warns on the first install otherwise)
    assert "is absent from the `packages` configuration" not in built.stdout + built.stderr, built.stderr[-3000:]
    (wheel,) = wheels.glob("racetrack-*.whl")
    target = folder / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    return target


@pytest.mark.slow
async def test_a_plain_install_migrates_outside_the_checkout(database_url: str, tmp_path: Path) -> None:
    target = _wheel_installed_into(tmp_path)
    assert (target / "app" / "rules" / "default.yaml").exists()
    name = f"racetrack_wheel_{uuid.uuid4().hex[:8]}"
    wheel_database = with_database(database_url, name)
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        dependencies = [p for p in sys.path if p.endswith("site-packages")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *dependencies]),
               "DATABASE_URL": wheel_database}  # fmt: skip
        done = subprocess.run([sys.executable, "-c", MIGRATE], cwd=elsewhere, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        app_file, migrations = done.stdout.split()[:2]
        assert app_file.startswith(str(target)) and migrations.startswith(str(target))  # not the checkout
        conn = await asyncpg.connect(wheel_database)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        await conn.close()
        assert {"site", "event", "session", "person_state", "alembic_version"} <= tables
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
