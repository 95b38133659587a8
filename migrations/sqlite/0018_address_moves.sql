-- Addresses moving from one node to another (failover). While a row exists neither node holds
-- the address: the old node lets it go first, and the new one takes it once the old one's
-- report shows it gone (or at once when the move is forced, the old node being gone).
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE address_moves (
    address            TEXT PRIMARY KEY NOT NULL
                       REFERENCES ip_allocations (address) ON DELETE CASCADE,
    from_node          BLOB NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    to_node            BLOB NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    release_generation INTEGER NOT NULL,
    forced             BOOLEAN NOT NULL,
    started_at         TEXT NOT NULL,
    last_error         TEXT
);
