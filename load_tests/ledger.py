"""The client side of the reconciliation: which messages the service acknowledged, counted by messageId.

Every ingestion request is registered as *pending* before it is sent and settled when a final
answer arrives: acknowledged (200 and accepted + duplicates == sent), refused (a 4xx, or a 200 whose
counts don't add up), or still pending (Locust stopped the user mid-request or mid-retry, or the
SDK gave up). Pending payloads are written out with their bytes, so the runner can resend them
after the run, as a real SDK flushes its queue on shutdown, and the ledger can balance exactly.

Locust runs users as gevent greenlets in one thread: the updates below never yield, so need no lock.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_tests.payloads import Fact


def answer_problem(status: int, answer: Any, sent: int) -> str | None:
    """None when the answer acknowledges all `sent` messages (DESIGN §2), else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}"
    if not isinstance(answer, dict) or answer.get("success") is not True:
        return "200 without success: true"
    accepted, duplicates, rejected = answer.get("accepted"), answer.get("duplicates"), answer.get("rejected")
    if not isinstance(accepted, int) or not isinstance(duplicates, int):
        return "200 without integer accepted/duplicates"
    if accepted + duplicates != sent:
        return f"accepted {accepted} + duplicates {duplicates} != {sent} sent"
    if rejected:
        return f"{len(rejected)} rejected: {rejected[0].get('code')}"
    return None


@dataclass(slots=True)
class Ledger:
    keep_facts: bool
    acked: dict[str, list[Any]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    _next_token: int = 0

    def begin(self, path: str, headers: dict[str, str], body: bytes, facts: dict[str, Fact]) -> int:
        self._next_token += 1
        self.counters["payloads"] += 1
        self.counters["messages_sent"] += len(facts)
        if self.keep_facts:
            self.pending[self._next_token] = {
                "path": path,
                "headers": headers,
                "body": base64.b64encode(body).decode(),
                "facts": {mid: fact.to_list() for mid, fact in facts.items()},
            }
        return self._next_token

    def acknowledge(self, token: int, facts: dict[str, Fact], accepted: int, duplicates: int) -> None:
        self.pending.pop(token, None)
        self.counters["accepted_reported"] += accepted
        self.counters["duplicates_reported"] += duplicates
        if self.keep_facts:
            for mid, fact in facts.items():
                self.acked[mid] = fact.to_list()

    def refuse(self, token: int, facts: dict[str, Fact], reason: str) -> None:
        self.pending.pop(token, None)
        self.counters[f"refused_{reason}"] += 1
        if self.keep_facts:
            self.refused.extend(facts)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def dump(self, folder: str) -> Path:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target = Path(folder) / f"ledger-{os.getpid()}.json"
        document = {
            "acked": self.acked,
            "refused": self.refused,
            "pending": list(self.pending.values()),
            "counters": dict(self.counters),
        }
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(target)
        return target


def dump_stats(stats: Any, folder: str) -> None:
    """Locust's final per-endpoint statistics (a RequestStats), exactly as at the end of the run."""
    rows = []
    for entry in [*stats.entries.values(), stats.total]:
        answered = entry.num_requests > 0
        rows.append(
            {
                "method": entry.method or "",
                "name": entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                **{
                    f"p{round(q * 100)}": entry.get_response_time_percentile(q) if answered else None
                    for q in (0.5, 0.95, 0.99)
                },
                "rps": entry.total_rps,
            }
        )
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"stats-{os.getpid()}.json").write_text(json.dumps(rows))


def load_ledgers(folder: Path) -> dict[str, Any]:
    """Merge the ledgers of every Locust process that wrote into folder."""
    merged: dict[str, Any] = {"acked": {}, "refused": [], "pending": [], "unresolved": {}, "counters": Counter()}
    for path in sorted(folder.glob("ledger-*.json")):
        document = json.loads(path.read_text())
        merged["acked"].update(document["acked"])
        merged["refused"].extend(document["refused"])
        merged["pending"].extend(document["pending"])
        merged["counters"].update(document["counters"])
    return merged
