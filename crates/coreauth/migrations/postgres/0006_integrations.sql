-- Integration tokens ("JWT SSO" hand-offs to third-party portals), configured per org. Kept in
-- step with ../sqlite/0006_integrations.sql; `claims` and `custom_claims` are JSON held as TEXT
-- in both.

CREATE TABLE integrations (
    org_id BIGINT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('HS256', 'EdDSA')),
    -- HS256 only: the shared secret, sealed like TOTP secrets
    secret TEXT,
    audience TEXT NOT NULL,
    issuer TEXT,
    lifetime_secs BIGINT NOT NULL,
    claims TEXT NOT NULL,
    custom_claims TEXT NOT NULL,
    allow_api_keys BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);
