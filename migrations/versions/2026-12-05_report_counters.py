"""Report counters: `quality_counter` (bots, late events and other-currency orders per 15-minute
receipt slot), `customer_orders` (each customer's orders per 15-minute slot of event time) and
`cohort_month` (per cohort and month in the site's zone), kept by the deriver so that /v1/quality
and /v1/cohorts read counters, not the period's events.

Existing sites' counters are built from their events by the deriver, in the background: their two
families ('quality', 'cohort') are recorded incomplete in rollup_layout (as 0012 did for the goal
rows), which makes the deriver's layout conversion build them (app.rollups.convert); reads answer
from the events meanwhile.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FAMILIES = ("quality", "cohort")


def upgrade() -> None:
    op.execute(
        """CREATE TABLE quality_counter (
            site_id bigint NOT NULL,
            slot timestamptz NOT NULL,
            currency text NOT NULL,
            bots bigint NOT NULL DEFAULT 0,
            late bigint NOT NULL DEFAULT 0,
            unvalued_orders bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_quality_counter PRIMARY KEY (site_id, slot, currency)
        )"""
    )
    op.execute(
        """CREATE TABLE customer_orders (
            site_id bigint NOT NULL,
            person_id text NOT NULL,
            slot timestamptz NOT NULL,
            orders integer NOT NULL,
            first_orders integer NOT NULL,
            repeat_orders integer NOT NULL,
            cents double precision NOT NULL,
            CONSTRAINT pk_customer_orders PRIMARY KEY (site_id, person_id, slot)
        )"""
    )
    op.execute("CREATE INDEX ix_customer_orders_site_slot ON customer_orders (site_id, slot)")
    op.execute(
        """CREATE TABLE cohort_month (
            site_id bigint NOT NULL,
            cohort date NOT NULL,
            month date NOT NULL,
            active bigint NOT NULL,
            repeat_customers bigint NOT NULL,
            orders bigint NOT NULL,
            cents double precision NOT NULL,
            CONSTRAINT pk_cohort_month PRIMARY KEY (site_id, cohort, month)
        )"""
    )
    # one index probe per site: the sites with events get their counters built
    op.execute(
        """INSERT INTO rollup_layout (site_id, family, fingerprint, quantities, complete)
           SELECT s.site_id, f.family, '', '{}'::text[], false
           FROM site s, unnest(ARRAY['quality', 'cohort']) AS f(family)
           WHERE EXISTS (SELECT 1 FROM event e WHERE e.site_id = s.site_id)
           ON CONFLICT (site_id, family) DO NOTHING"""
    )


def downgrade() -> None:
    op.execute("DELETE FROM rollup_layout WHERE family IN ('quality', 'cohort')")
    op.execute("DROP TABLE cohort_month")
    op.execute("DROP TABLE customer_orders")
    op.execute("DROP TABLE quality_counter")
