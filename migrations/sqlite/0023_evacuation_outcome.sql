-- no-transaction
-- An evacuation that ends with sites still on the nodes being emptied is 'incomplete', and
-- names them (remaining, JSON); a site whose move failed is tried again later (attempts,
-- retry_at); a site may move again while its last move forwards. SQLite cannot change a CHECK in place: the jobs table is rebuilt, with foreign
-- keys off so that dropping the old table does not cascade to the items (SQLite's documented
-- procedure; hence no transaction around the file, one inside it).
-- Keep in step with the other dialect's file of the same name.

PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE jobs_rebuilt (
    id           BLOB PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('evacuation')),
    state        TEXT NOT NULL
                 CHECK (state IN ('running', 'paused', 'cancelled', 'done', 'incomplete')),
    spec         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    finished_at  TEXT,
    lease_owner  TEXT,
    lease_until  TEXT,
    remaining    TEXT
);
INSERT INTO jobs_rebuilt (id, kind, state, spec, created_at, finished_at, lease_owner, lease_until)
    SELECT id, kind, state, spec, created_at, finished_at, lease_owner, lease_until FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;
CREATE INDEX jobs_unfinished ON jobs (state, created_at);
ALTER TABLE evacuation_items ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evacuation_items ADD COLUMN retry_at TEXT;
-- A site may move again while its last move forwards: one copying move per site at most.
DROP INDEX site_moves_one_active;
CREATE UNIQUE INDEX site_moves_one_copying ON site_moves (site_id) WHERE phase = 'copying';
COMMIT;
PRAGMA foreign_keys = ON;
