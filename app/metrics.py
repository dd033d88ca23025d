"""Prometheus metrics. With several workers, `racetrack serve` sets PROMETHEUS_MULTIPROC_DIR so one
scrape of /metrics adds up every worker (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

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
PIPELINE_BACKLOG = Gauge(
    "racetrack_pipeline_backlog_events",
    "Acknowledged events waiting to be derived (all sites)",
    multiprocess_mode="max",
)
PIPELINE_LAG = Gauge(
    "racetrack_pipeline_lag_seconds", "Age of the oldest acknowledged event not derived yet", multiprocess_mode="max"
)
DERIVE_SECONDS = Histogram(
    "racetrack_derive_seconds", "Duration of one derivation batch (one transaction)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
DERIVED_EVENTS = Counter("racetrack_derived_events_total", "Events derived (moved from the inbox to the event table)")
ROLLUP_COMPACTIONS = Counter("racetrack_rollup_compactions_total", "Rollup keys whose delta parts were folded")
RATE_LIMITED = Counter("racetrack_rate_limited_total", "Requests refused with 429, by limit", ["limit"])
RATE_LIMIT_PACED = Counter(
    "racetrack_rate_limit_paced_total", "Requests that waited their turn at a paced limit (ingestion)"
)
RATE_LIMIT_HELD = Counter("racetrack_rate_limit_held_total", "429 answers held back before they were sent")
AUTH_FAILURES = Counter("racetrack_auth_failures_total", "Unknown or invalid keys, by kind of key", ["kind"])
CLIENT_DISCONNECTS = Counter("racetrack_client_disconnects_total", "Clients that went away before the answer")
EDGE_REFUSED = Counter("racetrack_edge_refused_total", "Requests refused at the edge, by reason", ["reason"])
REQUEST_SECONDS = Histogram("racetrack_request_seconds", "HTTP request latency by route", ["method", "route", "status"])


def set_pipeline(backlog: int, oldest: datetime | None) -> None:
    PIPELINE_BACKLOG.set(backlog)
    PIPELINE_LAG.set(0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds()))


def exposition() -> bytes:
    """The text format of every metric: this process's, or all workers' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
