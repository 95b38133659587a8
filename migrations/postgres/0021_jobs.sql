-- Durable jobs: long operations kept in the database, so that they survive a panel's restart
-- and several panel processes share them. A job is run by the process that holds its lease;
-- a lease not renewed in time lets another process take it over.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE jobs (
    id           UUID PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('evacuation')),
    state        TEXT NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
    spec         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    lease_owner  TEXT,
    lease_until  TIMESTAMPTZ
);
CREATE INDEX jobs_unfinished ON jobs (state, created_at);

-- An evacuation's sites, in the order they move. An item becomes 'moving' in the same
-- transaction as its site's move starts, with the move's id: a site is never moved twice.
CREATE TABLE evacuation_items (
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    site_id     UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    to_node     UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'moving', 'done', 'failed', 'skipped')),
    move_id     UUID REFERENCES site_moves (id) ON DELETE SET NULL,
    error       TEXT,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, site_id)
);
