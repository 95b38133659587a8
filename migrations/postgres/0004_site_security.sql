-- Optional hardening per site: a read-only root file system and the user the container runs as.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN read_only_root BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sites ADD COLUMN run_as_user TEXT;
