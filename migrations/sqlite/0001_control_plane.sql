-- alveole control plane, SQLite dialect. Keep in step with ../postgres/0001_control_plane.sql:
-- same tables, columns and constraint names.

CREATE TABLE providers (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    contact      TEXT,
    contract_end TEXT,
    country      TEXT,
    notes        TEXT NOT NULL DEFAULT '',
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT providers_name_key UNIQUE (name)
);

CREATE TABLE nodes (
    id                BLOB PRIMARY KEY NOT NULL,
    provider_id       BLOB NOT NULL REFERENCES providers (id),
    name              TEXT NOT NULL,
    public_addresses  TEXT NOT NULL,
    cpu_millis        INTEGER NOT NULL,
    memory_bytes      INTEGER NOT NULL,
    disk_bytes        INTEGER NOT NULL,
    overcommit_cpu    REAL NOT NULL,
    overcommit_memory REAL NOT NULL,
    version           INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CONSTRAINT nodes_name_key UNIQUE (name)
);
CREATE INDEX nodes_provider_idx ON nodes (provider_id);

CREATE TABLE members (
    id           BLOB PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('member', 'admin', 'auditor')),
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT members_email_key UNIQUE (email)
);

CREATE TABLE sites (
    id                BLOB PRIMARY KEY NOT NULL,
    owner_id          BLOB NOT NULL REFERENCES members (id),
    primary_domain    TEXT NOT NULL,
    aliases           TEXT NOT NULL,
    image             TEXT NOT NULL,
    command           TEXT NOT NULL,
    env               TEXT NOT NULL,
    volume_quota      INTEGER NOT NULL,
    volume_mount_path TEXT NOT NULL,
    cpu_millis        INTEGER NOT NULL,
    memory_bytes      INTEGER NOT NULL,
    pids              INTEGER NOT NULL,
    node_id           BLOB REFERENCES nodes (id),
    phase             TEXT NOT NULL
        CHECK (phase IN ('pending', 'running', 'stopped', 'failed', 'deleting')),
    version           INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX sites_owner_idx ON sites (owner_id);
CREATE INDEX sites_node_idx ON sites (node_id);

-- Every host name of every site, in normal form: the co-op-wide uniqueness lives here.
CREATE TABLE hostnames (
    name     TEXT NOT NULL,
    site_id  BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    parent   TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    CONSTRAINT hostnames_name_key UNIQUE (name)
);
CREATE INDEX hostnames_parent_idx ON hostnames (parent);
CREATE INDEX hostnames_site_idx ON hostnames (site_id);

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          BLOB NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    request_id  TEXT NOT NULL
);
CREATE INDEX audit_events_target_idx ON audit_events (target_kind, target_id);

-- Secrets of the panel itself, stored as SHA-256 of 256-bit random tokens.
CREATE TABLE admin_tokens (
    name       TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    actor      TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
