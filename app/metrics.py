"""Prometheus metrics. With several workers, `racetrack serve` sets PROMETHEUS_MULTIPROC_DIR so one
scrape of /metrics adds up every worker (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

EVENTS = Counter("racetrack_events_total", "Ingested messages by outcome", ["outcome"])
REJECTED = Counter("racetrack_rejected_total", "Rejected messages by reason", ["code"])
FLUSH_SECONDS = Histogram(
    "racetrack_flush_seconds",
    "Duration of one writer flush (one transaction)",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FLUSH_EVENTS = Histogram(
    "racetrack_flush_events", "Events written per flush", buckets=(1, 5, 10, 50, 100, 500, 1000, 5000)
)
QUEUE_DEPTH = Gauge("racetrack_writer_queue_events", "Events waiting for the writer", multiprocess_mode="livesum")
POOL_IN_USE = Gauge("racetrack_db_pool_in_use", "Database connections in use", multiprocess_mode="livesum")
POOL_SIZE = Gauge("racetrack_db_pool_size", "Database connections open", multiprocess_mode="livesum")
ROLLUP_LAG = Gauge(
    "racetrack_rollup_lag_seconds", "Age of the oldest write the rollups do not include yet", multiprocess_mode="max"
)
ROLLUP_REFRESH_SECONDS = Histogram("racetrack_rollup_refresh_seconds", "Duration of a rollup refresh that did work")
RATE_LIMITED = Counter("racetrack_rate_limited_total", "Requests refused with 429, by limit", ["limit"])
AUTH_FAILURES = Counter("racetrack_auth_failures_total", "Unknown or invalid keys, by kind of key", ["kind"])
CLIENT_DISCONNECTS = Counter("racetrack_client_disconnects_total", "Clients that went away before the answer")
EDGE_REFUSED = Counter("racetrack_edge_refused_total", "Requests refused at the edge, by reason", ["reason"])
REQUEST_SECONDS = Histogram("racetrack_request_seconds", "HTTP request latency by route", ["method", "route", "status"])


def exposition() -> bytes:
    """The text format of every metric: this process's, or all workers' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
