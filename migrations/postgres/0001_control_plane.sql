-- alveole control plane, PostgreSQL dialect. Keep in step with ../sqlite/0001_control_plane.sql:
-- same tables, columns and constraint names.

CREATE TABLE providers (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    contact      TEXT,
    contract_end DATE,
    country      TEXT,
    notes        TEXT NOT NULL DEFAULT '',
    version      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT providers_name_key UNIQUE (name)
);

CREATE TABLE nodes (
    id                UUID PRIMARY KEY,
    provider_id       UUID NOT NULL REFERENCES providers (id),
    name              TEXT NOT NULL,
    public_addresses  JSONB NOT NULL,
    cpu_millis        BIGINT NOT NULL,
    memory_bytes      BIGINT NOT NULL,
    disk_bytes        BIGINT NOT NULL,
    overcommit_cpu    DOUBLE PRECISION NOT NULL,
    overcommit_memory DOUBLE PRECISION NOT NULL,
    version           BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT nodes_name_key UNIQUE (name)
);
CREATE INDEX nodes_provider_idx ON nodes (provider_id);

CREATE TABLE members (
    id           UUID PRIMARY KEY,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('member', 'admin', 'auditor')),
    version      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT members_email_key UNIQUE (email)
);

CREATE TABLE sites (
    id                UUID PRIMARY KEY,
    owner_id          UUID NOT NULL REFERENCES members (id),
    primary_domain    TEXT NOT NULL,
    aliases           JSONB NOT NULL,
    image             TEXT NOT NULL,
    command           JSONB NOT NULL,
    env               JSONB NOT NULL,
    volume_quota      BIGINT NOT NULL,
    volume_mount_path TEXT NOT NULL,
    cpu_millis        BIGINT NOT NULL,
    memory_bytes      BIGINT NOT NULL,
    pids              BIGINT NOT NULL,
    node_id           UUID REFERENCES nodes (id),
    phase             TEXT NOT NULL
        CHECK (phase IN ('pending', 'running', 'stopped', 'failed', 'deleting')),
    version           BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX sites_owner_idx ON sites (owner_id);
CREATE INDEX sites_node_idx ON sites (node_id);

-- Every host name of every site, in normal form: the co-op-wide uniqueness lives here.
CREATE TABLE hostnames (
    name     TEXT NOT NULL,
    site_id  UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    parent   TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    CONSTRAINT hostnames_name_key UNIQUE (name)
);
CREATE INDEX hostnames_parent_idx ON hostnames (parent);
CREATE INDEX hostnames_site_idx ON hostnames (site_id);

CREATE TABLE audit_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    before      JSONB,
    after       JSONB,
    request_id  TEXT NOT NULL
);
CREATE INDEX audit_events_target_idx ON audit_events (target_kind, target_id);

-- Secrets of the panel itself, stored as SHA-256 of 256-bit random tokens.
CREATE TABLE admin_tokens (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    actor      TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
