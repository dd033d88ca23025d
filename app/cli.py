"""racetrack serve | migrate | create-site | demo | rules validate | rollups rebuild"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from app.config import Settings


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from app.store.database import start_embedded

    url = start_embedded(settings.data_dir)
    print(f"racetrack: embedded PostgreSQL in {settings.data_dir.resolve()}/pgdata", file=sys.stderr)
    return url


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.api.observe import uvicorn_log_config
    from app.store.database import migrate

    url = _database_url(settings)
    migrate(url)
    os.environ["DATABASE_URL"] = url  # worker processes read their settings from the environment
    os.environ["RACETRACK_WORKERS"] = str(args.workers)  # without Redis, each worker limits its share
    if (args.workers > 1 or settings.derive_processes) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _fresh_metrics_dir(settings)
    if settings.derive_processes:
        _start_derivers(settings.derive_processes)
        os.environ["RACETRACK_DERIVER"] = "false"  # the workers serve; the deriver processes derive
    # uvicorn drains, then re-raises SIGTERM to the previous handler: exit cleanly so atexit hooks
    # (stopping the derivers and an embedded PostgreSQL) run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    uvicorn.run(
        "app.main:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,
        timeout_graceful_shutdown=20,
        timeout_keep_alive=75,  # beyond browsers' and load balancers' idle timeouts: a reused beacon
        # connection must not be closed under it
    )
    return 0


DERIVER_NICENESS = 10  # ingestion first: derivation takes the CPU the requests leave


def _start_derivers(count: int) -> None:
    """`racetrack derive` processes beside the HTTP workers, at a lower CPU priority, so that a
    burst of ingestion is acknowledged at full speed and absorbed by the inbox; stopped (SIGTERM:
    the batch under way finishes) when serve exits, and by the kernel if serve dies."""
    import atexit
    import subprocess

    def lower_and_tie_to_parent() -> None:
        os.nice(DERIVER_NICENESS)
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    command = [sys.executable, "-m", "app.cli", "derive", "--no-migrate"]
    derivers = [subprocess.Popen(command, preexec_fn=lower_and_tie_to_parent) for _ in range(count)]

    def stop() -> None:
        for process in derivers:
            process.terminate()
        for process in derivers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    atexit.register(stop)


def _fresh_metrics_dir(settings: Settings) -> str:
    import atexit
    import shutil

    folder = settings.data_dir.resolve() / f"metrics-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(folder)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.store.database import migrate

    migrate(_database_url(settings))
    print("racetrack: migrations applied")
    return 0


async def _create_site(url: str, name: str, timezone: str, domains: list[str]) -> dict[str, Any]:
    import asyncpg

    from app.store import sites
    from app.store.database import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        site, keys = await sites.create_site(conn, name, timezone, domains)
    finally:
        await conn.close()
    return {
        "id": site.site_id,
        "name": site.name,
        "timezone": site.timezone,
        "domains": list(site.domains),
        "write_key": keys.write_key,
        "read_key": keys.read_key,
        "admin_key": keys.admin_key,
    }


def cmd_create_site(args: argparse.Namespace, settings: Settings) -> int:
    from app.store.database import migrate

    url = _database_url(settings)
    migrate(url)
    created = asyncio.run(_create_site(url, args.name, args.timezone, args.domain or []))
    print(orjson.dumps(created, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import EVENTS_PER_PERSON, load_demo
    from app.runtime import tune_gc
    from app.store.database import migrate

    url = _database_url(settings)
    migrate(url)
    tune_gc(settings.gc_threshold)

    persons = max(1, int(args.events / EVENTS_PER_PERSON)) if args.events else args.persons
    summary = asyncio.run(load_demo(url, persons=persons, days=args.days, seed=args.seed))
    host, port = os.environ.get("RACETRACK_HOST", "127.0.0.1"), os.environ.get("RACETRACK_PORT", "8000")
    summary["dashboard"] = f"http://{host}:{port}/ (sign in with the read_key, or the admin_key to edit targets)"
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


async def _rebuild_rollups(url: str, site_id: int | None, start: Any, end: Any) -> dict[str, Any]:
    """Recompute every slot of [start, end) (default: all time) of the site (default: every site)
    from the events."""
    import time
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from app import rollups
    from app.store.database import create_pool

    started = time.perf_counter()
    pool = await create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT site_id, timezone FROM site WHERE $1::bigint IS NULL OR site_id = $1", site_id
            )
        slots = 0
        for row in rows:
            slots += await rollups.rebuild_range(
                pool, row["site_id"], ZoneInfo(row["timezone"] or "UTC"),
                start or datetime(1970, 1, 1, tzinfo=UTC), end or datetime(9999, 1, 1, tzinfo=UTC),
            )  # fmt: skip
    finally:
        await pool.close()
    return {"sites": len(rows), "slots": slots, "seconds": round(time.perf_counter() - started, 1)}


def cmd_derive(args: argparse.Namespace, settings: Settings) -> int:
    """A deriver process of its own (any number, on any host): drain the inbox, then keep at it."""
    from app.store.database import migrate

    url = _database_url(settings)
    if not args.no_migrate:
        migrate(url)
    print(orjson.dumps(asyncio.run(_derive(url, settings, args.once))).decode())
    return 0


async def _derive(url: str, settings: Settings, once: bool) -> dict[str, Any]:
    import signal

    from app.api.observe import configure_logging
    from app.pipeline.derive import Deriver, drain
    from app.pipeline.rulesets import RulesetCache
    from app.runtime import tune_gc
    from app.store.database import create_pool

    configure_logging(settings.log_level)
    pool = await create_pool(url, 1, 2)
    tune_gc(settings.gc_threshold)
    try:
        if once:
            return {"derived": await drain(pool, batch=settings.derive_batch)}
        deriver = Deriver(pool, RulesetCache(), settings.derive_batch,
                          settings.derive_idle_seconds, settings.derive_gather_seconds)  # fmt: skip
        deriver.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await deriver.close()  # the batch under way commits or rolls back whole
        return {"stopped": True}
    finally:
        await pool.close()


def cmd_rollups_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from app.domain.kpis import parse_bound
    from app.domain.rollup import QUARTER_SPAN, quarter_of
    from app.store.database import migrate

    try:
        start = quarter_of(parse_bound(args.start, ZoneInfo("UTC"))) if args.start else None
        end = parse_bound(args.end, ZoneInfo("UTC")) if args.end else None
    except ValueError as exc:
        print(f"racetrack: --from/--to must be YYYY-MM-DD or ISO timestamps ({exc})", file=sys.stderr)
        return 2
    if end is not None and quarter_of(end) != end:
        end = quarter_of(end) + QUARTER_SPAN
    url = _database_url(settings)
    migrate(url)
    done = asyncio.run(_rebuild_rollups(url, args.site, start and start.astimezone(UTC), end))
    print(orjson.dumps(done, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_rules_validate(args: argparse.Namespace, settings: Settings) -> int:
    from app.domain.rule_limits import DocumentError, load_yaml
    from app.domain.rules import RuleError, compile_ruleset

    try:
        document = load_yaml(Path(args.file).read_text())
        compiled = compile_ruleset(document)
    except (OSError, yaml.YAMLError, DocumentError) as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return 2
    except RuleError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem['message']}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok, {len(compiled.rules)} rules: {', '.join(r.goal for r in compiled.rules)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="racetrack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve HTTP")
    serve.add_argument("--host", default=os.environ.get("RACETRACK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("RACETRACK_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("RACETRACK_WORKERS", "1")))
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)
    create = sub.add_parser("create-site", help="create a site and print its keys")
    create.add_argument("name")
    create.add_argument("--timezone", default="UTC")
    create.add_argument("--domain", action="append", help="the site's own host (repeatable)")
    create.set_defaults(func=cmd_create_site)
    demo = sub.add_parser("demo", help="create a demo site and load realistic events through the write path")
    demo.add_argument("--persons", type=int, default=3000, help="visitors (default 3000, about 13,500 events)")
    demo.add_argument("--events", type=int, default=0, help="about this many events (overrides --persons)")
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)
    derive = sub.add_parser("derive", help="run a deriver (classify acknowledged events, keep rollups)")
    derive.add_argument("--once", action="store_true", help="derive what waits now, then exit")
    derive.add_argument("--no-migrate", action="store_true", help="skip the migration check (serve's derivers)")
    derive.set_defaults(func=cmd_derive)
    rules = sub.add_parser("rules", help="goal rules").add_subparsers(dest="rules_command", required=True)
    validate = rules.add_parser("validate", help="check a YAML ruleset")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_rules_validate)
    rollups = sub.add_parser("rollups", help="KPI rollups").add_subparsers(dest="rollups_command", required=True)
    rebuild = rollups.add_parser("rebuild", help="recompute rollups from the stored events")
    rebuild.add_argument("--site", type=int, help="one site id (default: every site)")
    rebuild.add_argument("--from", dest="start", help="YYYY-MM-DD or ISO timestamp, UTC (default: the beginning)")
    rebuild.add_argument("--to", dest="end", help="exclusive (default: the end)")
    rebuild.set_defaults(func=cmd_rollups_rebuild)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
