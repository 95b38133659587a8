-- What each node is made of (operating system, kernel, engine, packages), as its agent last
-- sent it (at start, then hourly), for the platform inventory.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE node_inventory (
    node_id     BLOB PRIMARY KEY NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    reported_at TEXT NOT NULL,
    inventory   TEXT NOT NULL
);
