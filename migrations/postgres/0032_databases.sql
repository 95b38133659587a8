-- A site's databases: what each is (engine, version, limits, quota) and its passwords, sealed
-- with the panel's secrets key, in one JSON list beside the site's other settings.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN databases JSONB NOT NULL DEFAULT '[]';
