"""SLOs from a small TOML file, checked against Locust's `<prefix>_stats.csv`.

max_error_rate = 0.01            # failed / all requests
min_requests_per_second = 3.0    # all endpoints
min_events_per_second = 30.0     # acknowledged messages / run seconds
[endpoints."POST /v1/batch"]
p95_ms = 1000
p99_ms = 2000
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class EndpointStats:
    key: str  # "<method> <name>", or "Aggregated"
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    rps: float


@dataclass(frozen=True, slots=True)
class Verdict:
    what: str
    actual: str
    limit: str
    ok: bool | None  # None: not applicable (e.g. no request to that endpoint)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # "N/A"


def read_stats(path: Path) -> dict[str, EndpointStats]:
    """The final statistics the locustfile wrote (stats-<pid>.json beside the CSV), else Locust's CSV."""
    final = sorted(path.parent.glob("stats-*.json"))
    if len(final) == 1:
        exact: dict[str, EndpointStats] = {}
        for row in json.loads(final[0].read_text()):
            key = row["name"] if row["name"] == "Aggregated" else f"{row['method']} {row['name']}"
            exact[key] = EndpointStats(
                key, row["requests"], row["failures"], row["p50"], row["p95"], row["p99"], row["rps"]
            )
        return exact
    found: dict[str, EndpointStats] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = row["Name"] if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            found[key] = EndpointStats(
                key,
                int(row["Request Count"]),
                int(row["Failure Count"]),
                _number(row["50%"]),
                _number(row["95%"]),
                _number(row["99%"]),
                float(row["Requests/s"]),
            )
    return found


def load_slo(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def check(slo: dict[str, Any], stats: dict[str, EndpointStats], events_per_second: float) -> list[Verdict]:
    verdicts: list[Verdict] = []
    total = stats.get("Aggregated")
    requests = total.requests if total else 0
    if "max_error_rate" in slo:
        rate = (total.failures / requests) if total and requests else 0.0
        limit = float(slo["max_error_rate"])
        verdicts.append(Verdict("error rate", f"{rate:.2%}", f"<= {limit:.2%}", rate <= limit))
    if "min_requests_per_second" in slo:
        rps = total.rps if total else 0.0
        floor = float(slo["min_requests_per_second"])
        verdicts.append(Verdict("throughput (requests/s)", f"{rps:.1f}", f">= {floor:g}", rps >= floor))
    if "min_events_per_second" in slo:
        floor = float(slo["min_events_per_second"])
        verdicts.append(
            Verdict("throughput (events/s)", f"{events_per_second:.1f}", f">= {floor:g}", events_per_second >= floor)
        )
    for key, limits in slo.get("endpoints", {}).items():
        seen = stats.get(key)
        for percentile in ("p95", "p99"):
            if f"{percentile}_ms" not in limits:
                continue
            limit = float(limits[f"{percentile}_ms"])
            actual = getattr(seen, percentile) if seen else None
            if actual is None:
                verdicts.append(Verdict(f"{key} {percentile}", "no requests", f"<= {limit:g} ms", None))
            else:
                verdicts.append(Verdict(f"{key} {percentile}", f"{actual:g} ms", f"<= {limit:g} ms", actual <= limit))
    return verdicts
