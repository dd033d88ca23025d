"""Rollup quantities as arrays: a row's counters, person sets and removed persons become three array
columns in the order of the KPI registry's layout, and `rollup_layout` records, per site, which
layout its rows hold. A counter or person set added to the registry then needs no migration: the
deriver sees that the recorded layout is not the registry's and rebuilds the site's rollups from
the events (reads come from the events meanwhile).

The existing columns are copied into the arrays, in place (the data is kept). The layout recorded
for them is the registry's as of this revision (written out below, frozen); their goal rows (the
new `goal` dimension) do not exist yet, so the `goal` family is recorded incomplete: the first
deriver to run rebuilds the site's rollups, goals included.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import hashlib

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COUNTERS = ("new_visitors", "pageviews", "act_events", "leads", "orders", "revenue", "new_customers",
            "offline_orders", "offline_revenue", "engage_events", "repeat_orders", "nps_responses",
            "nps_promoters", "nps_detractors", "sessions", "bounces", "session_seconds")  # fmt: skip
INTEGER_COUNTERS = frozenset(COUNTERS) - {"revenue", "offline_revenue", "session_seconds"}
PERSON_SETS = ("visitors", "lead_persons", "order_persons", "repeat_customers", "act_persons", "convert_persons",
               "engage_persons")  # fmt: skip
# What those columns hold, as app.domain.kpis.registry.describe() writes it (its fingerprint is the
# registry's when nothing changed since)
QUANTITIES = (
    "counter new_visitors: events where is_first_event is",
    "counter pageviews: events where type in ('page', 'screen')",
    "counter act_events: events where stage = 'act'",
    "counter leads: events where is_lead is",
    "counter orders: events where is_order is",
    "counter revenue: cents where is_order is",
    "counter new_customers: events where is_first_order is",
    "counter offline_orders: events where is_order is and channel = 'Offline'",
    "counter offline_revenue: cents where is_order is and channel = 'Offline'",
    "counter engage_events: events where stage = 'engage'",
    "counter repeat_orders: events where is_repeat_order is",
    "counter nps_responses: events where goal = 'nps' and nps_score present",
    "counter nps_promoters: events where goal = 'nps' and nps_score >= 9",
    "counter nps_detractors: events where goal = 'nps' and nps_score <= 6",
    "counter sessions: sessions where every",
    "counter bounces: sessions where is_bounce is",
    "counter session_seconds: seconds where every",
    "set visitors: persons where every",
    "set lead_persons: persons where is_lead is",
    "set order_persons: persons where is_order is",
    "set repeat_customers: persons where is_repeat_order is",
    "set act_persons: persons where stage = 'act'",
    "set convert_persons: persons where stage = 'convert'",
    "set engage_persons: persons where stage = 'engage'",
)
FINGERPRINT = hashlib.sha256("\n".join(QUANTITIES).encode()).hexdigest()[:16]


def _array(names: tuple[str, ...], suffix: str = "") -> str:
    return "ARRAY[" + ", ".join(f"{n}{suffix}" for n in names) + "]"


def _quoted(texts: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + t.replace("'", "''") + "'" for t in texts) + "]::text[]"


def upgrade() -> None:
    op.execute(
        """CREATE TABLE rollup_layout (
            site_id bigint NOT NULL,
            family text NOT NULL,
            fingerprint text NOT NULL,
            quantities text[] NOT NULL,
            complete boolean NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_rollup_layout PRIMARY KEY (site_id, family)
        )"""
    )
    op.execute("ALTER TABLE rollup ADD COLUMN counters double precision[], ADD COLUMN sets bytea[], "
               "ADD COLUMN removed bytea[]")  # fmt: skip
    any_removed = " OR ".join(f"{n}_removed IS NOT NULL" for n in PERSON_SETS)
    op.execute(
        f"""UPDATE rollup SET counters = {_array(COUNTERS)}::float8[], sets = {_array(PERSON_SETS)},
                              removed = CASE WHEN {any_removed} THEN {_array(PERSON_SETS, "_removed")} END"""
    )
    op.execute("ALTER TABLE rollup ALTER COLUMN counters SET NOT NULL, ALTER COLUMN sets SET NOT NULL")
    dropped = [*COUNTERS, *PERSON_SETS, *(f"{n}_removed" for n in PERSON_SETS)]
    op.execute("ALTER TABLE rollup " + ", ".join(f"DROP COLUMN {c}" for c in dropped))
    op.execute(
        f"""INSERT INTO rollup_layout (site_id, family, fingerprint, quantities, complete)
            SELECT s.site_id, f.family, f.fingerprint, f.quantities, f.complete
            FROM (SELECT DISTINCT site_id FROM rollup) s,
                 (VALUES ('kpi', '{FINGERPRINT}', {_quoted(QUANTITIES)}, true),
                         ('goal', '', '{{}}'::text[], false)) AS f(family, fingerprint, quantities, complete)"""
    )


def downgrade() -> None:
    types = {n: "integer" if n in INTEGER_COUNTERS else "double precision" for n in COUNTERS}
    added = [f"ADD COLUMN {n} {types[n]}" for n in COUNTERS]
    added += [f"ADD COLUMN {n} bytea" for n in PERSON_SETS] + [f"ADD COLUMN {n}_removed bytea" for n in PERSON_SETS]
    op.execute("DELETE FROM rollup WHERE dim = 'goal'")
    op.execute("ALTER TABLE rollup " + ", ".join(added))
    assigned = [f"{n} = counters[{i + 1}]" for i, n in enumerate(COUNTERS)]
    assigned += [f"{n} = sets[{i + 1}], {n}_removed = removed[{i + 1}]" for i, n in enumerate(PERSON_SETS)]
    op.execute("UPDATE rollup SET " + ", ".join(assigned))
    op.execute("ALTER TABLE rollup " + ", ".join(f"ALTER COLUMN {n} SET NOT NULL" for n in COUNTERS))
    op.execute("ALTER TABLE rollup DROP COLUMN counters, DROP COLUMN sets, DROP COLUMN removed")
    op.execute("DROP TABLE rollup_layout")
