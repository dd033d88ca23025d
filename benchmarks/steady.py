"""A steady, open-loop load at a fixed request rate over raw keep-alive HTTP/1.1 connections (asyncio
protocols on uvloop, requests built up front, due requests sent in bursts between timer wake-ups, so
the generator itself costs little CPU), with every request's
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
from collections import deque
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
        return {
            "type": "page",
            "anonymousId": person,
            "messageId": f"{tag}-{n}",
            "context": {"page": {"url": f"https://shop.example/p/{kind}", "referrer": "https://www.google.com/"}},
        }
    if kind < 9:
        return {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": person,
            "messageId": f"{tag}-{n}",
            "properties": {"product_id": f"sku-{kind}"},
        }
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


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at)
    return int(head[at + 15 : line_end if line_end >= 0 else len(head)])


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request when free, parses responses as bytes arrive
    (no stream reader per request: the generator must cost far less CPU than the server it loads)."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.buffer = bytearray()
        self.due = 0.0
        self.warming = False  # its warm-up request is out (not measured)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, due: float, request: bytes) -> None:
        self.due = due
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head.split(b" ", 2)[1])
            del self.buffer[: end + 4 + length]
            self.load.answered(self, status)


@dataclass
class _Load:
    """Requests due and not yet sent wait here for a free connection (open loop: latency counts from
    the due time, so a slow server shows as latency, not as a lower sending rate)."""

    result: Result
    free: deque[_Connection] = field(default_factory=deque)
    waiting: deque[tuple[float, bytes]] = field(default_factory=deque)
    outstanding: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    scheduled_all: bool = False
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    warming: int = 0

    def dispatch(self, due: float, request: bytes) -> None:
        self.outstanding += 1
        if self.free:
            self.free.popleft().send(due, request)
        else:
            self.waiting.append((due, request))

    def answered(self, conn: _Connection, status: int) -> None:
        if conn.warming:
            conn.warming = False
            self.free.append(conn)
            self.warming -= 1
            if not self.warming:
                self.warm.set()
            return
        self.result.latencies_ms.append((time.perf_counter() - conn.due) * 1000)
        self.result.errors += status != 200
        self.outstanding -= 1
        if self.waiting:
            conn.send(*self.waiting.popleft())
        else:
            self.free.append(conn)
        if self.scheduled_all and not self.outstanding:
            self.done.set()


async def run(url: str, key: str, database_url: str, site_id: int, rate: float, batch: int, seconds: float,
              connections: int = 32, persons: int = 20000) -> Result:  # fmt: skip
    parts = urlsplit(url)
    total = int(rate * seconds)
    requests = _requests(parts.netloc, key, total, batch, persons)
    result = Result()
    load = _Load(result)
    loop = asyncio.get_running_loop()
    warm_up = f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    for _ in range(connections):
        _, conn = await loop.create_connection(
            lambda: _Connection(load), parts.hostname or "127.0.0.1", parts.port or 80
        )
        conn.warming, load.warming = True, load.warming + 1
        conn.send(0.0, warm_up)
    # every connection answered once, and the lag sampler connected, before the clock starts: the
    # first requests on new connections would otherwise measure the set-up, not the server
    lag_conn = await asyncpg.connect(database_url)
    await lag_conn.fetchval("SELECT 1")
    await load.warm.wait()
    start = time.perf_counter() + 0.2

    async def schedule() -> None:
        n = 0
        while n < total:
            now = time.perf_counter()
            while n < total and start + n / rate <= now:  # everything due by now, then sleep to the next
                load.dispatch(start + n / rate, requests[n])
                n += 1
                result.sent += 1
            if n < total:  # at least a millisecond: shorter timers spin on uvloop (libuv counts in ms)
                await asyncio.sleep(max(0.001, start + n / rate - time.perf_counter()))
        load.scheduled_all = True
        if not load.outstanding:
            load.done.set()
        await load.done.wait()

    async def sample_lag(stop: asyncio.Event) -> None:
        conn = lag_conn
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
    try:
        await schedule()
    finally:
        stop.set()
        await sampler
        for conn in load.free:
            if conn.transport is not None:
                conn.transport.close()
    return result


def run_steady(url: str, key: str, database_url: str, site_id: int, rate: float, batch: int, seconds: float,
               connections: int = 32) -> Result:  # fmt: skip
    """run() on uvloop (what uvicorn runs on) when it is installed: a cheaper client."""
    coro = run(url, key, database_url, site_id, rate, batch, seconds, connections)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


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
    r = run_steady(args.url, args.key, args.database_url, args.site_id, args.rate, args.batch, args.seconds)
    print(f"sent {r.sent} errors {r.errors} p50 {r.latency(0.5):.1f} ms p99 {r.latency(0.99):.1f} ms "
          f"lag p50 {r.lag(0.5):.2f} s p99 {r.lag(0.99):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
