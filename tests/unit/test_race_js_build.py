"""The shipped tracker: its gzipped size (the limits the README promises) and that it is the build of
its readable source (tracker/src/race.js through tracker/build.mjs with the pinned esbuild)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
STATIC = PROJECT / "app" / "static"
TRACKER = PROJECT / "tracker"
CORE_LIMIT = 1536  # 1.5 KB gzipped: page views, SPA navigation, beacon, identity, consent, queue, API
FULL_LIMIT = 3072  # 3 KB gzipped: everything


def gzipped_size(name: str) -> int:
    return len(gzip.compress((STATIC / name).read_bytes(), compresslevel=9, mtime=0))


def test_core_is_at_most_1_5_kb_gzipped() -> None:
    assert gzipped_size("race.core.js") <= CORE_LIMIT


def test_everything_is_at_most_3_kb_gzipped() -> None:
    assert gzipped_size("race.js") <= FULL_LIMIT


def test_shipped_files_carry_the_source_version() -> None:
    version = json.loads((TRACKER / "package.json").read_text())["version"]
    assert (STATIC / "race.js").read_text().startswith(f"/*! race.js {version} */")
    assert (STATIC / "race.core.js").read_text().startswith(f"/*! race.js {version} core */")
    # the core build drops the full build's features (FULL = false removes them)
    assert "Outbound Link Clicked" in (STATIC / "race.js").read_text()
    assert "Outbound Link Clicked" not in (STATIC / "race.core.js").read_text()


def test_shipped_files_are_the_build_of_the_source(tmp_path: Path) -> None:
    if not (TRACKER / "node_modules" / ".bin" / "esbuild").exists() or not shutil.which("node"):
        pytest.skip("the build check needs node and esbuild: cd tracker && npm ci")
    subprocess.run(["node", "build.mjs", "--out", str(tmp_path)], cwd=TRACKER, check=True)
    for name in ("race.js", "race.core.js"):
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), f"{name}: run npm run build in tracker/"
