"""Initial schema: sites, rulesets, dedupe ledgers, events, identity links, sessions, failed events,
targets. Every primary key and unique constraint starts with site_id (Citus-ready, DESIGN §1).

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE site (
    site_id bigserial PRIMARY KEY,
    name text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    domains text[] NOT NULL DEFAULT '{}',
    write_key text NOT NULL,
    read_key_hash text NOT NULL,
    admin_key_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_site_write_key UNIQUE (write_key),
    CONSTRAINT uq_site_read_key_hash UNIQUE (read_key_hash),
    CONSTRAINT uq_site_admin_key_hash UNIQUE (admin_key_hash)
);

CREATE TABLE ruleset (
    site_id bigint NOT NULL,
    version integer NOT NULL,
    document jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_ruleset PRIMARY KEY (site_id, version)
);

CREATE TABLE message_key (
    site_id bigint NOT NULL,
    message_id text NOT NULL,
    CONSTRAINT pk_message_key PRIMARY KEY (site_id, message_id)
);

CREATE TABLE order_key (
    site_id bigint NOT NULL,
    order_id text NOT NULL,
    CONSTRAINT pk_order_key PRIMARY KEY (site_id, order_id)
);

CREATE TABLE event (
    site_id bigint NOT NULL,
    event_id bigserial NOT NULL,
    message_id text NOT NULL,
    type text NOT NULL,
    event_name text,
    name text,
    anonymous_id text,
    user_id text,
    person_id text NOT NULL,
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
    ruleset_version integer,
    stage text,
    goal text,
    value double precision,
    is_lead boolean NOT NULL DEFAULT false,
    is_order boolean NOT NULL DEFAULT false,
    is_first_event boolean NOT NULL DEFAULT false,
    is_first_order boolean NOT NULL DEFAULT false,
    is_repeat_order boolean NOT NULL DEFAULT false,
    session_key text,
    nps_score double precision,
    CONSTRAINT pk_event PRIMARY KEY (site_id, event_id)
);
CREATE INDEX ix_event_site_event_at ON event (site_id, event_at);
CREATE INDEX ix_event_site_person ON event (site_id, person_id, event_at);
CREATE INDEX ix_event_site_anonymous ON event (site_id, anonymous_id) WHERE user_id IS NULL;
CREATE INDEX ix_event_site_orders ON event (site_id, event_at) WHERE is_order AND NOT is_bot;

CREATE TABLE identity_link (
    site_id bigint NOT NULL,
    anonymous_id text NOT NULL,
    user_id text NOT NULL,
    linked_at timestamptz NOT NULL,
    CONSTRAINT pk_identity_link PRIMARY KEY (site_id, anonymous_id, user_id)
);

CREATE TABLE session (
    site_id bigint NOT NULL,
    session_key text NOT NULL,
    person_id text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    event_count integer NOT NULL,
    is_bounce boolean NOT NULL,
    channel text NOT NULL,
    peso text NOT NULL,
    device text NOT NULL,
    campaign_source text,
    campaign_medium text,
    campaign_name text,
    CONSTRAINT pk_session PRIMARY KEY (site_id, session_key)
);
CREATE INDEX ix_session_site_started ON session (site_id, started_at);
CREATE INDEX ix_session_site_person ON session (site_id, person_id);

CREATE TABLE failed_event (
    site_id bigint NOT NULL,
    failed_id bigserial NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    code text NOT NULL,
    message text NOT NULL,
    field text,
    raw text NOT NULL,
    replayed_at timestamptz,
    CONSTRAINT pk_failed_event PRIMARY KEY (site_id, failed_id)
);
CREATE INDEX ix_failed_event_site_received ON failed_event (site_id, received_at);

CREATE TABLE target (
    site_id bigint NOT NULL,
    kpi text NOT NULL,
    month date NOT NULL,
    value double precision NOT NULL,
    CONSTRAINT pk_target PRIMARY KEY (site_id, kpi, month)
);
"""

DOWNGRADE = """
DROP TABLE target; DROP TABLE failed_event; DROP TABLE session; DROP TABLE identity_link;
DROP TABLE event; DROP TABLE order_key; DROP TABLE message_key; DROP TABLE ruleset; DROP TABLE site;
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement: one command per execute
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
