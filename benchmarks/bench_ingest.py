"""Pipeline benchmark: Racetrack against baselines measured in the same run, same machine, same load.

1. the naive FastAPI + SQLAlchemy ORM commit-per-request app, driven by wrk (one event per request);
2. `racetrack serve --workers 2` (its derivers running in the same workers, everything sharing the
   cores, synchronous_commit on): wrk with one event per request (64 and 8 connections) and with
   batches of 100;
3. raw asyncpg COPY into Racetrack's event table (the ceiling for batches);
4. derive + roll-up: a backlog of realistic journeys (the demo's: sessions, identifies, orders,
   repeat buyers) appended to the inbox in the order traffic arrives (by event time, so identifies
   merge stored anonymous histories; `--derive-order person` re-sends the day person by person),
   drained by one `racetrack derive --once` process;
5. steady open-loop loads (benchmarks/steady.py) at 4,000 and 8,000 events/s in batches of 100 and at half
   the single-event peak: request latency and the pipeline lag (age of the oldest underived event,
   sampled every 100 ms);
and prints every figure with its target and whether it is met, plus the workers' peak RSS.

    .venv/bin/python benchmarks/bench_ingest.py [--duration 15] [--steady 30] [--derive-events 200000]
        [--derive-order time|person]
        [--server postgresql://postgres@127.0.0.1:5432/postgres]

Needs wrk (Debian package `wrk`) and a PostgreSQL server it may create databases on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.store.database import with_database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.steady, run as a script
LUA = ROOT / "benchmarks" / "wrk_track.lua"
BIN = Path(sys.executable).parent


def wrk(url: str, key: str, batch: int, connections: int, seconds: int) -> dict[str, float]:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url, "--", auth, str(batch),
         uuid.uuid4().hex[:8]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if os.environ.get("BENCH_VERBOSE"):
        print(out, file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    return {"rps": rps, "errors": float(non_2xx.group(1)) if non_2xx else 0.0, "p50": latency["50"],
            "p99": latency["99"]}  # fmt: skip


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


class RssWatch:
    """Peak RSS (MB) of a server's worker processes, sampled every half second."""

    def __init__(self, parent: int) -> None:
        self.parent, self.peak, self._stop = parent, 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in _children(self.parent):
                try:
                    rss = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                               if line.startswith("VmRSS"))  # fmt: skip
                except (OSError, StopIteration):
                    continue
                self.peak = max(self.peak, int(rss.split()[1]) / 1024)

    def stop(self) -> float:
        self._stop.set()
        return self.peak


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    for _ in range(120):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"{cmd[0]} did not start")


def stop(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


async def copy_rows_per_second(url: str, rows: int = 200_000, chunk: int = 1000) -> float:
    """Raw asyncpg COPY of minimal event rows into Racetrack's event table (the ceiling)."""
    from app.store.database import create_pool

    pool = await create_pool(url, 1, 1)
    now = datetime.now(UTC)
    columns = ["site_id", "message_id", "type", "event_name", "anonymous_id", "person_id", "event_at",
               "received_at", "properties", "channel", "device"]  # fmt: skip
    records = [(999_999, f"c{i}", "track", "Product Viewed", f"p{i % 20000}", f"a:p{i % 20000}", now, now,
                {"product_id": "sku-1"}, "Direct", "desktop") for i in range(rows)]  # fmt: skip
    async with pool.acquire() as conn:
        started = time.perf_counter()
        for offset in range(0, rows, chunk):
            await conn.copy_records_to_table("event", columns=columns, records=records[offset : offset + chunk])
        elapsed = time.perf_counter() - started
        await conn.execute("DELETE FROM event WHERE site_id = 999999")
    await pool.close()
    return rows / elapsed


async def derive_rate(url: str, events: int, order: str = "time") -> dict[str, float]:
    """Events/s of one `racetrack derive --once` process draining a backlog of demo journeys."""
    from datetime import timedelta

    from app.demo import EVENTS_PER_PERSON, generate_journeys
    from app.domain.normalize import IncomingEvent, Receipt, normalize
    from app.pipeline import ingest
    from app.store import sites
    from app.store.database import create_pool

    pool = await create_pool(url, 1, 2)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        site, _ = await sites.create_site(conn, "derive-bench", "Europe/Berlin", ["shop.example.com"])
    receipt = Receipt(received_at=now, site_domains=site.domains)
    appended = 0
    backlog: list[IncomingEvent] = []
    # a day of journeys (sessions, identifies, orders, repeat buyers), in the order traffic arrives:
    # by event time (persons interleaved, identifies merging stored anonymous histories); `person`
    # order re-sends the day person by person
    for journey in generate_journeys(max(1, int(events // EVENTS_PER_PERSON)), 1, now - timedelta(days=1), 11):
        backlog += [e for e in (normalize(m, receipt) for m in journey) if isinstance(e, IncomingEvent)]
    if order == "time":
        backlog.sort(key=lambda e: e.event_at)
    for offset in range(0, len(backlog), 5000):
        async with pool.acquire() as conn, conn.transaction():
            appended += len(await ingest.append(conn, site.site_id, backlog[offset : offset + 5000]))
    await pool.close()
    started = time.perf_counter()
    subprocess.run([str(BIN / "racetrack"), "derive", "--once"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DATABASE_URL": url, "RACETRACK_LOG_LEVEL": "warning"})  # fmt: skip
    elapsed = time.perf_counter() - started
    return {"events": appended, "seconds": elapsed, "rate": appended / elapsed}


def steady(url: str, key: str, database_url: str, site_id: int, rate: float, batch: int, seconds: float) -> Any:
    from benchmarks.steady import run_steady

    return run_steady(url, key, database_url, site_id, rate, batch, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--steady", type=float, default=30, help="seconds of each steady load")
    parser.add_argument("--derive-events", type=int, default=200_000)
    parser.add_argument(
        "--derive-order", choices=("time", "person"), default="time",
        help="the derive backlog as traffic arrives (by event time) or re-sent person by person",
    )  # fmt: skip
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    run = uuid.uuid4().hex[:6]
    naive_url = asyncio.run(create_database(args.server, f"bench_naive_{run}"))
    racetrack_url = asyncio.run(create_database(args.server, f"bench_racetrack_{run}"))
    results: dict[str, Any] = {}

    naive = start([str(BIN / "uvicorn"), "benchmarks.naive_app:app", "--port", "18301", "--workers", "2",
                   "--log-level", "warning"],
                  {"DATABASE_URL": naive_url.replace("postgresql://", "postgresql+asyncpg://")}, 18301)  # fmt: skip
    try:
        results["naive"] = wrk("http://127.0.0.1:18301", "x", 1, 64, args.duration)
    finally:
        stop(naive)

    server = start([str(BIN / "racetrack"), "serve", "--port", "18302", "--workers", "2"],
                   {"DATABASE_URL": racetrack_url, "RACETRACK_ADMIN_TOKEN": "bench", "RACETRACK_ACCESS_LOG": "false",
                    # capacity, not policy: the rate limits (README "Security") would answer 429 here
                    "RACETRACK_RATE_LIMIT_INGEST_KEY": "10000000/second",
                    "RACETRACK_RATE_LIMIT_INGEST_ADDRESS": "10000000/second"},
                   18302)  # fmt: skip
    watch = RssWatch(server.pid)
    try:
        site = httpx.post("http://127.0.0.1:18302/v1/sites", json={"name": "bench"},
                          headers={"Authorization": "Bearer bench"}).json()  # fmt: skip
        key = site["write_key"]
        results["single"] = wrk("http://127.0.0.1:18302", key, 1, 64, args.duration)
        results["single_light"] = wrk("http://127.0.0.1:18302", key, 1, 8, args.duration)
        results["batch"] = wrk("http://127.0.0.1:18302", key, 100, 16, args.duration)
        _wait_drained(racetrack_url)
        results["steady_batch"] = steady("http://127.0.0.1:18302", key, racetrack_url, site["id"], 40, 100, args.steady)
        _wait_drained(racetrack_url)
        # the derive target as a live stream: ingestion and derivation sharing the machine
        results["steady_derive"] = steady("http://127.0.0.1:18302", key, racetrack_url, site["id"], 80, 100,
                                          args.steady)  # fmt: skip
        _wait_drained(racetrack_url)
        half = results["single"]["rps"] / 2
        results["steady_single"] = steady("http://127.0.0.1:18302", key, racetrack_url, site["id"], half, 1,
                                          args.steady)  # fmt: skip
    finally:
        stop(server)
        peak_rss = watch.stop()
    results["copy"] = asyncio.run(copy_rows_per_second(racetrack_url))
    results["derive"] = asyncio.run(derive_rate(racetrack_url, args.derive_events, args.derive_order))
    for name in (f"bench_naive_{run}", f"bench_racetrack_{run}"):
        asyncio.run(drop_database(args.server, name))
    _report(results, peak_rss, args.derive_order)


def _wait_drained(url: str) -> None:
    """Until the inbox is empty (the previous phase's backlog derived), so phases don't overlap."""

    async def left() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM inbox"))
        finally:
            await conn.close()

    while asyncio.run(left()):
        time.sleep(0.5)


def _report(r: dict[str, Any], peak_rss: float, derive_order: str) -> None:
    naive, single, light, batch = r["naive"], r["single"], r["single_light"], r["batch"]
    events = batch["rps"] * 100
    print(f"{'measurement':<52}{'value':>14}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    rows = [
        ("naive ORM app, 1 event/request (req/s)", naive),
        ("racetrack, 1 event/request, 64 conns (req/s)", single),
        ("racetrack, 1 event/request, 8 conns (req/s)", light),
        ("racetrack, 100 events/request, 16 conns (req/s)", batch),
    ]
    for label, m in rows:
        print(f"{label:<52}{m['rps']:>14,.0f}{m['p50']:>9.1f}{m['p99']:>9.1f}{m['errors']:>9,.0f}")
    print(f"{'racetrack, 100 events/request (events/s)':<52}{events:>14,.0f}")
    print(f"{'raw asyncpg COPY into the event table (rows/s)':<52}{r['copy']:>14,.0f}")
    d, sb, ss = r["derive"], r["steady_batch"], r["steady_single"]
    print(f"{'derive + roll-up, one process (events/s)':<52}{d['rate']:>14,.0f}   ({d['events']:,} events in "
          f"{d['seconds']:.1f} s, in {derive_order} order)")  # fmt: skip
    sd = r["steady_derive"]
    for label, m, rate in (("steady 4,000 events/s in batches of 100", sb, 4000),
                           ("steady 8,000 events/s in batches of 100", sd, 8000),
                           (f"steady {single['rps'] / 2:,.0f} single events/s", ss, single["rps"] / 2)):  # fmt: skip
        print(f"{label:<52}{m.sent / max(1e-9, m.sent / rate):>14,.0f}{m.latency(0.5):>9.1f}{m.latency(0.99):>9.1f}"
              f"{m.errors:>9,}   lag p50 {m.lag(0.5):.2f} s, p99 {m.lag(0.99):.2f} s")  # fmt: skip
    print()
    checks = [
        (f"single events {single['rps'] / naive['rps']:.1f}x the naive ORM app", single["rps"] / naive["rps"] >= 4,
         ">= 4x"),
        (f"p99 {ss.latency(0.99):.1f} ms at half the single-event peak", ss.latency(0.99) <= 25, "<= 25 ms"),
        (f"batches of 100: {events / r['copy']:.0%} of raw COPY", events / r["copy"] >= 0.40, ">= 40 %"),
        (f"derive + roll-up {d['rate']:,.0f} events/s (a backlog)", d["rate"] >= 8000, ">= 8,000 events/s"),
        (f"lag p99 {sd.lag(0.99):.2f} s at a steady 8,000 events/s (sustained)", sd.lag(0.99) <= 2, "<= 2 s"),
        (f"lag p99 {sb.lag(0.99):.2f} s at 4,000 events/s in batches", sb.lag(0.99) <= 2, "<= 2 s"),
        (f"lag p99 {ss.lag(0.99):.2f} s at half the single-event peak", ss.lag(0.99) <= 2, "<= 2 s"),
        (f"peak worker RSS {peak_rss:.0f} MB", peak_rss < 250, "< 250 MB"),
    ]  # fmt: skip
    for text, met, target in checks:
        print(f"{text:<60} target {target:<18} {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
