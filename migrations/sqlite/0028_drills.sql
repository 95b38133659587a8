-- Restore drills, what the vaults' checks last found of each copy, and the backup alerts
-- raised on sites.
-- Keep in step with the other dialect's file of the same name.

-- A drill: a site's newest snapshot at a target restored, compared, started and probed in a
-- scratch container on a node of another provider (none when no node could take it).
CREATE TABLE drills (
    id             BLOB PRIMARY KEY NOT NULL,
    site_id        BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    target_id      BLOB NOT NULL REFERENCES backup_targets (id) ON DELETE CASCADE,
    node_id        BLOB REFERENCES nodes (id) ON DELETE SET NULL,
    state          TEXT NOT NULL CHECK (state IN ('running', 'passed', 'failed')),
    phase          TEXT NOT NULL,
    bytes_done     INTEGER NOT NULL,
    bytes_total    INTEGER NOT NULL,
    snapshot_id    TEXT,
    snapshot_time  TEXT,
    files_verified INTEGER NOT NULL,
    restore_ms     INTEGER,
    answer_status  INTEGER,
    error          TEXT,
    requested_by   TEXT NOT NULL,
    requested_at   TEXT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX drills_site ON drills (site_id, requested_at);
CREATE UNIQUE INDEX drills_one_running ON drills (site_id) WHERE state = 'running';

-- The latest check of each site's copy at a vault: intact, or the snapshots it breaks.
CREATE TABLE copy_checks (
    site_id          BLOB NOT NULL,
    target_id        BLOB NOT NULL REFERENCES backup_targets (id) ON DELETE CASCADE,
    checked_at       TEXT NOT NULL,
    intact           BOOLEAN NOT NULL,
    broken_snapshots TEXT NOT NULL,
    detail           TEXT NOT NULL,
    PRIMARY KEY (site_id, target_id)
);

-- Alerts raised on a site (its window is too long, a drill failed, a copy is damaged),
-- each with its reason, until what raised it is over.
CREATE TABLE backup_alerts (
    site_id BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('window', 'drill', 'damage')),
    reason  TEXT NOT NULL,
    since   TEXT NOT NULL,
    PRIMARY KEY (site_id, kind)
);
