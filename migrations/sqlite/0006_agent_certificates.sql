-- Agents authenticate with client certificates from the panel's CA instead of bearer
-- credentials. The panel keeps the SHA-256 of each node's agent public key (DER
-- SubjectPublicKeyInfo): a certificate counts only while its key is the one on record, so
-- revoking is deleting the row. Agents enrolled with a bearer credential enrol again.
-- Keep in step with the other dialect's file of the same name.

DROP TABLE node_credentials;

CREATE TABLE node_agent_keys (
    node_id    BLOB PRIMARY KEY NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    key_hash   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT node_agent_keys_key_hash_key UNIQUE (key_hash)
);
