"""Rollup deltas: appends are added to the rollups instead of recomputing their slots.

A new event, and a new or changed session (its new row counted in, its old row counted out), is
logged as a delta the refresher adds to the slot, hour and day rows: the cost of a refresh follows
the new events, not the events already in the current slot. Everything else (an event whose facts
changed, a relink, a session that moved or changed its group and so regroups its events, a delete)
still marks its slots for a recomputation from the events.

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
REGROUPED = " OR ".join(["OLD.started_at <> NEW.started_at", *(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in GROUPS)])
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
    # a session's counters are additive: its new row counted in, its old row counted out
    f"""CREATE FUNCTION rollup_log_changed_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO rollup_session_delta (site_id, slot, {", ".join(GROUPS)}, sessions, bounces, session_seconds)
      SELECT site_id, slot, {", ".join(GROUPS)}, sum(n), sum(b), sum(seconds)
      FROM (SELECT site_id, {SLOT.format(col="started_at")} AS slot, {", ".join(GROUPS)}, 1 AS n,
                   is_bounce::int AS b, {SECONDS.format(t="new_rows")} AS seconds FROM new_rows
            UNION ALL
            SELECT site_id, {SLOT.format(col="started_at")}, {", ".join(GROUPS)}, -1,
                   -is_bounce::int, -{SECONDS.format(t="old_rows")} FROM old_rows) d
      GROUP BY 1, 2, {", ".join(str(i + 3) for i in range(len(GROUPS)))}
      HAVING sum(n) <> 0 OR sum(b) <> 0 OR sum(seconds) <> 0;
      RETURN NULL;
    END $$""",
    # ... and when it moved or changed its group, so did its events: their slots are recomputed
    f"""CREATE FUNCTION rollup_mark_session_spans() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO rollup_dirty (site_id, slot)
      SELECT NEW.site_id, s
      FROM generate_series({SLOT.format(col="OLD.started_at")}, OLD.ended_at, interval '15 minutes') s
      UNION
      SELECT NEW.site_id, s
      FROM generate_series({SLOT.format(col="NEW.started_at")}, NEW.ended_at, interval '15 minutes') s;
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
    op.execute(
        f"CREATE TRIGGER session_rollup_regrouped AFTER UPDATE ON session FOR EACH ROW WHEN ({REGROUPED}) "
        "EXECUTE FUNCTION rollup_mark_session_spans()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER session_rollup_regrouped ON session")
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
        "DROP FUNCTION rollup_mark_session_spans()",
        "DROP FUNCTION rollup_log_changed_sessions()",
        "DROP FUNCTION rollup_log_new_sessions()",
        "DROP FUNCTION rollup_log_new_events()",
        "DROP TABLE rollup_session_delta",
        "DROP TABLE rollup_new_events",
    ):
        op.execute(statement)
