"""The pipeline: an append-only inbox that ingestion COPYs into, derivation behind it, rollups as
ordered delta parts.

- inbox: acknowledged events not derived yet, range-partitioned on inbox_id (the event's future
  event_id) so that old partitions are dropped whole (no reliance on vacuum); a default partition
  catches ids past the partitions made ahead so that nothing acknowledged is ever refused.
- order_key keeps the winning copy of each order id (earliest by event time, then messageId);
  duplicate_order keeps the losing copies (shown in data quality).
- ingest_counter gains a shard per writer, so that two workers' flushes never wait on one row.
- rollup revenue counters hold cents (integers): sums of money are exact in every path.
- pipeline_watermark: per site, what derivation has done (advanced in the derivation's transaction).
- rollup rows become parts: part 0 is a key's base, parts > 0 are deltas in commit order, each
  with the persons it adds and the persons it removes. Readers fold a key's parts in order;
  compaction folds them into the base. The triggers and logs of migrations 0006-0007 go: the
  deriver computes rollup deltas from the facts it has just derived.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PERSON_SETS = ("visitors", "lead_persons", "order_persons", "repeat_customers", "act_persons",
               "convert_persons", "engage_persons")  # fmt: skip
PARTITION_SIZE = 1_000_000  # app.store.inbox.PARTITION_SIZE

UPGRADE = [
    """CREATE TABLE inbox (
        site_id bigint NOT NULL,
        inbox_id bigint NOT NULL DEFAULT nextval('event_event_id_seq'),
        message_id text NOT NULL,
        type text NOT NULL,
        event_name text,
        name text,
        anonymous_id text,
        user_id text,
        event_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        sent_at timestamptz,
        properties jsonb NOT NULL DEFAULT '{}',
        traits jsonb NOT NULL DEFAULT '{}',
        context jsonb NOT NULL DEFAULT '{}',
        path text,
        url text,
        referrer text,
        campaign jsonb NOT NULL DEFAULT '{}',
        channel text NOT NULL,
        device text NOT NULL,
        session_hint text,
        is_bot boolean NOT NULL DEFAULT false,
        CONSTRAINT pk_inbox PRIMARY KEY (site_id, inbox_id)
    ) PARTITION BY RANGE (inbox_id)""",
    "CREATE TABLE inbox_default PARTITION OF inbox DEFAULT",
    """CREATE TABLE duplicate_order (
        site_id bigint NOT NULL,
        event_id bigint NOT NULL,
        order_id text NOT NULL,
        message_id text NOT NULL,
        event_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        anonymous_id text,
        user_id text,
        properties jsonb NOT NULL DEFAULT '{}',
        CONSTRAINT pk_duplicate_order PRIMARY KEY (site_id, event_id)
    )""",
    "CREATE INDEX ix_duplicate_order_site_received ON duplicate_order (site_id, received_at)",
    "ALTER TABLE order_key ADD COLUMN event_at timestamptz, ADD COLUMN message_id text, ADD COLUMN event_id bigint",
    """CREATE TABLE pipeline_watermark (
        site_id bigint NOT NULL,
        derived_events bigint NOT NULL DEFAULT 0,
        derived_through bigint NOT NULL DEFAULT 0,
        derived_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_pipeline_watermark PRIMARY KEY (site_id)
    )""",
    "CREATE SEQUENCE rollup_part_seq",
    # each writer adds to its own counter row: concurrent flushes of a site never wait on one row
    "ALTER TABLE ingest_counter ADD COLUMN shard smallint NOT NULL DEFAULT 0",
    "ALTER TABLE ingest_counter DROP CONSTRAINT pk_ingest_counter",
    "ALTER TABLE ingest_counter ADD CONSTRAINT pk_ingest_counter PRIMARY KEY (site_id, hour, shard)",
    "ALTER TABLE rollup ADD COLUMN part bigint NOT NULL DEFAULT 0, "
    + ", ".join(f"ADD COLUMN {name}_removed bytea" for name in PERSON_SETS),
    "ALTER TABLE rollup DROP CONSTRAINT pk_rollup",
    "ALTER TABLE rollup ADD CONSTRAINT pk_rollup PRIMARY KEY (site_id, dim, level, slot, grp, part)",
    "CREATE INDEX ix_rollup_deltas ON rollup (site_id, dim, level, slot, grp) WHERE part > 0",
    # money is added up in cents (integers, exact in float8 far beyond any revenue; DESIGN §5)
    "UPDATE rollup SET revenue = round(revenue * 100), offline_revenue = round(offline_revenue * 100)",
    "DROP TRIGGER session_rollup_regrouped ON session",
    "DROP TRIGGER session_rollup_update ON session",
    "DROP TRIGGER session_rollup_insert_new ON session",
    "DROP TRIGGER event_rollup_insert_new ON event",
    "DROP TRIGGER session_rollup_delete_old ON session",
    "DROP TRIGGER event_rollup_delete_old ON event",
    "DROP TRIGGER event_rollup_update_old ON event",
    "DROP TRIGGER event_rollup_update_new ON event",
    "DROP FUNCTION rollup_mark_session_spans()",
    "DROP FUNCTION rollup_log_changed_sessions()",
    "DROP FUNCTION rollup_log_new_sessions()",
    "DROP FUNCTION rollup_log_new_events()",
    "DROP FUNCTION rollup_mark_sessions()",
    "DROP FUNCTION rollup_mark_events()",
    "DROP TABLE rollup_session_delta",
    "DROP TABLE rollup_new_events",
    "DROP TABLE rollup_dirty",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    # the partitions ahead of the current id; the service keeps making them (app.store.inbox)
    op.execute(
        f"""DO $$
        DECLARE base bigint := (SELECT last_value FROM event_event_id_seq) / {PARTITION_SIZE} * {PARTITION_SIZE};
        BEGIN
          FOR i IN 0..2 LOOP
            EXECUTE format('CREATE TABLE inbox_p%s PARTITION OF inbox FOR VALUES FROM (%s) TO (%s)',
                           (base + i * {PARTITION_SIZE}) / {PARTITION_SIZE}, base + i * {PARTITION_SIZE},
                           base + (i + 1) * {PARTITION_SIZE});
          END LOOP;
        END $$"""
    )


def downgrade() -> None:
    raise NotImplementedError("0008 replaces the rollup triggers and logs; restore from a backup to go back")
