-- API tokens for the CLI and automation: each belongs to a member and acts with the member's
-- role, read-only or full, until it expires or is revoked. Stored as SHA-256; shown once.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE api_tokens (
    id         UUID PRIMARY KEY NOT NULL,
    member_id  UUID NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('read', 'full')),
    token_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX api_tokens_member_idx ON api_tokens (member_id);
