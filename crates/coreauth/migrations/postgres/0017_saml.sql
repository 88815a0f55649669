-- SAML 2.0 connections beside OpenID Connect ones: a connection with `saml` set (JSON: the IdP's
-- entity id, single sign-on URL and signing certificates, which signatures are required, the
-- clock skew) speaks SAML, and its `issuer` is the IdP's entity id; its client id and secret
-- are empty. Assertion ids already consumed are kept until they expire, so that a response
-- replayed to any instance is refused.
-- Kept in step with ../sqlite/0017_saml.sql.

ALTER TABLE sso_connections ADD COLUMN saml TEXT;

CREATE TABLE saml_assertions_seen (
    issuer TEXT NOT NULL,
    assertion_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, assertion_id)
);
CREATE INDEX saml_assertions_seen_by_expiry ON saml_assertions_seen (expires_at);
