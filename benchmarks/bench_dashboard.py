"""Dashboard render benchmark, measured in a real browser: how long until the RACE page is fully
rendered (every panel filled and the chart drawn), from the start of the navigation.

    # a demo database (the demo prints its read key), then:
    DATABASE_URL=postgresql://.../bench .venv/bin/racetrack demo --events 10000000 --days 90
    DATABASE_URL=postgresql://.../bench .venv/bin/racetrack serve --port 8000 &
    .venv/bin/python benchmarks/bench_dashboard.py --url http://127.0.0.1:8000 --read-key rk_...

Signs in once with the read key, then loads the page `--runs` times per view (this month, last 30
and 90 days, last 90 days by device in another time zone). "ready" is the page's own
`racetrack:ready` mark (set after the chart is drawn; every other panel is server-rendered into
the HTML before it); "html" is when the last byte of the HTML arrived. Prints p50 / p95 / max in ms
and whether the first full render is under the 1 s target. Needs Playwright and chromium
(RACETRACK_CHROMIUM, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
from typing import Any

TARGET_MS = 1000.0
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWS = [
    ("this month", "period=this_month"),
    ("last 30 days", "period=last_30"),
    ("last 90 days", "period=last_90"),
    ("last 90 days, weekly, by device, Asia/Kolkata", "period=last_90&every=week&breakdown=device&tz=Asia%2FKolkata"),
]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


async def _measure(page: Any, url: str) -> tuple[float, float]:
    await page.goto(url, wait_until="commit")
    await page.wait_for_selector("html[data-ready]", timeout=120_000)
    ready = await page.evaluate("performance.getEntriesByName('racetrack:ready')[0].startTime")
    html = await page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd")
    return float(ready), float(html)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--read-key", required=True)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=os.environ.get("RACETRACK_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{args.url}/dashboard/signin")
        await page.fill("#key", args.read_key)
        await page.click("form button[type=submit]")
        await page.wait_for_selector("html[data-ready]", timeout=120_000)

        print(f"{'view':48} {'first':>7} {'p50':>7} {'p95':>7} {'max':>7} {'html p50':>9}  first < {TARGET_MS:.0f} ms")
        for name, query in VIEWS:
            url = f"{args.url}/dashboard?{query}"
            runs = [await _measure(page, url) for _ in range(args.runs)]
            ready = [r for r, _ in runs]
            html = [h for _, h in runs]
            met = "yes" if ready[0] < TARGET_MS else "NO"
            print(
                f"{name:48} {ready[0]:7.0f} {statistics.median(ready):7.0f} {_percentile(ready, 0.95):7.0f} "
                f"{max(ready):7.0f} {statistics.median(html):9.0f}  {met}"
            )
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
