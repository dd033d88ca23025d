"""Ingestion traffic: browsers walking RACE journeys through the beacon endpoints, and server SDKs
posting batches of 50-100 messages.

Every ingestion request uses catch_response=True: it passes only on exactly 200 with
accepted + duplicates == the messages sent (DESIGN §2). A 503 is marked failed, counted, and the
same bytes are sent again after Retry-After, as a real SDK does; 429, other 5xx and network errors
are retried with backoff; after LOAD_TEST_MAX_ATTEMPTS sends the payload stays pending (the runner
resends it after the run). Every acknowledgement is recorded by messageId in the ledger.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
import sys
from datetime import UTC, datetime
from typing import Any

import gevent
from locust import HttpUser, between, events, task

from load_tests.config import config
from load_tests.ledger import Ledger, answer_problem, dump_stats
from load_tests.payloads import CRAWLER, BrowserJourney, Fact, fact_of, server_batch, stamp

log = logging.getLogger("load_tests.ingest")
ledger = Ledger(keep_facts=bool(config.ledger_dir))
RETRYABLE = {0, 408, 429, 500, 502, 503, 504}


@events.test_stop.add_listener
def _write_ledger(environment: Any, **_: Any) -> None:
    """After the users stopped: the ledger, and the final statistics (the CSV lags up to a second)."""
    if config.ledger_dir:
        path = ledger.dump(config.ledger_dir)
        dump_stats(environment.stats, config.ledger_dir)
        log.info("ledger written to %s: %s", path, dict(ledger.counters))


@events.quitting.add_listener
def _write_ledger_on_quit(environment: Any, **_: Any) -> None:
    _write_ledger(environment)


def retry_delay(status: int, headers: Any, attempt: int) -> float:
    """Retry-After when the service gives one (503), else exponential backoff; capped."""
    try:
        given = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        given = -1.0
    delay = given if given >= 0 else min(2.0**attempt, 16.0)
    return min(delay, config.max_retry_after)


def deliver(user: HttpUser, path: str, name: str, body: bytes, headers: dict[str, str], messages: list[Any]) -> bool:
    """Send one payload until it is acknowledged, refused, or the attempts run out. True when acknowledged."""
    facts: dict[str, Fact] = {m["messageId"]: fact_of(m) for m in messages}
    token = ledger.begin(path, headers, body, facts)
    for attempt in range(1, config.max_attempts + 1):
        if attempt > 1:
            ledger.count("retries")
        delay = None
        with user.client.post(
            path, data=body, headers=headers, name=name, catch_response=True, timeout=config.request_timeout
        ) as response:
            status = response.status_code or 0
            try:
                answer = response.json() if status == 200 else None
            except ValueError:
                answer = None
            problem = answer_problem(status, answer, len(facts))
            if problem is None:
                response.success()
                ledger.acknowledge(token, facts, answer["accepted"], answer["duplicates"])
                return True
            if status in RETRYABLE:
                delay = retry_delay(status, response.headers or {}, attempt)
                ledger.count(f"answers_{status}" if status else "network_errors")
                if not status and "timeout" in type(response.error).__name__.lower():
                    ledger.count("network_timeouts")  # of the network errors: no answer in time
                detail = f"{status} {_code(response)}" if status else f"network error {response.error!r}"
                response.failure(f"{detail}, retrying in {delay:.0f}s")
            else:
                ledger.refuse(token, facts, "mismatch" if status == 200 else f"http_{status}")
                response.failure(f"{problem}: {response.text[:200] if response.text else ''}")
                return False
        gevent.sleep(delay)
    ledger.count("gave_up")
    return False  # stays pending in the ledger: the runner resends it after the run


def _code(response: Any) -> str:
    try:
        return str(response.json().get("code", ""))
    except (ValueError, AttributeError):
        return ""


@events.init.add_listener
def _require_keys(**_: Any) -> None:
    missing = [name for name, value in (("WRITE_KEY", config.write_key), ("READ_KEY", config.read_key)) if not value]
    if missing:
        log.error(
            "set %s: the keys of a dedicated site (POST /v1/sites), or run `python -m load_tests.run`",
            " and ".join(f"LOAD_TEST_{name}" for name in missing),
        )
        sys.exit(2)


class BrowserVisitor(HttpUser):
    """A visitor's browser: pages beacon one message each (sendBeacon: text/plain, writeKey in the body).

    Journey: land from a channel, browse products, maybe add to cart, sign up or subscribe, buy;
    some come back in a new session and buy again. A small share are crawlers (stored, flagged,
    never in a KPI). Think times are a person's: seconds between pages, longer before a return.
    """

    weight = config.weight_browser
    wait_time = between(1 * config.think_scale, 5 * config.think_scale)  # the next visitor on this "device"

    def on_start(self) -> None:
        self.rng = random.Random()

    def think(self, low: float = 1.0, high: float = 6.0) -> None:
        gevent.sleep(self.rng.uniform(low, high) * config.think_scale)

    def beacon(self, message: dict[str, Any]) -> bool:
        kind = message["type"]
        body = json.dumps({**message, "writeKey": config.write_key}, separators=(",", ":")).encode()
        headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com"}
        return deliver(self, f"/v1/{kind}", f"/v1/{kind}", body, headers, [message])

    def beacons(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.beacon(message)

    @task
    def journey(self) -> None:
        rng = self.rng
        visit = BrowserJourney(rng, config.run_tag, crawler=rng.random() < config.bot_share)
        if visit.user_agent == CRAWLER:
            for _ in range(rng.randint(3, 8)):
                self.beacon(visit.crawl_page())
                gevent.sleep(rng.uniform(0.2, 1.0))
            return
        self.beacon(visit.land())
        self.think()
        for _ in range(rng.randint(1, 4)):
            self.beacons(visit.view_product())
            self.think()
        if rng.random() < 0.5:
            self.beacon(visit.add_to_cart())
            self.think()
        if rng.random() < 0.35:
            self.beacons(visit.sign_up())
            self.think(2, 8)
        elif rng.random() < 0.15:
            self.beacon(visit.subscribe())
            self.think()
        if visit.cart and rng.random() < 0.6:
            self.beacons(visit.checkout())
        if visit.orders and rng.random() < 0.5:  # comes back (another session) and buys again
            self.think(5, 20)
            self.beacon(visit.land(returning=True))
            self.think()
            self.beacons(visit.view_product())
            self.think()
            self.beacon(visit.add_to_cart())
            self.think()
            self.beacons(visit.checkout())


class ServerSdk(HttpUser):
    """A backend with a Segment server SDK: batches of 50-100 messages, Basic auth, gzip for some."""

    weight = config.weight_sdk
    wait_time = between(config.sdk_wait_min, config.sdk_wait_max)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.auth = "Basic " + base64.b64encode(f"{config.write_key}:".encode()).decode()

    @task
    def post_batch(self) -> None:
        messages = server_batch(self.rng, config.run_tag, self.rng.randint(config.batch_min, config.batch_max))
        payload = {"batch": messages, "sentAt": stamp(datetime.now(UTC))}
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Authorization": self.auth}
        if self.rng.random() < config.gzip_share:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        deliver(self, "/v1/batch", "/v1/batch", body, headers, messages)
