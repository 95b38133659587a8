-- Offboarding: a disabled member's tokens and sessions end, and their sites are stopped or
-- handed to another member.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE members ADD COLUMN disabled_at TIMESTAMPTZ;
