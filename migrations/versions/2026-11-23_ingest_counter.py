"""Ingestion counters per site and hour (accepted, duplicates, rejected), for data-quality reports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE ingest_counter (
            site_id bigint NOT NULL,
            hour timestamptz NOT NULL,
            accepted bigint NOT NULL DEFAULT 0,
            duplicates bigint NOT NULL DEFAULT 0,
            rejected bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_ingest_counter PRIMARY KEY (site_id, hour)
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE ingest_counter")
