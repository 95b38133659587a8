-- OpenID Connect: sign-ins in progress (one-time, short-lived: the state's hash, the nonce
-- and the PKCE verifier), and accounts at identity providers linked to members by issuer and
-- subject.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE oidc_logins (
    state_hash    TEXT PRIMARY KEY NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);

CREATE TABLE identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    member_id  BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
