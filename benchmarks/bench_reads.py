"""Timings of the dashboard's read endpoints beside /v1/kpis, in process (no HTTP server), on a
demo database:

    DATABASE_URL=postgresql://.../db .venv/bin/racetrack demo --events 1000000 --days 90
    DATABASE_URL=postgresql://.../db .venv/bin/python benchmarks/bench_reads.py --read-key rk_... [--runs 5]

Prints the median and the slowest of `--runs` calls of /v1/goals, /v1/quality and /v1/cohorts
(and /v1/kpis for comparison) over the last 90 days (and the cohorts of the dashboard's six
calendar months), in the site's zone and in Asia/Kolkata; `--source events` asks every endpoint
for its event-scan answer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import httpx
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app


def _months_before(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 - n
    return date(index // 12, index % 12 + 1, 1)


async def run(read_key: str, runs: int, source: str | None) -> None:
    app = create_app(Settings())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            headers = {"Authorization": f"Bearer {read_key}"}
            today = datetime.now(UTC).date() + timedelta(days=1)
            period = {"from": (today - timedelta(days=90)).isoformat(), "to": today.isoformat()}
            # the dashboard's cohort grid: the six calendar months up to this one
            month = today.replace(day=1)
            months = {"from": _months_before(month, 5).isoformat(), "to": _months_before(month, -1).isoformat()}
            calls = [
                ("/v1/goals", {"granularity": "total"}), ("/v1/goals", {"granularity": "day"}),
                ("/v1/quality", {"granularity": "total"}), ("/v1/quality", {"granularity": "day"}),
                ("/v1/cohorts", {}), ("/v1/cohorts", {**months, "label": "6 months"}),
                ("/v1/kpis", {"granularity": "total"}),
            ]  # fmt: skip
            if source:
                calls = [(path, {**extra, "source": source}) for path, extra in calls]
            for tz in (None, "Asia/Kolkata"):
                for path, extra in calls:
                    label = f"{path} {extra.get('label') or extra.get('granularity', '')} tz={tz or 'site'}"
                    params = {**period, **extra, **({"tz": tz} if tz else {})}
                    params.pop("label", None)
                    took = []
                    for _ in range(runs):
                        started = time.perf_counter()
                        answer = await client.get(path, params=params, headers=headers)
                        took.append((time.perf_counter() - started) * 1000)
                        assert answer.status_code == 200, answer.text
                    answered = answer.headers.get("x-racetrack-source", "-")
                    print(f"{label:<44} p50 {statistics.median(took):8.1f} ms   max {max(took):8.1f} ms   "
                          f"source {answered}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--read-key", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source", choices=("rollups", "events"), help="asked of every endpoint (default: none)")
    args = parser.parse_args()
    asyncio.run(run(args.read_key, args.runs, args.source))


if __name__ == "__main__":
    main()
