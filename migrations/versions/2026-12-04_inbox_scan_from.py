"""pipeline_watermark.scan_from: a lower bound of a site's inbox ids, so that inbox lookups start
past the rows derivation deleted (dead until vacuum, which a long transaction anywhere in the
cluster holds back).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_watermark ADD COLUMN scan_from bigint NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_watermark DROP COLUMN scan_from")
