-- Sites moving from one node to another, and the moves they made (the site's history).
-- The source agent copies, freezes and asks for the switch; the switch moves sites.node_id
-- to the target in the same transaction as phase 'forwarding'.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE site_moves (
    id                 UUID PRIMARY KEY NOT NULL,
    site_id            UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    from_node          UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    to_node            UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    phase              TEXT NOT NULL
                       CHECK (phase IN ('copying', 'forwarding', 'done', 'failed', 'cancelled')),
    started_at         TIMESTAMPTZ NOT NULL,
    switched_at        TIMESTAMPTZ,
    finished_at        TIMESTAMPTZ,
    forward_until      TIMESTAMPTZ,
    forward_seconds    BIGINT NOT NULL,
    freeze_deadline_ms BIGINT NOT NULL,
    progress           JSONB NOT NULL,
    error              TEXT
);
CREATE INDEX site_moves_site ON site_moves (site_id, started_at);
-- At most one move of a site is under way.
CREATE UNIQUE INDEX site_moves_one_active ON site_moves (site_id)
    WHERE phase IN ('copying', 'forwarding');
