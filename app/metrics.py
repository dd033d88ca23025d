"""Prometheus metrics (per process; see the README for multi-worker scraping)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
QUEUE_DEPTH = Gauge("racetrack_writer_queue_events", "Events waiting for the writer")
REQUEST_SECONDS = Histogram("racetrack_request_seconds", "HTTP request latency by route", ["method", "route", "status"])
