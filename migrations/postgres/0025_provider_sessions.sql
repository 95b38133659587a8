-- A member's session opened through the identity provider remembers which account at which
-- provider it belongs to, the provider's own session id (`sid`) and the ID token (sealed with
-- the secrets key): signing out sends the token back as `id_token_hint`, and the provider's
-- back-channel logout ends the sessions of an account or of one provider session.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sessions ADD COLUMN oidc_issuer TEXT;
ALTER TABLE sessions ADD COLUMN oidc_subject TEXT;
ALTER TABLE sessions ADD COLUMN oidc_sid TEXT;
ALTER TABLE sessions ADD COLUMN oidc_id_token TEXT;
CREATE INDEX sessions_oidc_subject ON sessions (oidc_issuer, oidc_subject);
