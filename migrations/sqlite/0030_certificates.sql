-- HTTPS: each site's settings and certificate, the ACME account, the answers to challenges
-- while orders run, and what the rate limits count.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN https_policy TEXT NOT NULL
    DEFAULT '{"acme":true,"redirect":true,"hsts_seconds":0}';

-- The certificate a site is served with: from the co-op's ACME CA or its member's own. The
-- key is sealed with the panel's secrets key.
CREATE TABLE site_certificates (
    site_id     BLOB PRIMARY KEY NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    source      TEXT NOT NULL CHECK (source IN ('acme', 'uploaded')),
    chain_pem   TEXT NOT NULL,
    key_sealed  TEXT NOT NULL,
    names       TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    -- When the next order is due (ACME only), and when the CA's renewal information is
    -- asked for again.
    renew_at    TEXT,
    ari_next    TEXT
);

-- What ACME last did for a site: the last error (a failed order, a name that points
-- elsewhere), failures in a row, when it is tried again, its last renewal.
CREATE TABLE acme_status (
    site_id     BLOB PRIMARY KEY NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    last_error  TEXT,
    error_at    TEXT,
    failures    INTEGER NOT NULL,
    retry_at    TEXT,
    renewed_at  TEXT
);

-- Answers to HTTP-01 challenges, served by the site's node while the order runs.
CREATE TABLE acme_challenges (
    token             TEXT PRIMARY KEY NOT NULL,
    site_id           BLOB NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    key_authorization TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX acme_challenges_site ON acme_challenges (site_id);

-- The co-op's account at each CA (its credentials sealed), and until when the CA asked
-- (429, Retry-After) to be left alone.
CREATE TABLE acme_accounts (
    directory     TEXT PRIMARY KEY NOT NULL,
    sealed        TEXT NOT NULL,
    backoff_until TEXT,
    created_at    TEXT NOT NULL
);

-- What the CA's limits count: orders ('order', the account), certificates ('issued', per
-- registered domain), failed validations ('failed', per name). Kept a week.
CREATE TABLE acme_events (
    kind TEXT NOT NULL CHECK (kind IN ('order', 'issued', 'failed')),
    key  TEXT NOT NULL,
    at   TEXT NOT NULL
);
CREATE INDEX acme_events_at ON acme_events (kind, at);
