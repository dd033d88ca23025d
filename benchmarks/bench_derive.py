"""Derive + roll-up rate alone: bench_ingest.derive_rate() on a fresh database (no wrk needed).

.venv/bin/python benchmarks/bench_derive.py --events 200000 [--server postgresql://...] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ingest import create_database, derive_rate, drop_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--order", choices=("time", "person"), default="time")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for run in range(args.runs):
        name = f"rollups_bench_derive_{uuid.uuid4().hex[:6]}"
        url = asyncio.run(create_database(args.server, name))
        try:
            from app.store.database import migrate

            migrate(url)
            d = asyncio.run(derive_rate(url, args.events, args.order))
        finally:
            asyncio.run(drop_database(args.server, name))
        print(f"run {run + 1}: derive + roll-up {d['rate']:,.0f} events/s ({d['events']:,} events in "
              f"{d['seconds']:.1f} s, {args.order} order)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
