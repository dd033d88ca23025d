"""Read traffic: BI dashboards polling /v1/kpis and /v1/funnel (and /v1/goals when the service has it).

A dashboard refreshes its tiles every few seconds: today's totals, the last 30 days by day and
channel, the month as CSV, the RACE funnel. Each answer is checked for its shape (DESIGN §6), not
only its status.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from locust import HttpUser, between, events, task

from load_tests.config import config

log = logging.getLogger("load_tests.kpis")
KPI_SAMPLE = ("visitors", "sessions", "pageviews", "orders", "revenue", "conversion_rate")
FUNNEL_STAGES = ["reach", "act", "convert", "engage"]
goals_available = False


@events.test_start.add_listener
def _probe_goals(environment: Any, **_: Any) -> None:
    """GET /v1/goals may not exist yet: probe once, outside the statistics, and skip it on 404."""
    global goals_available
    if not config.read_key or not environment.host:
        return
    today = datetime.now(UTC).date()
    try:
        answer = requests.get(
            f"{environment.host.rstrip('/')}/v1/goals",
            params={"from": str(today), "to": str(today + timedelta(days=1)), "granularity": "total", "tz": "UTC"},
            headers={"Authorization": f"Bearer {config.read_key}"},
            timeout=10,
        )
        goals_available = answer.status_code != 404
    except requests.RequestException as exc:
        log.warning("could not probe /v1/goals: %s", exc)
    log.info("/v1/goals %s", "is polled" if goals_available else "answers 404: skipped")


def _period(days: int) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=days - 1)), "to": str(today + timedelta(days=1))}


def _month() -> dict[str, str]:
    first = datetime.now(UTC).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return {"from": str(first), "to": str(following)}


def kpi_problem(answer: Any, buckets: int | None) -> str | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("buckets"), list):
        return "no buckets array"
    if buckets is not None and len(answer["buckets"]) != buckets:
        return f"{len(answer['buckets'])} buckets, expected {buckets}"
    for bucket in answer["buckets"]:
        kpis = bucket.get("kpis") if isinstance(bucket, dict) else None
        if not isinstance(kpis, dict) or any(name not in kpis for name in KPI_SAMPLE):
            return "a bucket without the KPIs of DESIGN §5"
    return None


class BiDashboard(HttpUser):
    """A BI tool's dashboard (read key as Bearer), refreshed every dashboard_wait seconds."""

    weight = config.weight_dashboard
    wait_time = between(config.dashboard_wait_min, config.dashboard_wait_max)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {config.read_key}"}

    def _json(self, name: str, params: dict[str, str], check: Any) -> None:
        path = name.split("?")[0]
        with self.client.get(path, params=params, headers=self.headers, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                problem = check(response.json())
            except ValueError:
                problem = "not JSON"
            if problem:
                response.failure(problem)
            else:
                response.success()

    @task(4)
    def kpis_today(self) -> None:
        self._json(
            "/v1/kpis?granularity=total",
            {**_period(1), "granularity": "total", "tz": "UTC"},
            lambda answer: kpi_problem(answer, 1),
        )

    @task(2)
    def kpis_daily_by_channel(self) -> None:
        self._json(
            "/v1/kpis?granularity=day&breakdown=channel",
            {**_period(30), "granularity": "day", "tz": "Europe/Berlin", "breakdown": "channel"},
            lambda answer: kpi_problem(answer, None),
        )

    @task(1)
    def kpis_month_csv(self) -> None:
        name = "/v1/kpis?granularity=month&format=csv"
        params = {**_month(), "granularity": "month", "tz": "UTC", "format": "csv"}
        with self.client.get("/v1/kpis", params=params, headers=self.headers, name=name, catch_response=True) as r:
            header = (r.text or "").split("\n", 1)[0]
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
            elif not r.headers.get("content-type", "").startswith("text/csv") or "orders" not in header.split(","):
                r.failure(f"not the KPI CSV: {header[:120]!r}")
            else:
                r.success()

    @task(2)
    def funnel(self) -> None:
        def check(answer: Any) -> str | None:
            steps = answer.get("steps") if isinstance(answer, dict) else None
            if not isinstance(steps, list) or [s.get("stage") for s in steps] != FUNNEL_STAGES:
                return "funnel steps are not reach, act, convert, engage"
            return None

        self._json("/v1/funnel", {**_period(30), "tz": "UTC"}, check)

    @task(1)
    def goals(self) -> None:
        if not goals_available:
            return
        self._json("/v1/goals", {**_period(30), "granularity": "day", "tz": "UTC"}, lambda a: None)
