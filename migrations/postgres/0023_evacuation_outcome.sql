-- An evacuation that ends with sites still on the nodes being emptied is 'incomplete', and
-- names them (remaining); a site whose move failed is tried again later (attempts, retry_at).
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('running', 'paused', 'cancelled', 'done', 'incomplete'));
ALTER TABLE jobs ADD COLUMN remaining JSONB;
ALTER TABLE evacuation_items ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE evacuation_items ADD COLUMN retry_at TIMESTAMPTZ;
-- A site may move again while its last move forwards: one copying move per site at most.
DROP INDEX site_moves_one_active;
CREATE UNIQUE INDEX site_moves_one_copying ON site_moves (site_id) WHERE phase = 'copying';
