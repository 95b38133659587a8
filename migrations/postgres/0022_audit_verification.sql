-- The last check of the audit record, so that pages show it without checking again, and the
-- next check starts where this one stopped. One row.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE audit_verification (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    point JSONB NOT NULL
);
