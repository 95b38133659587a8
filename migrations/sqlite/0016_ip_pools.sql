-- The co-op's addresses: pools of prefixes at providers, and addresses allocated from them to
-- nodes (and maybe dedicated to a site). An address is allocated once: its canonical text is
-- the primary key.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE ip_pools (
    id          BLOB PRIMARY KEY NOT NULL,
    provider_id BLOB NOT NULL REFERENCES providers (id),
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CONSTRAINT ip_pools_prefix_key UNIQUE (prefix)
);

CREATE TABLE ip_allocations (
    address    TEXT PRIMARY KEY NOT NULL,
    pool_id    BLOB NOT NULL REFERENCES ip_pools (id),
    node_id    BLOB NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    site_id    BLOB REFERENCES sites (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ip_allocations_pool_idx ON ip_allocations (pool_id);
