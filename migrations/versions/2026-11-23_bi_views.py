"""Read-only SQL for BI tools that connect directly: views bi_event, bi_session, bi_kpi_daily and a
NOLOGIN role racetrack_bi that may SELECT those views and nothing else; plus an index on
event(site_id, received_at) for /v1/quality's receipt-time counts.

- bi_event: non-bot events with their RACE facts (stage, goal, value, lead/order/first/repeat flags,
  NPS score), person, path, the event's own channel and device, and its session's channel, PESO
  group, device and campaign. No raw context, properties, traits, IPs, URLs or referrers.
- bi_session: sessions (human events only) with their duration in seconds.
- bi_kpi_daily: per site and UTC day: visitors, sessions, pageviews, orders, revenue, leads,
  new_customers (the /v1/kpis definitions, days in UTC). Filter on site_id and day: both are pushed
  down into the aggregates.

The views run with their owner's rights (no security_invoker), so racetrack_bi needs no grant on
the tables. The role is cluster-wide: it is created only if missing; it sees every site of this
database (give a team one site with a filtered view of your own). Grant it to a login role:

    CREATE ROLE metabase LOGIN PASSWORD 'change-me' IN ROLE racetrack_bi;
    ALTER ROLE metabase SET default_transaction_read_only = on;  -- optional belt and braces
    ALTER ROLE metabase SET statement_timeout = '60s';            -- optional: protect ingestion
    -- then connect as metabase: SELECT * FROM bi_kpi_daily WHERE site_id = 1 AND day >= '2026-03-01';

(The login role inherits racetrack_bi's SELECT; on a database whose PUBLIC has lost CONNECT, also
`GRANT CONNECT ON DATABASE <db> TO metabase`.) The migrating user needs CREATEROLE (or superuser)
the first time; without it the views are created and a warning says the role must be made by hand
(`CREATE ROLE racetrack_bi NOLOGIN`, then re-run the grants below). Downgrade drops the views, the
index and the role; the role is kept, with a notice, while another database still grants it rights.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BI_EVENT = """
CREATE VIEW bi_event AS
SELECT e.site_id, e.event_id, e.message_id, e.type, e.event_name, e.name, e.person_id,
       e.event_at, e.received_at, e.path, e.channel AS event_channel, e.device AS event_device,
       e.stage, e.goal, e.value, e.is_lead, e.is_order, e.is_first_event, e.is_first_order,
       e.is_repeat_order, e.nps_score, e.ruleset_version, e.session_key,
       s.channel AS session_channel, s.peso AS session_peso, s.device AS session_device,
       s.campaign_source, s.campaign_medium, s.campaign_name
FROM event e
LEFT JOIN session s ON s.site_id = e.site_id AND s.session_key = e.session_key
WHERE NOT e.is_bot
"""

BI_SESSION = """
CREATE VIEW bi_session AS
SELECT site_id, session_key, person_id, started_at, ended_at,
       extract(epoch FROM ended_at - started_at)::float8 AS duration_seconds,
       event_count, is_bounce, channel, peso, device, campaign_source, campaign_medium, campaign_name
FROM session
"""

BI_KPI_DAILY = """
CREATE VIEW bi_kpi_daily AS
SELECT site_id, day,
       sum(visitors)::bigint AS visitors, sum(sessions)::bigint AS sessions,
       sum(pageviews)::bigint AS pageviews, sum(orders)::bigint AS orders,
       sum(revenue)::float8 AS revenue, sum(leads)::bigint AS leads,
       sum(new_customers)::bigint AS new_customers
FROM (
  SELECT site_id, (event_at AT TIME ZONE 'UTC')::date AS day,
         count(DISTINCT person_id) AS visitors, 0 AS sessions,
         count(*) FILTER (WHERE type IN ('page', 'screen')) AS pageviews,
         count(*) FILTER (WHERE is_order) AS orders,
         COALESCE(sum(value) FILTER (WHERE is_order), 0) AS revenue,
         count(*) FILTER (WHERE is_lead) AS leads,
         count(DISTINCT person_id) FILTER (WHERE is_first_order) AS new_customers
  FROM event WHERE NOT is_bot
  GROUP BY 1, 2
  UNION ALL
  SELECT site_id, (started_at AT TIME ZONE 'UTC')::date, 0, count(*), 0, 0, 0, 0, 0
  FROM session
  GROUP BY 1, 2
) per_source
GROUP BY site_id, day
"""

CREATE_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'racetrack_bi') THEN
    BEGIN
      CREATE ROLE racetrack_bi NOLOGIN;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile by another database's migration
      WHEN insufficient_privilege THEN
        RAISE WARNING 'racetrack_bi not created (needs CREATEROLE): create it and grant SELECT on the bi_ views';
    END;
  END IF;
END $$
"""

GRANT = """
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'racetrack_bi') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO racetrack_bi', current_schema());
    GRANT SELECT ON bi_event, bi_session, bi_kpi_daily TO racetrack_bi;
  END IF;
END $$
"""

DROP_ROLE = """
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'racetrack_bi') THEN
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM racetrack_bi', current_schema());
    BEGIN
      DROP ROLE racetrack_bi;
    EXCEPTION WHEN dependent_objects_still_exist THEN
      RAISE NOTICE 'racetrack_bi kept: it still has privileges in another database';
    END;
  END IF;
END $$
"""


def upgrade() -> None:
    # asyncpg prepares each statement: one command per execute
    for statement in (BI_EVENT, BI_SESSION, BI_KPI_DAILY, CREATE_ROLE, GRANT):
        op.execute(statement)
    # Built without blocking ingestion on a large event table (Polar's pattern, STYLE.md).
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_event_site_received ON event (site_id, received_at)")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_event_site_received")
    for view in ("bi_kpi_daily", "bi_session", "bi_event"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute(DROP_ROLE)
