"""Keys in their own table (rotation with a grace period for write keys, revocation), and the audit
log of admin and root actions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE site_key (
    site_id bigint NOT NULL,
    key_id bigint GENERATED ALWAYS AS IDENTITY,
    kind text NOT NULL CHECK (kind IN ('write', 'read', 'admin')),
    key_hash text NOT NULL,       -- SHA-256 of the key
    public_key text,              -- the write key in clear (public by design); NULL for secret keys
    prefix text NOT NULL,         -- first characters, for logs and listings
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,       -- NULL: valid; else valid until then (rotation grace, revocation)
    CONSTRAINT pk_site_key PRIMARY KEY (site_id, key_id)
);
CREATE INDEX ix_site_key_hash ON site_key (key_hash);

INSERT INTO site_key (site_id, kind, key_hash, public_key, prefix, created_at)
SELECT site_id, 'write', encode(sha256(convert_to(write_key, 'UTF8')), 'hex'), write_key, left(write_key, 7), created_at
FROM site;
INSERT INTO site_key (site_id, kind, key_hash, prefix, created_at)
SELECT site_id, 'read', read_key_hash, 'rk_', created_at FROM site;
INSERT INTO site_key (site_id, kind, key_hash, prefix, created_at)
SELECT site_id, 'admin', admin_key_hash, 'ak_', created_at FROM site;

ALTER TABLE site DROP COLUMN write_key, DROP COLUMN read_key_hash, DROP COLUMN admin_key_hash;

CREATE TABLE audit_event (
    site_id bigint NOT NULL,
    audit_id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,          -- 'admin' (a site's admin key) or 'root' (the root admin token)
    key_id bigint,                -- the acting key's id (never the key); NULL for root
    action text NOT NULL,         -- e.g. rules.put, keys.rotate, site.delete
    summary jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT pk_audit_event PRIMARY KEY (site_id, audit_id)
);
"""

DOWNGRADE = """
DROP TABLE audit_event;
ALTER TABLE site ADD COLUMN write_key text, ADD COLUMN read_key_hash text, ADD COLUMN admin_key_hash text;
UPDATE site s SET
    write_key = (SELECT public_key FROM site_key k WHERE k.site_id = s.site_id AND kind = 'write'
                 ORDER BY expires_at IS NULL DESC, key_id DESC LIMIT 1),
    read_key_hash = (SELECT key_hash FROM site_key k WHERE k.site_id = s.site_id AND kind = 'read'
                     ORDER BY expires_at IS NULL DESC, key_id DESC LIMIT 1),
    admin_key_hash = (SELECT key_hash FROM site_key k WHERE k.site_id = s.site_id AND kind = 'admin'
                      ORDER BY expires_at IS NULL DESC, key_id DESC LIMIT 1);
ALTER TABLE site ALTER COLUMN write_key SET NOT NULL, ALTER COLUMN read_key_hash SET NOT NULL,
    ALTER COLUMN admin_key_hash SET NOT NULL,
    ADD CONSTRAINT uq_site_write_key UNIQUE (write_key),
    ADD CONSTRAINT uq_site_read_key_hash UNIQUE (read_key_hash),
    ADD CONSTRAINT uq_site_admin_key_hash UNIQUE (admin_key_hash);
DROP TABLE site_key;
"""


def _run(sql: str) -> None:
    for statement in sql.split(";\n"):  # asyncpg runs one statement at a time
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
