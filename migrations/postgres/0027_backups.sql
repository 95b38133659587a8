-- Backups: where they go (targets), each site's policy and repository key, what nodes did
-- (runs) and the restores asked for.
-- Keep in step with the other dialect's file of the same name.

-- A vault (a node's agent) or an external restic REST server, at a provider.
CREATE TABLE backup_targets (
    id          UUID PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL CONSTRAINT backup_targets_name_key UNIQUE,
    node_id     UUID REFERENCES nodes (id),
    url         TEXT,
    provider_id UUID REFERENCES providers (id),
    version     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CHECK ((node_id IS NULL) <> (url IS NULL)),
    CHECK ((url IS NULL) = (provider_id IS NULL))
);

-- The site's policy as it was given (targets, period, hook), and a backup asked for now.
ALTER TABLE sites ADD COLUMN backup_policy JSONB NOT NULL
    DEFAULT '{"targets":[],"every_minutes":60,"hook":null}';
ALTER TABLE sites ADD COLUMN backup_requested_at TIMESTAMPTZ;

-- The policy's targets as rows, so that a target in use cannot go.
CREATE TABLE site_backup_targets (
    site_id   UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    target_id UUID NOT NULL REFERENCES backup_targets (id),
    position  BIGINT NOT NULL,
    PRIMARY KEY (site_id, target_id)
);
CREATE INDEX site_backup_targets_target ON site_backup_targets (target_id);

-- Each site's repository key, sealed with the panel's secrets key. It outlives the site, so
-- that a deleted site's backups can still be read.
CREATE TABLE backup_keys (
    site_id    UUID PRIMARY KEY NOT NULL,
    sealed     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- What nodes said of each backup, at each target.
CREATE TABLE backup_runs (
    site_id     UUID NOT NULL,
    target_id   UUID NOT NULL,
    node_id     UUID NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    duration_ms BIGINT NOT NULL,
    snapshot_id TEXT,
    files       BIGINT NOT NULL,
    bytes_added BIGINT NOT NULL,
    bytes_total BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX backup_runs_site ON backup_runs (site_id, started_at);

-- Restores: from a site's repository at a target, into a site (itself or another), by the
-- node of that site.
CREATE TABLE restores (
    id             UUID PRIMARY KEY NOT NULL,
    site_id        UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    source_site_id UUID NOT NULL,
    target_id      UUID NOT NULL REFERENCES backup_targets (id),
    node_id        UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    snapshot       TEXT,
    paths          JSONB NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('running', 'restored', 'failed')),
    bytes_done     BIGINT NOT NULL,
    bytes_total    BIGINT NOT NULL,
    snapshot_id    TEXT,
    error          TEXT,
    requested_by   TEXT NOT NULL,
    requested_at   TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ
);
CREATE INDEX restores_site ON restores (site_id, requested_at);
CREATE UNIQUE INDEX restores_one_running ON restores (site_id) WHERE state = 'running';
