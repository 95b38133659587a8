-- The audit record becomes a hash chain (docs/ARCHITECTURE.md, "Audit"). Each event keeps the
-- exact text that was hashed (RFC 8785 JSON naming its position and the previous hash), its
-- position and its hash. Events recorded before this migration are chained, in their order,
-- when the panel next opens the database.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE audit_events ADD COLUMN chain_index BIGINT;
ALTER TABLE audit_events ADD COLUMN canonical TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_chain_index_key ON audit_events (chain_index);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_actor_idx ON audit_events (actor);

-- The chain's head: one row, which every append reads and moves. On PostgreSQL appends lock it
-- (SELECT ... FOR UPDATE) so that concurrent writers never fork the chain; on SQLite every
-- write transaction is already exclusive.
CREATE TABLE audit_chain (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    length BIGINT NOT NULL,
    head   TEXT
);
INSERT INTO audit_chain (id, length, head) VALUES (1, 0, NULL);

-- Signed checkpoints of the chain's head (Ed25519), as the panel made them.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    length     BIGINT NOT NULL,
    head       TEXT,
    at         TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL
);

-- The public keys that sign checkpoints, published with their lifetimes.
CREATE TABLE audit_keys (
    key_id     TEXT PRIMARY KEY NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
);
