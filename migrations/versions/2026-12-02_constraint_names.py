"""Constraint names by the convention of app/store/tables.py: the two that PostgreSQL named itself
(site's primary key, site_key's kind check) are renamed, so every primary key is pk_<table> and
every check ck_<table>_<name>. Renaming keeps the data and the index; nothing waits on it beyond
a moment's lock.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RENAMES = [("site", "site_pkey", "pk_site"), ("site_key", "site_key_kind_check", "ck_site_key_kind")]


def upgrade() -> None:
    for table, old, new in RENAMES:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def downgrade() -> None:
    for table, old, new in RENAMES:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {new} TO {old}")
