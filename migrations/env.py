"""Alembic runs on the async engine; the URL comes from the -x url=... argument or DATABASE_URL.

target_metadata is the schema in code (app/store/tables.py): `alembic check` compares it with the
database, types and server defaults included, and fails on drift (tests/integration/test_schema.py
runs it in CI). The inbox's partitions are left out: the service makes and drops them at run time,
and they are not described in the metadata (their parent `inbox` is).

Autogenerate does not compare partial-index predicates, check constraints, primary key names,
table options (the inbox's PARTITION BY), sequences or views: test_schema.py compares the first
five between the catalogs of the migrated schema and of `tables.metadata.create_all`; the bi_
views (migration 0004) are not described in tables.py."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.store import tables
from app.store.database import sqlalchemy_url

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("url_override")
    url = url or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set DATABASE_URL")
    return sqlalchemy_url(url)


PARTITIONS = """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"""


def _run(connection: Connection) -> None:
    partitions = set(connection.execute(text(PARTITIONS)).scalars())
    connection.commit()  # end the read's implicit transaction: the migrations manage their own

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return not (type_ == "table" and name in partitions)

    context.configure(
        connection=connection, target_metadata=tables.metadata, transaction_per_migration=True,
        compare_type=True, compare_server_default=True, include_name=include_name,
    )  # fmt: skip
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=tables.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
