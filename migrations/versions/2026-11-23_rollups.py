"""Rollups: KPI counters and person bitmaps per 15-minute slot, UTC hour and site-local day, for every
breakdown dimension; a dirty-slot log that triggers on event and session fill in the same
transaction as the write (so no write path can forget it); dense per-site person numbers for the
bitmaps.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every IANA offset in use is a multiple of 15 minutes, so a local day, week or month is a whole
# number of slots in any time zone.
SLOT = "date_bin('15 minutes', {col}, timestamptz '2000-01-01 00:00:00+00')"

UPGRADE = [
    """CREATE TABLE person_number (
        site_id bigint NOT NULL,
        person_id text NOT NULL,
        number integer NOT NULL,
        CONSTRAINT pk_person_number PRIMARY KEY (site_id, person_id),
        CONSTRAINT uq_person_number_number UNIQUE (site_id, number)
    )""",
    # An append-only log (no unique key): concurrent writers never wait on each other here.
    """CREATE TABLE rollup_dirty (
        site_id bigint NOT NULL,
        dirty_id bigserial NOT NULL,
        slot timestamptz NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_rollup_dirty PRIMARY KEY (site_id, dirty_id)
    )""",
    "CREATE INDEX ix_rollup_dirty_site_slot ON rollup_dirty (site_id, slot)",
    """CREATE TABLE rollup (
        site_id bigint NOT NULL,
        dim text NOT NULL,
        level char(1) NOT NULL,
        slot timestamptz NOT NULL,
        grp text NOT NULL,
        new_visitors integer NOT NULL,
        pageviews integer NOT NULL,
        act_events integer NOT NULL,
        leads integer NOT NULL,
        orders integer NOT NULL,
        revenue double precision NOT NULL,
        new_customers integer NOT NULL,
        offline_orders integer NOT NULL,
        offline_revenue double precision NOT NULL,
        engage_events integer NOT NULL,
        repeat_orders integer NOT NULL,
        nps_responses integer NOT NULL,
        nps_promoters integer NOT NULL,
        nps_detractors integer NOT NULL,
        sessions integer NOT NULL,
        bounces integer NOT NULL,
        session_seconds double precision NOT NULL,
        visitors bytea,
        lead_persons bytea,
        order_persons bytea,
        repeat_customers bytea,
        act_persons bytea,
        convert_persons bytea,
        engage_persons bytea,
        CONSTRAINT pk_rollup PRIMARY KEY (site_id, dim, level, slot, grp)
    )""",
    f"""CREATE FUNCTION rollup_mark_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO rollup_dirty (site_id, slot)
      SELECT DISTINCT site_id, {SLOT.format(col="event_at")} FROM changed_rows;
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION rollup_mark_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- a session's values group all of its events: every slot it spans
      INSERT INTO rollup_dirty (site_id, slot)
      SELECT DISTINCT r.site_id, s
      FROM changed_rows r,
           generate_series({SLOT.format(col="r.started_at")}, r.ended_at, interval '15 minutes') AS s;
      RETURN NULL;
    END $$""",
]

TRIGGERS = [
    ("event", "rollup_mark_events"),
    ("session", "rollup_mark_sessions"),
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    for table, function in TRIGGERS:
        # a trigger with transition tables fires for one kind of statement only
        for action, tables in (
            ("INSERT", ["NEW TABLE AS changed_rows"]),
            ("DELETE", ["OLD TABLE AS changed_rows"]),
            ("UPDATE", ["OLD TABLE AS changed_rows"]),
            ("UPDATE", ["NEW TABLE AS changed_rows"]),
        ):
            suffix = f"{action.lower()}_{'old' if tables[0].startswith('OLD') else 'new'}"
            op.execute(
                f"CREATE TRIGGER {table}_rollup_{suffix} AFTER {action} ON {table} "
                f"REFERENCING {tables[0]} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
    # existing data: every slot that holds an event or a session is dirty once
    op.execute(
        f"INSERT INTO rollup_dirty (site_id, slot) SELECT DISTINCT site_id, {SLOT.format(col='event_at')} FROM event"
    )


def downgrade() -> None:
    for table, _ in TRIGGERS:
        for suffix in ("insert_new", "delete_old", "update_old", "update_new"):
            op.execute(f"DROP TRIGGER {table}_rollup_{suffix} ON {table}")
    for statement in (
        "DROP FUNCTION rollup_mark_sessions()",
        "DROP FUNCTION rollup_mark_events()",
        "DROP TABLE rollup",
        "DROP TABLE rollup_dirty",
        "DROP TABLE person_number",
    ):
        op.execute(statement)
