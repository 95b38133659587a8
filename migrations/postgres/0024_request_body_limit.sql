-- The largest request body a site's traffic may carry through the node's ingress (413 beyond):
-- a site setting, since uploads are legitimate. 64 MiB for the sites there are.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sites ADD COLUMN request_body_bytes BIGINT NOT NULL DEFAULT 67108864;
