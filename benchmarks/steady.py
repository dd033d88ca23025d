"""A steady, open-loop load at a fixed request rate over raw keep-alive HTTP/1.1 connections (asyncio
streams, requests built up front, so the generator itself costs little CPU), with every request's
latency measured from its scheduled send time (no coordinated omission), and the pipeline's lag
sampled from the database meanwhile: the age of the site's oldest acknowledged, underived event.

Used by bench_ingest.py; `python benchmarks/steady.py URL WRITE_KEY DATABASE_URL SITE_ID --rate 40 --batch 100`
runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import orjson


@dataclass
class Result:
    sent: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lags_s: list[float] = field(default_factory=list)

    @staticmethod
    def _pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    def latency(self, p: float) -> float:
        return self._pct(self.latencies_ms, p)

    def lag(self, p: float) -> float:
        return self._pct(self.lags_s, p)


def _message(tag: str, n: int, persons: int) -> dict[str, object]:
    person = f"s{n * 7919 % persons}"
    kind = n % 10
    if kind < 6:
        return {"type": "page", "anonymousId": person, "messageId": f"{tag}-{n}",
                "context": {"page": {"url": f"https://shop.example/p/{kind}", "referrer": "https://www.google.com/"}}}
    if kind < 9:
        return {"type": "track", "event": "Product Viewed", "anonymousId": person, "messageId": f"{tag}-{n}",
                "properties": {"product_id": f"sku-{kind}"}}
    return {"type": "track", "event": "Order Completed", "anonymousId": person, "messageId": f"{tag}-{n}",
            "properties": {"order_id": f"{tag}-{n}", "revenue": 25.5}}  # fmt: skip


def _requests(host: str, key: str, count: int, batch: int, persons: int) -> list[bytes]:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    tag = uuid.uuid4().hex[:8]
    out = []
    for r in range(count):
        if batch == 1:
            message = _message(tag, r, persons)
            path, body = f"/v1/{message['type']}", orjson.dumps(message)
        else:
            path = "/v1/batch"
            body = orjson.dumps({"batch": [_message(tag, r * batch + i, persons) for i in range(batch)]})
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def run(url: str, key: str, database_url: str, site_id: int, rate: float, batch: int, seconds: float,
              connections: int = 32, persons: int = 20000) -> Result:  # fmt: skip
    parts = urlsplit(url)
    total = int(rate * seconds)
    requests = _requests(parts.netloc, key, total, batch, persons)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    result = Result()
    start = time.perf_counter() + 0.2

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while (item := await queue.get()) is not None:
                due, request = item
                writer.write(request)
                status = await _read_response(reader)
                result.latencies_ms.append((time.perf_counter() - due) * 1000)
                result.errors += status != 200
        finally:
            writer.close()

    async def schedule() -> None:
        for n, request in enumerate(requests):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, request))
            result.sent += 1
        for _ in range(connections):
            queue.put_nowait(None)

    async def sample_lag(stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                lag = await conn.fetchval(
                    """SELECT COALESCE(extract(epoch FROM clock_timestamp() - min(received_at)), 0)::float8
                       FROM (SELECT received_at FROM inbox WHERE site_id = $1 ORDER BY inbox_id LIMIT 1) o""",
                    site_id,
                )
                result.lags_s.append(float(lag))
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_lag(stop))
    await asyncio.gather(schedule(), *(connection() for _ in range(connections)))
    stop.set()
    await sampler
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("database_url")
    parser.add_argument("site_id", type=int)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    r = asyncio.run(run(args.url, args.key, args.database_url, args.site_id, args.rate, args.batch, args.seconds))
    print(f"sent {r.sent} errors {r.errors} p50 {r.latency(0.5):.1f} ms p99 {r.latency(0.99):.1f} ms "
          f"lag p50 {r.lag(0.5):.2f} s p99 {r.lag(0.99):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
