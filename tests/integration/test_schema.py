"""The schema stays Citus-ready (DESIGN §1): every primary key and unique constraint of a tenant
table includes site_id, no foreign key crosses sites, and a site purge knows every tenant table."""

from __future__ import annotations

import asyncpg

from app.store.sites import TENANT_TABLES


async def test_every_tenant_key_includes_site_id(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        """SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype,
                  array_agg(a.attname::text) AS columns
           FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
           WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f')
           GROUP BY 1, 2, 3"""
    )
    offenders = [
        (r["tbl"], r["conname"])
        for r in rows
        if r["tbl"] not in ("site", "alembic_version") and (r["contype"] == "f" or "site_id" not in r["columns"])
    ]
    assert offenders == []


async def test_site_purge_covers_every_table_with_site_data(db: asyncpg.Connection) -> None:
    tables = {
        r["table_name"]
        for r in await db.fetch(
            """SELECT c.table_name FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               WHERE c.table_schema = 'public' AND c.column_name = 'site_id'
                 AND t.table_type = 'BASE TABLE'  -- views (bi_*) hold no data of their own
                 AND NOT EXISTS (SELECT 1 FROM pg_inherits i  -- partitions are purged with their table
                                 WHERE i.inhrelid = (quote_ident(c.table_name))::regclass)"""
        )
    }
    assert tables - {"site"} == set(TENANT_TABLES)
