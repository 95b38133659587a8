-- Backups: where they go (targets), each site's policy and repository key, what nodes did
-- (runs) and the restores asked for.
-- Keep in step with the other dialect's file of the same name.

-- A vault (a node's agent) or an external restic REST server, at a provider.
CREATE TABLE backup_targets (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL CONSTRAINT backup_targets_name_key UNIQUE,
    node_id     BLOB REFERENCES nodes (id),
    url         TEXT,
    provider_id BLOB REFERENCES providers (id),
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK ((node_id IS NULL) <> (url IS NULL)),
    CHECK ((url IS NULL) = (provider_id IS NULL))
);

-- The site's policy as it was given (targets, period, hook), and a backup asked for now.
ALTER TABLE sites ADD COLUMN backup_policy TEXT NOT NULL
    DEFAULT '{"targets":[],"every_minutes":60,"hook":null}';
ALTER TABLE sites ADD COLUMN backup_requested_at TEXT;

-- The policy's targets as rows, so that a target in use cannot go.
CREATE TABLE site_backup_targets (
    site_id   BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    target_id BLOB NOT NULL REFERENCES backup_targets (id),
    position  INTEGER NOT NULL,
    PRIMARY KEY (site_id, target_id)
);
CREATE INDEX site_backup_targets_target ON site_backup_targets (target_id);

-- Each site's repository key, sealed with the panel's secrets key. It outlives the site, so
-- that a deleted site's backups can still be read.
CREATE TABLE backup_keys (
    site_id    BLOB PRIMARY KEY NOT NULL,
    sealed     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- What nodes said of each backup, at each target.
CREATE TABLE backup_runs (
    site_id     BLOB NOT NULL,
    target_id   BLOB NOT NULL,
    node_id     BLOB NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    snapshot_id TEXT,
    files       INTEGER NOT NULL,
    bytes_added INTEGER NOT NULL,
    bytes_total INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX backup_runs_site ON backup_runs (site_id, started_at);

-- Restores: from a site's repository at a target, into a site (itself or another), by the
-- node of that site.
CREATE TABLE restores (
    id             BLOB PRIMARY KEY NOT NULL,
    site_id        BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    source_site_id BLOB NOT NULL,
    target_id      BLOB NOT NULL REFERENCES backup_targets (id),
    node_id        BLOB NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    snapshot       TEXT,
    paths          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('running', 'restored', 'failed')),
    bytes_done     INTEGER NOT NULL,
    bytes_total    INTEGER NOT NULL,
    snapshot_id    TEXT,
    error          TEXT,
    requested_by   TEXT NOT NULL,
    requested_at   TEXT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX restores_site ON restores (site_id, requested_at);
CREATE UNIQUE INDEX restores_one_running ON restores (site_id) WHERE state = 'running';
