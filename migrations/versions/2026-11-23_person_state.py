"""person_state: a summary of each person's events (counts, first seen, last event, open gap
session) so an event that comes after all of its person's stored events is derived without
reading them again. Persons without a row take the full path, which writes the row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE person_state (
            site_id bigint NOT NULL,
            person_id text NOT NULL,
            last_event_at timestamptz,
            last_message_id text,
            first_seen_at timestamptz,
            orders integer NOT NULL DEFAULT 0,
            revenue double precision NOT NULL DEFAULT 0,
            leads integer NOT NULL DEFAULT 0,
            gap_session_key text,
            gap_last_at timestamptz,
            CONSTRAINT pk_person_state PRIMARY KEY (site_id, person_id)
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE person_state")
