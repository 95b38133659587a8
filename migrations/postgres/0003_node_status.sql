-- The last report of each node's agent: telemetry (when it was last seen, its resources, how its
-- sites are), overwritten at each report. Site phase changes it causes are audited on the sites.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE node_status (
    node_id     UUID PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    reported_at TIMESTAMPTZ NOT NULL,
    report      JSONB NOT NULL
);
