"""Background jobs (reclassification) with progress, resumable after a restart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE job (
            site_id bigint NOT NULL,
            job_id bigserial NOT NULL,
            kind text NOT NULL,
            params jsonb NOT NULL,
            status text NOT NULL DEFAULT 'queued',
            done integer NOT NULL DEFAULT 0,
            total integer NOT NULL DEFAULT 0,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_job PRIMARY KEY (site_id, job_id)
        )"""
    )
    op.execute("CREATE INDEX ix_job_status ON job (status) WHERE status IN ('queued', 'running')")


def downgrade() -> None:
    op.execute("DROP TABLE job")
