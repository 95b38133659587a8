-- Volumes to remove from their node: a deleted site keeps its volume (a deletion can be undone
-- by an admin) until it is purged. Keep in step with the other dialect's file of the same name.

CREATE TABLE volume_purges (
    site_id      BLOB PRIMARY KEY NOT NULL,
    node_id      BLOB NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    requested_at TEXT NOT NULL
);
CREATE INDEX volume_purges_node_idx ON volume_purges (node_id);
