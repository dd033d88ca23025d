"""Attack benchmark (issue 14): how much an attacker slows everyone else.

Starts `racetrack serve --workers 2` on a fresh database with the default limits (this measures
policy, not capacity), creates a victim site and an attacker site, and runs a victim: a steady,
open-loop 200 single events/s from its own client address (benchmarks/steady.py). It measures the
victim's latency idle, then under each attack in turn. An attack is a wrk burst of `--attack`
seconds, 16 connections, from a client address of its own (X-Forwarded-For, which uvicorn trusts
from localhost as from a proxy):
- guess-write: random write keys (the failed-authentication limit per address answers 429);
- flood-write: one real write key as fast as it goes (per key and per address limits);
- guess-read: random read keys;
- huge-read: a real read key asking for KPIs from year 1 to 9999 (refused before any work);
- alias-bomb: a real admin key putting a YAML alias bomb as the ruleset.
The victim's window is the attack's plus a second on either side. Prints the victim's p50/p99
idle and under each attack, the attack's status codes, and whether p99 stays within 2x of idle.
Attacker, victim and server share this machine's cores.

    .venv/bin/python benchmarks/bench_attack.py [--attack 6] [--server postgresql://.../postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_ingest import BIN, create_database, drop_database, start, stop
from benchmarks.steady import run_steady

LUA = Path(__file__).with_name("wrk_attack.lua")
PORT = 18310
ATTACKS = ("guess-write", "flood-write", "guess-read", "huge-read", "alias-bomb")
VICTIM_RATE = 200.0


def victim(url: str, key: str, database_url: str, site_id: int, seconds: float) -> Any:
    return run_steady(url, key, database_url, site_id, VICTIM_RATE, 1, seconds)


def attack(url: str, mode: str, secret: str, seconds: float) -> dict[str, int]:
    # each attack from an address of its own (one that guessed keys stays refused for a minute)
    address = f"203.0.113.{ATTACKS.index(mode) + 1}"
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds:g}s", "-s", str(LUA), url, "--", mode, secret, address],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": total, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}


def _burst(into: dict[str, int], url: str, mode: str, secret: str, seconds: float) -> None:
    into.update(attack(url, mode, secret, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", type=float, default=6, help="seconds of each attack")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    name = f"bench_attack_{uuid.uuid4().hex[:6]}"
    database_url = asyncio.run(create_database(args.server, name))
    url = f"http://127.0.0.1:{PORT}"
    server = start([str(BIN / "racetrack"), "serve", "--port", str(PORT), "--workers", "2"],
                   {"DATABASE_URL": database_url, "RACETRACK_ADMIN_TOKEN": "bench", "RACETRACK_ACCESS_LOG": "false"},
                   PORT)  # fmt: skip
    rows: list[tuple[str, Any, dict[str, int] | None]] = []
    try:
        root = {"Authorization": "Bearer bench"}
        site = httpx.post(f"{url}/v1/sites", json={"name": "victim"}, headers=root).json()
        bad = httpx.post(f"{url}/v1/sites", json={"name": "attacker"}, headers=root).json()
        secrets = {
            "guess-write": "", "guess-read": "", "huge-read": bad["read_key"], "alias-bomb": bad["admin_key"],
            "flood-write": base64.b64encode(f"{bad['write_key']}:".encode()).decode(),
        }  # fmt: skip
        window = args.attack + 2
        idle = victim(url, site["write_key"], database_url, site["id"], window)
        rows.append(("idle", idle, None))
        for mode in ATTACKS:
            time.sleep(2)  # the previous burst's backlog settles
            found: dict[str, int] = {}
            burst = threading.Thread(target=_burst, args=(found, url, mode, secrets[mode], args.attack))
            timer = threading.Timer(1.0, burst.start)
            timer.start()
            measured = victim(url, site["write_key"], database_url, site["id"], window)
            timer.join()
            burst.join()
            rows.append((mode, measured, found))
    finally:
        stop(server)
        asyncio.run(drop_database(args.server, name))
    _report(rows)


def _report(rows: list[tuple[str, Any, dict[str, int] | None]]) -> None:
    idle = rows[0][1]
    print(f"victim: {VICTIM_RATE:.0f} single events/s from its own address; each attack from another one")
    print(f"{'while':<14}{'p50 ms':>9}{'p99 ms':>9}{'victim non-2xx':>16}{'attack requests':>17}{'refused':>9}"
          f"{'p99 / idle':>12}  target <= 2x")  # fmt: skip
    for mode, m, found in rows:
        ratio = m.latency(0.99) / idle.latency(0.99)
        requests = f"{found['requests']:,}" if found else "-"
        refused = f"{found['non_2xx']:,}" if found else "-"
        verdict = "" if found is None else ("met" if ratio <= 2 else "NOT MET")
        print(f"{mode:<14}{m.latency(0.5):>9.1f}{m.latency(0.99):>9.1f}{m.errors:>16,}{requests:>17}{refused:>9}"
              f"{ratio:>11.1f}x  {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
