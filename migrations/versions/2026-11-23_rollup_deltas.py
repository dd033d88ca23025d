"""Rollup deltas: appends are added to the rollups instead of recomputing their slots.

A new event or session, or a session that only grew (same start, same channel and campaign and
device), is logged as a delta the refresher adds to the slot, hour and day rows: the cost of a
refresh follows the new events, not the events already in the current slot. Everything else (an
event whose facts changed, a relink, a session that moved or changed its group, a delete) still
marks its slots for a recomputation from the events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SLOT = "date_bin('15 minutes', {col}, timestamptz '2000-01-01 00:00:00+00')"
GROUPS = ("channel", "peso", "device", "campaign_source", "campaign_medium", "campaign_name")
SAME_SESSION = " AND ".join(
    ["o.started_at = n.started_at", *(f"o.{c} IS NOT DISTINCT FROM n.{c}" for c in GROUPS)]
)
SECONDS = "extract(epoch FROM {t}.ended_at - {t}.started_at)"

UPGRADE = [
    """CREATE TABLE rollup_new_events (
        site_id bigint NOT NULL,
        delta_id bigserial NOT NULL,
        event_ids bigint[] NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_rollup_new_events PRIMARY KEY (site_id, delta_id)
    )""",
    f"""CREATE TABLE rollup_session_delta (
        site_id bigint NOT NULL,
        delta_id bigserial NOT NULL,
        slot timestamptz NOT NULL,
        {", ".join(f"{c} text" for c in GROUPS)},
        sessions integer NOT NULL,
        bounces integer NOT NULL,
        session_seconds double precision NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_rollup_session_delta PRIMARY KEY (site_id, delta_id)
    )""",
    """CREATE FUNCTION rollup_log_new_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO rollup_new_events (site_id, event_ids)
      SELECT site_id, array_agg(event_id) FROM changed_rows WHERE NOT is_bot GROUP BY site_id;
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION rollup_log_new_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO rollup_session_delta (site_id, slot, {", ".join(GROUPS)}, sessions, bounces, session_seconds)
      SELECT n.site_id, {SLOT.format(col="n.started_at")}, {", ".join(f"n.{c}" for c in GROUPS)},
             count(*), count(*) FILTER (WHERE n.is_bounce), sum({SECONDS.format(t="n")})
      FROM changed_rows n GROUP BY 1, 2, {", ".join(str(i + 3) for i in range(len(GROUPS)))};
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION rollup_log_changed_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- grown in place: the difference
      INSERT INTO rollup_session_delta (site_id, slot, {", ".join(GROUPS)}, sessions, bounces, session_seconds)
      SELECT n.site_id, {SLOT.format(col="n.started_at")}, {", ".join(f"n.{c}" for c in GROUPS)},
             0, sum(n.is_bounce::int - o.is_bounce::int), sum({SECONDS.format(t="n")} - {SECONDS.format(t="o")})
      FROM old_rows o JOIN new_rows n ON n.site_id = o.site_id AND n.session_key = o.session_key
      WHERE {SAME_SESSION}
      GROUP BY 1, 2, {", ".join(str(i + 3) for i in range(len(GROUPS)))};
      -- moved or regrouped: every slot of the old and the new span is recomputed
      INSERT INTO rollup_dirty (site_id, slot)
      SELECT DISTINCT r.site_id, s
      FROM (SELECT o.site_id, o.started_at, o.ended_at FROM old_rows o JOIN new_rows n
              ON n.site_id = o.site_id AND n.session_key = o.session_key WHERE NOT ({SAME_SESSION})
            UNION ALL
            SELECT n.site_id, n.started_at, n.ended_at FROM old_rows o JOIN new_rows n
              ON n.site_id = o.site_id AND n.session_key = o.session_key WHERE NOT ({SAME_SESSION})) r,
           generate_series({SLOT.format(col="r.started_at")}, r.ended_at, interval '15 minutes') AS s;
      RETURN NULL;
    END $$""",
]

OLD_TRIGGERS = ("event_rollup_insert_new", "session_rollup_insert_new", "session_rollup_update_old",
                "session_rollup_update_new")  # fmt: skip


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    for name in OLD_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {name.split('_')[0]}")
    op.execute(
        "CREATE TRIGGER event_rollup_insert_new AFTER INSERT ON event REFERENCING NEW TABLE AS changed_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION rollup_log_new_events()"
    )
    op.execute(
        "CREATE TRIGGER session_rollup_insert_new AFTER INSERT ON session REFERENCING NEW TABLE AS changed_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION rollup_log_new_sessions()"
    )
    op.execute(
        "CREATE TRIGGER session_rollup_update AFTER UPDATE ON session REFERENCING OLD TABLE AS old_rows "
        "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rollup_log_changed_sessions()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER session_rollup_update ON session")
    op.execute("DROP TRIGGER session_rollup_insert_new ON session")
    op.execute("DROP TRIGGER event_rollup_insert_new ON event")
    for name in OLD_TRIGGERS:
        table = name.split("_")[0]
        function = "rollup_mark_events" if table == "event" else "rollup_mark_sessions"
        kind = "INSERT" if "insert" in name else "UPDATE"
        rows = "OLD TABLE" if name.endswith("_old") else "NEW TABLE"
        op.execute(
            f"CREATE TRIGGER {name} AFTER {kind} ON {table} REFERENCING {rows} AS changed_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    for statement in (
        "DROP FUNCTION rollup_log_changed_sessions()",
        "DROP FUNCTION rollup_log_new_sessions()",
        "DROP FUNCTION rollup_log_new_events()",
        "DROP TABLE rollup_session_delta",
        "DROP TABLE rollup_new_events",
    ):
        op.execute(statement)
