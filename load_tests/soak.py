"""Soak: each server worker's RSS and the run's p99 over time, and a simple growth rule.

Growth (of RSS per worker, and of p99 per endpoint and overall): the median of the last quarter of
the samples exceeds the median of the first quarter by more than a factor plus a constant:

    RSS: last-quarter median > first-quarter median * 1.5 + 50 MB
    p99: last-quarter median > first-quarter median * 2.0 + 100 ms

Quarters need at least MIN_SAMPLES samples, or the rule is reported as not applicable.
"""

from __future__ import annotations

import csv
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from load_tests.slo import Verdict

MB = 1024 * 1024
RSS_FACTOR, RSS_SLACK = 1.5, 50 * MB
P99_FACTOR, P99_SLACK_MS = 2.0, 100.0
MIN_SAMPLES = 8
MAX_SAMPLES = 5000  # per run: the sampler stops recording beyond (the interval keeps it far below)


@dataclass(slots=True)
class RssSampler:
    """Samples RSS of the given processes every `interval` seconds in a background thread."""

    processes: Callable[[], list[psutil.Process]]  # re-read each round: workers may be replaced
    interval: float
    out: Path
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds since start, pid, rss)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 5)
        with self.out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seconds", "pid", "rss_mb"])
            writer.writerows((round(t, 1), pid, round(rss / MB, 1)) for t, pid, rss in self.samples)

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set() and len(self.samples) < MAX_SAMPLES:
            for process in self.processes():
                try:
                    self.samples.append((time.monotonic() - began, process.pid, process.memory_info().rss))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self._stop.wait(self.interval)

    def by_pid(self) -> dict[int, list[int]]:
        series: dict[int, list[int]] = {}
        for _, pid, rss in self.samples:
            series.setdefault(pid, []).append(rss)
        return series


def quarters(values: list[float]) -> tuple[float, float] | None:
    if len(values) < MIN_SAMPLES:
        return None
    quarter = len(values) // 4
    return statistics.median(values[:quarter]), statistics.median(values[-quarter:])


def rss_verdicts(sampler: RssSampler) -> list[Verdict]:
    verdicts = []
    for pid, series in sorted(sampler.by_pid().items()):
        found = quarters([float(v) for v in series])
        if found is None:
            verdicts.append(Verdict(f"worker {pid} RSS growth", f"{len(series)} samples", "n/a", None))
            continue
        first, last = found
        limit = first * RSS_FACTOR + RSS_SLACK
        verdicts.append(
            Verdict(
                f"worker {pid} RSS (first -> last quarter median)",
                f"{first / MB:.0f} -> {last / MB:.0f} MB",
                f"<= {limit / MB:.0f} MB",
                last <= limit,
            )
        )
    return verdicts


def p99_series(history_csv: Path) -> dict[str, list[float]]:
    """Per endpoint (and "Aggregated"): Locust's current-window p99 over time, in ms, skipping empty windows."""
    series: dict[str, list[float]] = {}
    with history_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["99%"] in ("N/A", "", "0"):
                continue
            key = row["Name"] if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            series.setdefault(key, []).append(float(row["99%"]))
    return series


def p99_verdicts(history_csv: Path) -> list[Verdict]:
    verdicts = []
    for key, series in sorted(p99_series(history_csv).items(), key=lambda item: item[0] != "Aggregated"):
        found = quarters(series)
        if found is None:
            verdicts.append(Verdict(f"{key} p99 growth", f"{len(series)} windows", "n/a", None))
            continue
        first, last = found
        limit = first * P99_FACTOR + P99_SLACK_MS
        verdicts.append(Verdict(f"{key} p99", f"{first:.0f} -> {last:.0f} ms", f"<= {limit:.0f} ms", last <= limit))
    return verdicts
