"""KPI read benchmark: answers from the rollups against the same answers aggregated from the events
(`source=events`), measured in the same run against a real `racetrack serve`.

    # 10M events, 90 days, ~1M persons (about 12 minutes to load here):
    .venv/bin/python benchmarks/bench_kpis.py --database postgresql://postgres@127.0.0.1:5432/bench --events 10000000
    # again on the loaded database (the demo printed its read key):
    .venv/bin/python benchmarks/bench_kpis.py --database postgresql://... --read-key rk_...

Prints one row per query: p50/p95 in ms from the rollups and from the events, their ratio, the
target of issue 5, and whether both sources gave the same answer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

QUERIES: list[tuple[str, str, dict[str, str], float]] = [
    ("kpis day", "/v1/kpis", {"granularity": "day"}, 100),
    ("kpis week", "/v1/kpis", {"granularity": "week"}, 100),
    ("kpis month", "/v1/kpis", {"granularity": "month"}, 100),
    ("kpis day by channel", "/v1/kpis", {"granularity": "day", "breakdown": "channel"}, 100),
    ("kpis week by channel", "/v1/kpis", {"granularity": "week", "breakdown": "channel"}, 100),
    ("kpis month by channel", "/v1/kpis", {"granularity": "month", "breakdown": "channel"}, 100),
    ("kpis total", "/v1/kpis", {"granularity": "total"}, 300),
    ("kpis total by channel", "/v1/kpis", {"granularity": "total", "breakdown": "channel"}, 300),
    ("funnel", "/v1/funnel", {}, 300),
]


def load_demo(database: str, events: int, days: int) -> str:
    env = {**os.environ, "DATABASE_URL": database}
    out = subprocess.run(
        [str(BIN / "racetrack"), "demo", "--events", str(events), "--days", str(days)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    summary = json.loads(out)
    print(f"loaded {summary['events']:,} events; rollups {summary['rollups']}", file=sys.stderr)
    return str(summary["read_key"])


def start_server(database: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database, "RACETRACK_ACCESS_LOG": "false", "RACETRACK_LOG_LEVEL": "warning"}
    server = subprocess.Popen([str(BIN / "racetrack"), "serve", "--port", str(port)], env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not become ready")


def timed(client: httpx.Client, path: str, params: dict[str, str], n: int) -> tuple[list[float], Any, str]:
    times, body, source = [], None, ""
    for _ in range(n):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        body, source = answer.json(), answer.headers.get("x-racetrack-source", "")
    return times, body, source


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="a PostgreSQL URL (loaded, or to load with --events)")
    parser.add_argument("--read-key", help="the demo site's read key (skip loading)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=40, help="per query from the rollups")
    parser.add_argument("--raw-requests", type=int, default=3, help="per query from the events (slow)")
    parser.add_argument("--port", type=int, default=18790)
    args = parser.parse_args()
    key = args.read_key or load_demo(args.database, args.events, args.days)
    server = start_server(args.database, args.port)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{args.port}", headers={"Authorization": f"Bearer {key}"}, timeout=600
        ) as client:
            probe = client.get("/v1/quality", params={"from": "2000-01-01", "to": "2100-01-01", "granularity": "total"})
            probe.raise_for_status()
            today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
            start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - args.days * 86400))
            period = {"from": start, "to": today, "tz": "UTC"}
            print(f"period {start} .. {today} (UTC), {args.requests} requests per query from rollups, "
                  f"{args.raw_requests} from events\n")  # fmt: skip
            header = f"{'query':<24}{'rollups p50':>12}{'p95':>9}{'events p50':>12}{'p95':>9}{'ratio':>8}"
            print(header + f"{'target':>9}{'met':>5}{'same':>6}")
            for label, path, params, target in QUERIES:
                rolled, body_r, src_r = timed(client, path, {**period, **params}, args.requests)
                raw, body_e, src_e = timed(client, path, {**period, **params, "source": "events"}, args.raw_requests)
                assert (src_r, src_e) == ("rollups", "events"), (src_r, src_e)
                ratio = statistics.median(raw) / statistics.median(rolled)
                print(f"{label:<24}{statistics.median(rolled):>12.1f}{p95(rolled):>9.1f}{statistics.median(raw):>12.1f}"
                      f"{p95(raw):>9.1f}{ratio:>7.0f}x{target:>9.0f}{'yes' if p95(rolled) <= target else 'NO':>5}"
                      f"{'yes' if same(body_r, body_e) else 'NO':>6}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
