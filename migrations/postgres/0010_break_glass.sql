-- One-time break-glass links: an admin session of limited life when the identity provider is
-- down, made on the panel's host. Stored as SHA-256; each works once, until it expires.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE break_glass_tokens (
    token_hash      TEXT PRIMARY KEY NOT NULL,
    session_seconds BIGINT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
