-- Overload protection: each site's admission settings, and the key that signs its visitors'
-- passes (sealed with the panel's secrets key; the same on every node the site runs on).
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN admission_policy JSONB NOT NULL DEFAULT '{"enabled":true}';

CREATE TABLE admission_keys (
    site_id    UUID PRIMARY KEY NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    sealed     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
