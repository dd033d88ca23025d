"""One command for a whole load test: server, site, Locust, SLOs, reconciliation, cleanup.

    .venv/bin/python -m load_tests.run --users 20 --spawn-rate 10 --duration 30s [--url URL] [--slo FILE]

By default it creates a fresh database on the local PostgreSQL, starts `racetrack serve` on a free
port of 127.0.0.1 with its own root token, creates a dedicated site, runs Locust headless (CSV and
HTML reports in the report folder), resends what Locust left in flight, checks the SLOs, reconciles
the acknowledged messages against the stored events and the KPIs, purges the site (DELETE
/v1/sites/{id}), stops the server and drops the database (--keep keeps site, server data and
database). With --url it uses that server instead: --admin-token is then required, and
--database-url enables the stored-events check. --soak 30m runs that long and fails on RSS or p99
growth. --chaos restart-db | kill-worker | slow-db injects a fault mid-run (load_tests/chaos.py): the
SLOs are then reported, not judged; the reconciliation, the recovery and the final acknowledgement
of every payload are. Exit status: 0 all good, 1 an SLO, the reconciliation, the soak or the chaos
check failed, 2 the run itself could not be done.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from load_tests import chaos as chaos_mod
from load_tests import reconcile, slo, soak
from load_tests.ledger import load_ledgers
from load_tests.server import (
    REPO,
    LocalServer,
    asyncpg_dsn,
    autovacuum_off,
    create_database,
    drop_database,
    start_server,
    stop_server,
)

HERE = Path(__file__).resolve().parent
DEFAULT_PG = "the embedded PostgreSQL of ./scripts/run (RACETRACK_DATA_DIR, default .racetrack/)"
LOCUST_GRACE_S = 180  # beyond the run time, before the Locust process is killed
KPI_MARGIN = timedelta(minutes=10)


class RunError(Exception):
    """The run could not be carried out (setup, server, Locust): exit status 2."""


def parse_timespan(text: str) -> int:
    """Locust-style durations: 90, 90s, 5m, 1h30m -> seconds."""
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h30m)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load_tests.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="concurrent Locust users (default 20)")
    parser.add_argument("--spawn-rate", type=float, default=10, help="users started per second (default 10)")
    parser.add_argument("--duration", type=parse_timespan, default=30, help="run time: 30s, 5m, 1h (default 30s)")
    parser.add_argument("--soak", type=parse_timespan, help="soak run of this length; fails on RSS or p99 growth")
    parser.add_argument("--url", help="an already running server (default: start one on 127.0.0.1)")
    parser.add_argument("--admin-token", default=os.environ.get("RACETRACK_ADMIN_TOKEN"), help="root token (--url)")
    parser.add_argument("--database-url", help="the server's database: used for the stored-events check")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LOAD_TEST_PG_URL") or os.environ.get("DATABASE_URL"),
        help="PostgreSQL server on which a fresh database is created when no --database-url (default:"
        f" LOAD_TEST_PG_URL, else DATABASE_URL, else {DEFAULT_PG})",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the local server (default 2)")
    parser.add_argument("--slo", type=Path, default=HERE / "slo.toml", help="SLO file (default load_tests/slo.toml)")
    parser.add_argument("--report-dir", type=Path, help="default load_tests/reports/<UTC time>")
    parser.add_argument("--think-scale", type=float, help="multiply browser think times (LOAD_TEST_THINK_SCALE)")
    parser.add_argument("--keep", action="store_true", help="keep the site, and the database the run created")
    parser.add_argument(
        "--chaos",
        choices=chaos_mod.KINDS,
        help="inject a fault mid-run: restart-db (the run's own embedded PostgreSQL is stopped and started),"
        " kill-worker (kill -9 one uvicorn worker), slow-db (a side connection locks message_key)",
    )
    parser.add_argument(
        "--chaos-at", type=float, help="seconds into the run when the fault starts (default: 30%% of the run, >= 3)"
    )
    parser.add_argument(
        "--chaos-seconds", type=float, default=5.0, help="how long the database stays down / locked (default 5)"
    )
    parser.add_argument(
        "--recover-within", type=float, default=30.0, help="chaos: seconds the service may take to recover (default 30)"
    )
    return parser


def chaos_problem(args: argparse.Namespace) -> str | None:
    """Why these options cannot run the chosen chaos, or None."""
    if args.chaos == "restart-db" and (args.url or args.database_url):
        return "--chaos restart-db starts its own embedded PostgreSQL: drop --url and --database-url"
    if args.chaos == "kill-worker" and args.url:
        return "--chaos kill-worker kills a worker of the server the runner starts: drop --url"
    if args.chaos == "kill-worker" and args.workers < 2:
        return "--chaos kill-worker needs --workers 2 or more (a single worker has no supervisor)"
    if args.chaos == "slow-db" and args.url and not args.database_url:
        return "--chaos slow-db locks a table of the server's database: give --database-url with --url"
    if args.chaos == "restart-db" and args.keep:
        return "--keep does not apply to --chaos restart-db: its own PostgreSQL is deleted after the run"
    if args.chaos and args.soak:
        return "--chaos and --soak do not mix"
    if args.chaos and args.chaos_at is not None and not 0 <= args.chaos_at < args.duration:
        return "--chaos-at must fall within --duration"
    return None


def chaos_at(args: argparse.Namespace, seconds: int) -> float:
    """When the fault starts: --chaos-at, else 30 % into the run, leaving time to recover under load."""
    if args.chaos_at is not None:
        return float(args.chaos_at)
    hold = 0.0 if args.chaos == "kill-worker" else args.chaos_seconds
    return max(3.0, min(seconds * 0.3, seconds - hold - 5.0))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "FAIL")


def create_site(base_url: str, admin_token: str) -> dict[str, Any]:
    answer = requests.post(
        f"{base_url}/v1/sites",
        json={
            "name": f"loadtest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
            "timezone": "UTC",
            "domains": ["shop.example.com"],
        },
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise RunError(f"POST /v1/sites answered {answer.status_code}: {answer.text[:300]}")
    site: dict[str, Any] = answer.json()
    return site


def purge_site(base_url: str, admin_token: str, site_id: int) -> str:
    answer = requests.delete(
        f"{base_url}/v1/sites/{site_id}", headers={"Authorization": f"Bearer {admin_token}"}, timeout=120
    )
    return f"DELETE /v1/sites/{site_id}: {answer.status_code}"


async def _events_left(database_url: str, site_id: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event WHERE site_id = $1", site_id))
    finally:
        await conn.close()


def run_locust(
    base_url: str,
    site: dict[str, Any],
    args: argparse.Namespace,
    seconds: int,
    report: Path,
    extra_env: dict[str, str] | None = None,
) -> int:
    env = {
        **os.environ,
        **(extra_env or {}),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "LOAD_TEST_WRITE_KEY": site["write_key"],
        "LOAD_TEST_READ_KEY": site["read_key"],
        "LOAD_TEST_RUN_TAG": f"{site['id']}x{datetime.now(UTC):%H%M%S}",
        "LOAD_TEST_LEDGER_DIR": str(report),
    }
    if args.think_scale is not None:
        env["LOAD_TEST_THINK_SCALE"] = str(args.think_scale)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        base_url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{seconds}s",
        "--csv",
        str(report / "locust"),
        "--csv-full-history",
        "--html",
        str(report / "locust.html"),
        "--only-summary",
        # judge the steady state: the ramp (every browser's first beacon while Locust spawns users on the
        # same cores, a fresh server's first connections) is left out of the statistics and the SLOs
        "--reset-stats",
    ]
    with (report / "locust.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait(seconds + LOCUST_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            limit = seconds + LOCUST_GRACE_S
            raise RunError(f"Locust did not finish within {limit}s; see {report / 'locust.log'}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seconds = args.soak or args.duration
    report = args.report_dir or HERE / "reports" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report.mkdir(parents=True, exist_ok=True)
    if args.url and not args.admin_token:
        print(
            "--url needs --admin-token (or RACETRACK_ADMIN_TOKEN) to create and purge the run's site", file=sys.stderr
        )
        return 2
    problem = chaos_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    server: LocalServer | None = None
    created_db: str | None = None
    site: dict[str, Any] | None = None
    probe_site: dict[str, Any] | None = None
    postgres: chaos_mod.EmbeddedPostgres | None = None
    chaos: chaos_mod.Chaos | None = None
    base_url = (args.url or "").rstrip("/")
    database_url = args.database_url
    admin_token = args.admin_token or ""
    failed = False
    try:
        if args.chaos == "restart-db":
            postgres = chaos_mod.EmbeddedPostgres()
            args.pg_url = postgres.url("postgres")
            print(f"chaos restart-db: the run's own embedded PostgreSQL in {postgres.pgdata}")
        if not args.url:
            if not database_url:
                if not args.pg_url:
                    args.pg_url = embedded_server()
                database_url, created_db = create_database(args.pg_url)
            print(f"server: racetrack serve --workers {args.workers} on database {_database_name(database_url)}")
            server = start_server(database_url, args.workers, report / "server.log")
            base_url, admin_token = server.url, server.admin_token
        if database_url and autovacuum_off(database_url):
            print(
                "note: autovacuum is off on this PostgreSQL: the run's tables are never ANALYZEd, so KPI query"
                " plans see no statistics and their latency grows with the data (see load_tests/README.md)"
            )
        site = create_site(base_url, admin_token)
        print(
            f"site {site['id']} created on {base_url}; Locust: {args.users} users for {seconds}s; reports in {report}"
        )
        locust_env: dict[str, str] = {}
        if args.chaos:
            probe_site = create_site(base_url, admin_token)
            chaos = _make_chaos(args, seconds, postgres, server, database_url)
            if args.chaos == "slow-db" and "LOAD_TEST_REQUEST_TIMEOUT" not in os.environ:
                locust_env["LOAD_TEST_REQUEST_TIMEOUT"] = f"{max(1.0, args.chaos_seconds / 2):g}"
            print(_chaos_plan(chaos, probe_site, locust_env))
        print(machine_load())
        sampler = None
        if server is not None:
            interval = max(5.0, seconds / 400) if args.soak else 2.0
            sampler = soak.RssSampler(server.workers, interval, report / "rss.csv")
            sampler.start()
        started = datetime.now(UTC)
        began = time.monotonic()
        try:
            if chaos is not None and probe_site is not None:
                chaos.start(began, base_url, probe_site["write_key"])
            locust_status = run_locust(base_url, site, args, seconds, report, locust_env)
            if chaos is not None:
                chaos.finish(timeout=chaos.at + chaos.hold + chaos.recover_within + 60)
        finally:
            if chaos is not None:
                chaos.abort()  # lifts a fault still on (Locust failed); a no-op once the timeline ended
            if sampler:
                sampler.stop()
        elapsed = time.monotonic() - began
        stats_csv = report / "locust_stats.csv"
        if not stats_csv.exists():
            raise RunError(f"Locust wrote no statistics (exit {locust_status}); see {report / 'locust.log'}")
        failed |= report_run(args, site, base_url, database_url, report, started, elapsed, sampler, chaos, probe_site)
    except (RunError, RuntimeError) as exc:  # RuntimeError: the local server did not start
        print(f"load test not run: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            if probe_site is not None and not args.keep:
                print(purge_site(base_url, admin_token, probe_site["id"]) + " (chaos probe site)")
        except (requests.RequestException, OSError) as exc:
            print(f"could not purge the probe site: {exc}", file=sys.stderr)
        try:
            _cleanup(args, server, site, base_url, admin_token, database_url, created_db)
        finally:
            if postgres is not None:
                postgres.cleanup()
                print(f"embedded PostgreSQL stopped and {postgres.folder} deleted")
    return 1 if failed else 0


def embedded_server() -> str:
    """The embedded PostgreSQL that `./scripts/run` uses (started if it is not running): its URL."""
    from app.store.database import start_embedded

    data_dir = Path(os.environ.get("RACETRACK_DATA_DIR") or REPO / ".racetrack")
    try:
        url = start_embedded(data_dir)
    except Exception as exc:  # initdb / pg_ctl failures come as several exception types
        raise RunError(f"could not start the embedded PostgreSQL in {data_dir}/pgdata: {exc}") from exc
    print(f"database server: the embedded PostgreSQL in {data_dir.resolve()}/pgdata, as ./scripts/run uses"
          " (--pg-url or LOAD_TEST_PG_URL for another server)")  # fmt: skip
    return url


def machine_load() -> str:
    """The cores and the load average before the run: latencies measured on a machine busier than its
    cores (other work, other test suites) read high, whatever the service does."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    note = " (busier than its cores: other work shares them, latencies will read high)" if load > cores else ""
    return f"machine: {cores} cores, load average {load:.1f} before the run{note}"


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _make_chaos(
    args: argparse.Namespace,
    seconds: int,
    postgres: chaos_mod.EmbeddedPostgres | None,
    server: LocalServer | None,
    database_url: str | None,
) -> chaos_mod.Chaos:
    at = chaos_at(args, seconds)
    if args.chaos == "restart-db":
        assert postgres is not None
        return chaos_mod.RestartDb(at, args.chaos_seconds, args.recover_within, postgres)
    if args.chaos == "kill-worker":
        assert server is not None
        return chaos_mod.KillWorker(at, args.recover_within, server, args.workers, database_url)
    assert database_url is not None
    return chaos_mod.SlowDb(at, args.chaos_seconds, args.recover_within, database_url)


def _chaos_plan(chaos: chaos_mod.Chaos, probe_site: dict[str, Any], locust_env: dict[str, str]) -> str:
    what = {
        "restart-db": f"PostgreSQL stopped at {chaos.at:g}s for {chaos.hold:g}s",
        "kill-worker": f"kill -9 of one uvicorn worker at {chaos.at:g}s",
        "slow-db": f"LOCK TABLE message_key IN EXCLUSIVE MODE at {chaos.at:g}s for {chaos.hold:g}s",
    }[chaos.kind]
    timeout = locust_env.get("LOAD_TEST_REQUEST_TIMEOUT")
    clients = f"; clients time out after {timeout}s (LOAD_TEST_REQUEST_TIMEOUT)" if timeout else ""
    return f"chaos {chaos.kind}: {what}; probe site {probe_site['id']}{clients}"


def report_run(
    args: argparse.Namespace,
    site: dict[str, Any],
    base_url: str,
    database_url: str | None,
    report: Path,
    started: datetime,
    elapsed: float,
    sampler: soak.RssSampler | None,
    chaos: chaos_mod.Chaos | None = None,
    probe_site: dict[str, Any] | None = None,
) -> bool:
    """Print the tables; True when anything failed."""
    ledger = load_ledgers(report)
    counters = ledger["counters"]
    acked_in_run = len(ledger["acked"])
    pending = len(ledger["pending"])
    drained = reconcile.drain(base_url, ledger)
    stats = slo.read_stats(report / "locust_stats.csv")

    print("\nLocust (whole run, ms)")
    print(
        _table(
            ["endpoint", "requests", "failures", "p50", "p95", "p99", "req/s"],
            [(s.key, s.requests, s.failures, s.p50, s.p95, s.p99, f"{s.rps:.1f}") for s in stats.values()],
        )
    )
    verdicts = slo.check(slo.load_slo(args.slo), stats, acked_in_run / elapsed if elapsed else 0.0)
    if chaos is not None:  # errors and stalls are the point of the run: reported, not judged
        print(f"\nSLOs ({args.slo}; under chaos: reported, not judged)")
        print(
            _table(
                ["objective", "actual", "limit", ""], [(v.what, v.actual, v.limit, _unjudged(v.ok)) for v in verdicts]
            )
        )
        verdicts = []
    else:
        print(f"\nSLOs ({args.slo})")
        print(
            _table(["objective", "actual", "limit", ""], [(v.what, v.actual, v.limit, _mark(v.ok)) for v in verdicts])
        )

    print(f"\nClient ledger: {counters.get('payloads', 0)} payloads, {counters.get('messages_sent', 0)} messages sent")
    print(
        _table(
            ["delivery", "count"],
            [
                ("messages acknowledged during the run", acked_in_run),
                ("payloads in flight at stop / given up, resent after", pending),
                ("  resent and acknowledged", drained["resent_acknowledged"]),
                ("  resent and still failing", drained["resent_failed"]),
                ("503 answers (retried after Retry-After)", counters.get("answers_503", 0)),
                ("other retryable answers / network errors", _other_retryable(counters)),
                ("  of which timeouts", counters.get("network_timeouts", 0)),
                ("retries", counters.get("retries", 0)),
                ("accepted / duplicates reported by the service", _accepted(counters)),
                ("refused payloads (4xx, or counts not adding up)", _refused(counters)),
            ],
        )
    )

    end = datetime.now(UTC)
    rows: list[reconcile.Row] = []
    counted = dict(ledger["acked"])
    if database_url:
        figures, unanswered = reconcile.event_rows(database_url, site["id"], ledger)
        rows += figures
        counted.update({mid: ledger["unresolved"][mid] for mid in unanswered})  # stored: the KPIs count them
    else:
        print("\nstored-events check SKIPPED: give --database-url to compare against the event table")
    expected = reconcile.expected_of(counted)
    rows += reconcile.kpi_rows(base_url, site["read_key"], started - KPI_MARGIN, end + KPI_MARGIN, expected)
    print(
        f"\nReconciliation (site {site['id']}, {len(ledger['acked'])} messages acknowledged, bots excluded from KPIs)"
    )
    print(
        _table(
            ["figure", "client", "service", ""],
            [(r.figure, r.client, r.service, _mark(r.ok)) for r in rows],
        )
    )
    failed = any(v.ok is False for v in verdicts) or any(r.ok is False for r in rows)
    if chaos is not None:
        failed |= report_chaos(chaos, report, database_url, probe_site, counters, drained, pending)

    if sampler is not None:
        peaks = {pid: max(series) for pid, series in sampler.by_pid().items()}
        print(
            "\nworker RSS peak: " + ", ".join(f"pid {pid} {rss / soak.MB:.0f} MB" for pid, rss in sorted(peaks.items()))
        )
    if args.soak:
        soak_verdicts = soak.p99_verdicts(report / "locust_stats_history.csv")
        if sampler is not None:
            soak_verdicts += soak.rss_verdicts(sampler)
        else:
            print("RSS growth check SKIPPED: the server was not started by this run (--url)")
        print("\nSoak (first-quarter median -> last-quarter median; growth fails)")
        print(
            _table(["check", "actual", "limit", ""], [(v.what, v.actual, v.limit, _mark(v.ok)) for v in soak_verdicts])
        )
        failed |= any(v.ok is False for v in soak_verdicts)
    print(f"\nreports: {report} (locust.html, locust_stats.csv, locust_stats_history.csv, locust.log)")
    print("RESULT:", "FAIL" if failed else "PASS")
    return failed


def report_chaos(
    chaos: chaos_mod.Chaos,
    report: Path,
    database_url: str | None,
    probe_site: dict[str, Any] | None,
    counters: dict[str, int],
    drained: dict[str, int],
    pending: int,
) -> bool:
    """The chaos table; True when a chaos check failed."""
    kinds = chaos_mod.failure_kinds(report / "locust_failures.csv")
    rows = [
        chaos_mod.Row("ingestion: 503 answers (Retry-After honoured)", counters.get("answers_503", 0)),
        chaos_mod.Row(
            "ingestion: other 5xx / 429 answers", _other_retryable(counters) - counters.get("network_errors", 0)
        ),
        chaos_mod.Row("ingestion: connection errors and timeouts", counters.get("network_errors", 0)),
        chaos_mod.Row("  of which timeouts", counters.get("network_timeouts", 0)),
        chaos_mod.Row("ingestion: retries (same payload resent)", counters.get("retries", 0)),
        chaos_mod.Row("ingestion: payloads given up after max attempts", counters.get("gave_up", 0)),
        chaos_mod.Row("ingestion: payloads in flight at stop / given up, resent after the run", pending),
        chaos_mod.Row(
            "Locust failures by kind, all endpoints",
            ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "none",
        ),
        chaos_mod.Row(
            "payloads never acknowledged, even by the final resend",
            drained["resent_failed"],
            "0",
            drained["resent_failed"] == 0,
        ),
        *chaos.verdict_rows(),
    ]
    if probe_site is not None:
        rows += chaos_mod.probe_rows(database_url, probe_site["id"], chaos.probe)
    print(f"\nChaos: {chaos.kind}")
    print(
        _table(
            ["what happened", "value", "limit", ""],
            [(r.figure, r.value, r.limit, _mark(r.ok) if r.ok is not None else "") for r in rows],
        )
    )
    if chaos.timeline:
        print("timeline (s into the run): " + "; ".join(f"{t:.1f} {what}" for t, what in chaos.timeline))
    odd = {k: v for k, v in kinds.items() if k not in ("503", "connection", "timeout")}
    if odd:
        print(
            "note: answers other than 503 + Retry-After or a lost connection under chaos ("
            + ", ".join(f"{k}: {v}" for k, v in sorted(odd.items()))
            + f"): the service should answer 503 while its database is unavailable; see {report / 'server.log'}"
            f" and {report / 'locust_failures.csv'}"
        )
    return any(r.ok is False for r in rows)


def _unjudged(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "missed")


def _other_retryable(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("answers_") and k != "answers_503") + counters.get(
        "network_errors", 0
    )


def _accepted(counters: dict[str, int]) -> str:
    return f"{counters.get('accepted_reported', 0)} / {counters.get('duplicates_reported', 0)}"


def _refused(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("refused_"))


def _cleanup(
    args: argparse.Namespace,
    server: LocalServer | None,
    site: dict[str, Any] | None,
    base_url: str,
    admin_token: str,
    database_url: str | None,
    created_db: str | None,
) -> None:
    if site is not None and not args.keep:
        try:
            print(purge_site(base_url, admin_token, site["id"]), end="")
            if database_url:
                print(f"; events left for site {site['id']}: {asyncio.run(_events_left(database_url, site['id']))}")
            else:
                print()
        except (requests.RequestException, OSError) as exc:
            print(f"could not purge site {site['id']}: {exc}", file=sys.stderr)
    elif site is not None:
        print(f"kept site {site['id']}: write key {site['write_key']}, read key {site['read_key']}")
    if server is not None:
        print(f"server stopped (exit {stop_server(server)})")
    if created_db and not args.keep:
        drop_database(args.pg_url, created_db)
        print(f"database {created_db} dropped")
    elif created_db:
        print(f"kept database {created_db}")


if __name__ == "__main__":
    sys.exit(main())
