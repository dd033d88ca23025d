"""The schema in code: every table, index, constraint, partitioning and sequence that the migrations
(migrations/versions/, 0001-0014) create, as SQLAlchemy Core tables on one MetaData.

The migrations stay the way the schema changes; this module is what it is. `alembic check` (and
tests/integration/test_schema.py) compares the two on a freshly migrated database and fails on any
drift. Hand-written SQL in app/store takes column lists and casts from these tables where that is
practical (app/store/inbox.py, app/store/persons.py); nothing here runs on a hot path (column lists
and casts are computed once, at import).

Names: constraints PostgreSQL would have named itself follow NAMING_CONVENTION (migration 0011
renamed the two that predate it); indexes and the one unique constraint keep the descriptive names
their migrations gave them, written out below.

Not in this metadata, on purpose:
- the inbox's id-range partitions `inbox_p<n>`: app/pipeline/partitions.py makes and drops them at
  run time (migration 0008 made the first three). migrations/env.py leaves every partition out of
  the comparison; the DEFAULT partition is made by the DDL attached to `inbox` below.
- the read-only views bi_event, bi_session, bi_kpi_daily and the role racetrack_bi (migration
  0004): autogenerate compares tables, not views.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    CHAR,
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Server defaults are written as alembic's comparison reads them back from PostgreSQL, so the two
# compare as equal text. (When they differ, alembic evaluates both sides in a SELECT, where two
# nextval() calls can look alike; tests/integration/test_schema.py compares the catalogs exactly.)
NOW = text("now()")
FALSE = text("false")
ZERO = text("0")
EMPTY_JSON = text("'{}'::jsonb")


def _timestamp(name: str, nullable: bool = False, **kwargs: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable, **kwargs)  # type: ignore[arg-type]


def _json(name: str) -> Column[object]:
    return Column(name, JSONB, nullable=False, server_default=EMPTY_JSON)


def _received_event_columns() -> list[Column[object]]:
    """What ingestion stores of an event (the inbox row) and `event` keeps as is: the event as it
    came in, normalised (time, channel, device, bot)."""
    return [
        Column("message_id", Text, nullable=False),
        Column("type", Text, nullable=False),
        Column("event_name", Text),
        Column("name", Text),
        Column("anonymous_id", Text),
        Column("user_id", Text),
        _timestamp("event_at"),
        _timestamp("received_at"),
        _timestamp("sent_at", nullable=True),
        _json("properties"),
        _json("traits"),
        _json("context"),
        Column("path", Text),
        Column("url", Text),
        Column("referrer", Text),
        _json("campaign"),
        Column("channel", Text, nullable=False),
        Column("device", Text, nullable=False),
        Column("session_hint", Text),
        Column("is_bot", Boolean, nullable=False, server_default=FALSE),
    ]


def _site_id() -> Column[int]:
    # every tenant table's keys start with site_id (Citus-ready, DESIGN §1); no foreign keys
    return Column("site_id", BigInteger, nullable=False, autoincrement=False)


# --- sites, keys, settings (0001, 0009, 0010) ------------------------------------------------------

site = Table(
    "site", metadata,
    Column("site_id", BigInteger, primary_key=True, autoincrement=True),  # bigserial
    Column("name", Text, nullable=False),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'::text")),
    Column("domains", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    _timestamp("created_at", server_default=NOW),
    Column("currency", Text),  # ISO 4217, optional: orders in another currency count without their value
)  # fmt: skip

site_key = Table(
    "site_key", metadata,
    _site_id(),
    Column("key_id", BigInteger, Identity(always=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("key_hash", Text, nullable=False),  # SHA-256 of the key
    Column("public_key", Text),  # the write key in clear (public by design); NULL for secret keys
    Column("prefix", Text, nullable=False),  # first characters, for logs and listings
    _timestamp("created_at", server_default=NOW),
    _timestamp("expires_at", nullable=True),  # NULL: valid; else valid until then (rotation, revocation)
    PrimaryKeyConstraint("site_id", "key_id"),
    CheckConstraint("kind IN ('write', 'read', 'admin')", name="kind"),
    Index("ix_site_key_hash", "key_hash"),
)  # fmt: skip

audit_event = Table(
    "audit_event", metadata,
    _site_id(),
    Column("audit_id", BigInteger, Identity(always=True), nullable=False),
    _timestamp("at", server_default=NOW),
    Column("actor", Text, nullable=False),  # 'admin' (a site's admin key) or 'root' (the root token)
    Column("key_id", BigInteger),  # the acting key's id (never the key); NULL for root
    Column("action", Text, nullable=False),  # e.g. rules.put, keys.rotate, site.delete
    Column("summary", JSONB, nullable=False, server_default=EMPTY_JSON),
    PrimaryKeyConstraint("site_id", "audit_id"),
)  # fmt: skip

ruleset = Table(
    "ruleset", metadata,
    _site_id(),
    Column("version", Integer, nullable=False, autoincrement=False),
    Column("document", JSONB, nullable=False),
    _timestamp("created_at", server_default=NOW),
    PrimaryKeyConstraint("site_id", "version"),
)  # fmt: skip

target = Table(
    "target", metadata,
    _site_id(),
    Column("kpi", Text, nullable=False),
    Column("month", Date, nullable=False),
    Column("value", Double, nullable=False),
    PrimaryKeyConstraint("site_id", "kpi", "month"),
)  # fmt: skip

# --- ingestion (0001, 0003, 0008) ------------------------------------------------------------------

message_key = Table(
    "message_key", metadata,
    _site_id(),
    Column("message_id", Text, nullable=False),
    PrimaryKeyConstraint("site_id", "message_id"),
)  # fmt: skip

# The inbox takes its ids from event's sequence: an inbox row's id becomes its event_id. It is
# range-partitioned on that id so that drained partitions are dropped whole (app.pipeline.partitions).
inbox = Table(
    "inbox", metadata,
    _site_id(),
    Column("inbox_id", BigInteger, nullable=False, autoincrement=False,
           server_default=text("nextval('event_event_id_seq')")),
    *_received_event_columns(),
    PrimaryKeyConstraint("site_id", "inbox_id"),
    postgresql_partition_by="RANGE (inbox_id)",
)  # fmt: skip
# ids past the partitions made ahead land here, so nothing acknowledged is ever refused
sa_event.listen(inbox, "after_create", DDL("CREATE TABLE inbox_default PARTITION OF inbox DEFAULT"))  # type: ignore[no-untyped-call]

failed_event = Table(
    "failed_event", metadata,
    _site_id(),
    Column("failed_id", BigInteger, nullable=False, autoincrement=True),  # bigserial
    _timestamp("received_at", server_default=NOW),
    Column("code", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("field", Text),
    Column("raw", Text, nullable=False),
    _timestamp("replayed_at", nullable=True),
    PrimaryKeyConstraint("site_id", "failed_id"),
    Index("ix_failed_event_site_received", "site_id", "received_at"),
)  # fmt: skip

ingest_counter = Table(
    "ingest_counter", metadata,
    _site_id(),
    _timestamp("hour"),
    Column("accepted", BigInteger, nullable=False, server_default=ZERO),
    Column("duplicates", BigInteger, nullable=False, server_default=ZERO),
    Column("rejected", BigInteger, nullable=False, server_default=ZERO),
    # each writer adds to its own row: concurrent flushes of a site never wait on one row
    Column("shard", SmallInteger, nullable=False, server_default=ZERO, autoincrement=False),
    PrimaryKeyConstraint("site_id", "hour", "shard"),
)  # fmt: skip

# --- derived: events, identities, orders, sessions, persons (0001, 0005, 0006, 0008) --------------

event = Table(
    "event", metadata,
    _site_id(),
    Column("event_id", BigInteger, nullable=False, autoincrement=True),  # bigserial; the inbox's ids
    *_received_event_columns(),
    Column("person_id", Text, nullable=False),
    # the derived facts
    Column("ruleset_version", Integer),
    Column("stage", Text),
    Column("goal", Text),
    Column("value", Double),
    Column("is_lead", Boolean, nullable=False, server_default=FALSE),
    Column("is_order", Boolean, nullable=False, server_default=FALSE),
    Column("is_first_event", Boolean, nullable=False, server_default=FALSE),
    Column("is_first_order", Boolean, nullable=False, server_default=FALSE),
    Column("is_repeat_order", Boolean, nullable=False, server_default=FALSE),
    Column("session_key", Text),
    Column("nps_score", Double),
    PrimaryKeyConstraint("site_id", "event_id"),
    Index("ix_event_site_event_at", "site_id", "event_at"),
    Index("ix_event_site_person", "site_id", "person_id", "event_at"),
    Index("ix_event_site_anonymous", "site_id", "anonymous_id", postgresql_where=text("user_id IS NULL")),
    Index("ix_event_site_orders", "site_id", "event_at", postgresql_where=text("is_order AND NOT is_bot")),
    Index("ix_event_site_received", "site_id", "received_at"),  # /v1/quality's receipt-time counts (0004)
)  # fmt: skip
inbox.add_is_dependent_on(event)  # the inbox's ids come from event's sequence

identity_link = Table(
    "identity_link", metadata,
    _site_id(),
    Column("anonymous_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    _timestamp("linked_at"),
    PrimaryKeyConstraint("site_id", "anonymous_id", "user_id"),
)  # fmt: skip

# the counted copy of each order id; the others go to duplicate_order
order_key = Table(
    "order_key", metadata,
    _site_id(),
    Column("order_id", Text, nullable=False),
    _timestamp("event_at", nullable=True),  # NULL for ids counted before copies were ranked (0008)
    Column("message_id", Text),
    Column("event_id", BigInteger),
    PrimaryKeyConstraint("site_id", "order_id"),
)  # fmt: skip

duplicate_order = Table(
    "duplicate_order", metadata,
    _site_id(),
    Column("event_id", BigInteger, nullable=False, autoincrement=False),
    Column("order_id", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    _timestamp("event_at"),
    _timestamp("received_at"),
    Column("anonymous_id", Text),
    Column("user_id", Text),
    _json("properties"),
    PrimaryKeyConstraint("site_id", "event_id"),
    Index("ix_duplicate_order_site_received", "site_id", "received_at"),
)  # fmt: skip

session = Table(
    "session", metadata,
    _site_id(),
    Column("session_key", Text, nullable=False),
    Column("person_id", Text, nullable=False),
    _timestamp("started_at"),
    _timestamp("ended_at"),
    Column("event_count", Integer, nullable=False),
    Column("is_bounce", Boolean, nullable=False),
    Column("channel", Text, nullable=False),
    Column("peso", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("campaign_source", Text),
    Column("campaign_medium", Text),
    Column("campaign_name", Text),
    PrimaryKeyConstraint("site_id", "session_key"),
    Index("ix_session_site_started", "site_id", "started_at"),
    Index("ix_session_site_person", "site_id", "person_id"),
)  # fmt: skip

# a summary of each person's events, so an event after all of them is derived without reading them
person_state = Table(
    "person_state", metadata,
    _site_id(),
    Column("person_id", Text, nullable=False),
    _timestamp("last_event_at", nullable=True),
    Column("last_message_id", Text),
    _timestamp("first_seen_at", nullable=True),
    Column("orders", Integer, nullable=False, server_default=ZERO),
    Column("revenue", Double, nullable=False, server_default=ZERO),
    Column("leads", Integer, nullable=False, server_default=ZERO),
    Column("gap_session_key", Text),
    _timestamp("gap_last_at", nullable=True),
    PrimaryKeyConstraint("site_id", "person_id"),
)  # fmt: skip

# dense per-site person numbers, the members of the rollups' person bitmaps
person_number = Table(
    "person_number", metadata,
    _site_id(),
    Column("person_id", Text, nullable=False),
    Column("number", Integer, nullable=False),
    PrimaryKeyConstraint("site_id", "person_id"),
    UniqueConstraint("site_id", "number", name="uq_person_number_number"),
)  # fmt: skip

pipeline_watermark = Table(
    "pipeline_watermark", metadata,
    _site_id(),
    Column("derived_events", BigInteger, nullable=False, server_default=ZERO),
    Column("derived_through", BigInteger, nullable=False, server_default=ZERO),
    _timestamp("derived_at", server_default=NOW),
    # every inbox row of the site has an id at or above this (app.store.inbox.advance_scan_from)
    Column("scan_from", BigInteger, nullable=False, server_default=ZERO),
    PrimaryKeyConstraint("site_id"),
)  # fmt: skip

# --- rollups (0006, 0008, 0012) --------------------------------------------------------------------

# A key's part 0 is its base; parts > 0 are deltas in commit order (numbered from rollup_part_seq),
# each with the persons it adds and the persons it removes. Readers fold a key's parts in order.
# A row's quantities are arrays in the order of its layout (app.domain.kpis.registry.Layout):
# `counters` (revenue counters in cents, so sums of money are exact), `sets` (roaring bitmaps of
# person numbers, NULL for none) and `removed` (a delta's persons that left each set; NULL for none).
rollup = Table(
    "rollup", metadata,
    _site_id(),
    Column("dim", Text, nullable=False),
    Column("level", CHAR(1), nullable=False),
    _timestamp("slot"),
    Column("grp", Text, nullable=False),
    Column("part", BigInteger, nullable=False, server_default=ZERO, autoincrement=False),
    Column("counters", ARRAY(Double), nullable=False),
    Column("sets", ARRAY(LargeBinary), nullable=False),
    Column("removed", ARRAY(LargeBinary)),
    PrimaryKeyConstraint("site_id", "dim", "level", "slot", "grp", "part"),
    Index("ix_rollup_deltas", "site_id", "dim", "level", "slot", "grp", postgresql_where=text("part > 0")),
)  # fmt: skip
# Per site and family of rows ('kpi': every breakdown dimension; 'goal'), the layout its rows are
# stored in; `complete` is false while a rebuild brings the rows to it (reads then use the events).
rollup_layout = Table(
    "rollup_layout", metadata,
    _site_id(),
    Column("family", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("quantities", ARRAY(Text), nullable=False),
    Column("complete", Boolean, nullable=False),
    _timestamp("changed_at", server_default=NOW),
    PrimaryKeyConstraint("site_id", "family"),
)  # fmt: skip
rollup_part_seq = Sequence("rollup_part_seq", metadata=metadata)

# --- report counters (0014): /v1/quality and /v1/cohorts without scanning events ------------------

# Per 15-minute receipt slot (app.store.report_counters): stored events that are bots, that came
# late, and non-bot orders without a value per the currency they were sent in ('' for none).
# Kept by the deriver in its transaction; family 'quality' in rollup_layout.
quality_counter = Table(
    "quality_counter", metadata,
    _site_id(),
    _timestamp("slot"),
    Column("currency", Text, nullable=False),  # upper(btrim(properties->>'currency')), '' when absent
    Column("bots", BigInteger, nullable=False, server_default=ZERO),
    Column("late", BigInteger, nullable=False, server_default=ZERO),
    Column("unvalued_orders", BigInteger, nullable=False, server_default=ZERO),
    PrimaryKeyConstraint("site_id", "slot", "currency"),
)  # fmt: skip

# Per customer and 15-minute slot of event time: their non-bot orders (first, repeat, all) and the
# orders' value in cents. Kept by the deriver; family 'cohort' in rollup_layout.
customer_orders = Table(
    "customer_orders", metadata,
    _site_id(),
    Column("person_id", Text, nullable=False),
    _timestamp("slot"),
    Column("orders", Integer, nullable=False),
    Column("first_orders", Integer, nullable=False),
    Column("repeat_orders", Integer, nullable=False),
    Column("cents", Double, nullable=False),
    PrimaryKeyConstraint("site_id", "person_id", "slot"),
    Index("ix_customer_orders_site_slot", "site_id", "slot"),
)  # fmt: skip

# Per cohort (the site-local month of a customer's first order) and site-local month: the cohort's
# customers with an order then, with a repeat order then, their orders and value in cents; a sum
# over customers of what their customer_orders rows make of them. Family 'cohort' too.
cohort_month = Table(
    "cohort_month", metadata,
    _site_id(),
    Column("cohort", Date, nullable=False),
    Column("month", Date, nullable=False),
    Column("active", BigInteger, nullable=False),
    Column("repeat_customers", BigInteger, nullable=False),
    Column("orders", BigInteger, nullable=False),
    Column("cents", Double, nullable=False),
    PrimaryKeyConstraint("site_id", "cohort", "month"),
)  # fmt: skip

# --- background jobs (0002) ------------------------------------------------------------------------

job = Table(
    "job", metadata,
    _site_id(),
    Column("job_id", BigInteger, nullable=False, autoincrement=True),  # bigserial
    Column("kind", Text, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'queued'::text")),
    Column("done", Integer, nullable=False, server_default=ZERO),
    Column("total", Integer, nullable=False, server_default=ZERO),
    Column("error", Text),
    _timestamp("created_at", server_default=NOW),
    _timestamp("updated_at", server_default=NOW),
    PrimaryKeyConstraint("site_id", "job_id"),
    Index("ix_job_status", "status", postgresql_where=text("status IN ('queued', 'running')")),
)  # fmt: skip


def columns(table: Table, *leave_out: str) -> tuple[str, ...]:
    """The table's column names in order, without leave_out (each must be one of them)."""
    unknown = set(leave_out) - set(table.c.keys())
    if unknown:
        raise KeyError(f"{table.name} has no column {sorted(unknown)}")
    return tuple(c.name for c in table.c if c.name not in leave_out)


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def sql_types(table: Table, names: tuple[str, ...]) -> tuple[str, ...]:
    """PostgreSQL type names of these columns, for casts in hand-written SQL (e.g. `$1::jsonb` rows)."""
    return tuple(table.c[name].type.compile(dialect=_DIALECT) for name in names)
