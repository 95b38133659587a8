-- What each node is made of (operating system, kernel, engine, packages), as its agent last
-- sent it (at start, then hourly), for the platform inventory.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE node_inventory (
    node_id     UUID PRIMARY KEY NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    reported_at TIMESTAMPTZ NOT NULL,
    inventory   JSONB NOT NULL
);
