-- Sessions end after a time without use as well as at their absolute end: the panel notes when
-- each was last used (at most once a minute).
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sessions ADD COLUMN last_seen_at TEXT;
