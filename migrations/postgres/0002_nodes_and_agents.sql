-- Node agents: the port a site serves HTTP on, a desired-state generation per node (bumped in
-- the same transaction as every change to the node's sites), join tokens and agent credentials.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN http_port BIGINT NOT NULL DEFAULT 8080;
ALTER TABLE nodes ADD COLUMN desired_generation BIGINT NOT NULL DEFAULT 0;

-- One-time tokens that let a node's agent enrol; stored as SHA-256.
CREATE TABLE node_join_tokens (
    token_hash TEXT PRIMARY KEY,
    node_id    UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The credential an enrolled agent presents; one per node, replaced by a new enrolment.
CREATE TABLE node_credentials (
    node_id    UUID PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT node_credentials_token_key UNIQUE (token_hash)
);
