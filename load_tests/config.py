"""Load-test configuration: one dataclass read from LOAD_TEST_* environment variables.

`python -m load_tests.run` sets the keys and the ledger folder itself; to run Locust by hand, export at
least LOAD_TEST_WRITE_KEY and LOAD_TEST_READ_KEY of a dedicated site (see README.md).

| variable | default | meaning |
|---|---|---|
| LOAD_TEST_WRITE_KEY | (required) | the site's public write key (ingestion) |
| LOAD_TEST_READ_KEY | (required for dashboards) | the site's secret read key (KPIs, funnel) |
| LOAD_TEST_RUN_TAG | random | prefix of every anonymousId / userId / order id of the run |
| LOAD_TEST_THINK_SCALE | 1.0 | multiplies every browser think time (0.2 = five times faster) |
| LOAD_TEST_BOT_SHARE | 0.04 | share of browser journeys that are crawlers (stored, never in KPIs) |
| LOAD_TEST_BATCH_MIN / _MAX | 50 / 100 | messages per server-SDK batch |
| LOAD_TEST_SDK_WAIT_MIN / _MAX | 1 / 3 | seconds between two batches of one SDK |
| LOAD_TEST_GZIP_SHARE | 0.5 | share of SDK batches sent gzip-encoded |
| LOAD_TEST_DASHBOARD_WAIT_MIN / _MAX | 5 / 15 | seconds between two dashboard refreshes |
| LOAD_TEST_WEIGHT_BROWSER / _SDK / _DASHBOARD | 16 / 2 / 2 | Locust user-class weights |
| LOAD_TEST_MAX_ATTEMPTS | 6 | sends of one payload before an SDK gives up (503 / 5xx / network error) |
| LOAD_TEST_MAX_RETRY_AFTER | 30 | cap, in seconds, on a Retry-After the client honours |
| LOAD_TEST_REQUEST_TIMEOUT | 30 | seconds before a request counts as a network error |
| LOAD_TEST_LEDGER_DIR | unset | where each Locust process writes its acknowledgement ledger |
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass


def _text(name: str, default: str = "") -> str:
    return os.environ.get(f"LOAD_TEST_{name}", default).strip()


def _float(name: str, default: float) -> float:
    raw = _text(name)
    return float(raw) if raw else default


def _int(name: str, default: int) -> int:
    raw = _text(name)
    return int(raw) if raw else default


@dataclass(frozen=True, slots=True)
class LoadTestConfig:
    write_key: str
    read_key: str
    run_tag: str
    think_scale: float = 1.0
    bot_share: float = 0.04
    batch_min: int = 50
    batch_max: int = 100
    sdk_wait_min: float = 1.0
    sdk_wait_max: float = 3.0
    gzip_share: float = 0.5
    dashboard_wait_min: float = 5.0
    dashboard_wait_max: float = 15.0
    weight_browser: int = 16
    weight_sdk: int = 2
    weight_dashboard: int = 2
    max_attempts: int = 6
    max_retry_after: float = 30.0
    request_timeout: float = 30.0
    ledger_dir: str = ""

    @classmethod
    def from_env(cls) -> LoadTestConfig:
        return cls(
            write_key=_text("WRITE_KEY"),
            read_key=_text("READ_KEY"),
            run_tag=_text("RUN_TAG") or uuid.uuid4().hex[:8],
            think_scale=_float("THINK_SCALE", 1.0),
            bot_share=_float("BOT_SHARE", 0.04),
            batch_min=_int("BATCH_MIN", 50),
            batch_max=_int("BATCH_MAX", 100),
            sdk_wait_min=_float("SDK_WAIT_MIN", 1.0),
            sdk_wait_max=_float("SDK_WAIT_MAX", 3.0),
            gzip_share=_float("GZIP_SHARE", 0.5),
            dashboard_wait_min=_float("DASHBOARD_WAIT_MIN", 5.0),
            dashboard_wait_max=_float("DASHBOARD_WAIT_MAX", 15.0),
            weight_browser=_int("WEIGHT_BROWSER", 16),
            weight_sdk=_int("WEIGHT_SDK", 2),
            weight_dashboard=_int("WEIGHT_DASHBOARD", 2),
            max_attempts=max(1, _int("MAX_ATTEMPTS", 6)),
            max_retry_after=_float("MAX_RETRY_AFTER", 30.0),
            request_timeout=_float("REQUEST_TIMEOUT", 30.0),
            ledger_dir=_text("LEDGER_DIR"),
        )


config = LoadTestConfig.from_env()
