-- What reaches a site besides HTTP: extra ports of its dedicated address forwarded to its
-- container, and the limit tier that bounds its connections in the node's packet filter.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN exposed_ports JSONB NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN limit_tier TEXT NOT NULL DEFAULT 'standard'
    CHECK (limit_tier IN ('small', 'standard', 'large'));
