"""A site's currency (optional, ISO 4217): orders sent in another currency are stored and counted as
orders, but their value is not added to revenue (no conversion); /v1/quality counts them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE site ADD COLUMN currency text")


def downgrade() -> None:
    op.execute("ALTER TABLE site DROP COLUMN currency")
