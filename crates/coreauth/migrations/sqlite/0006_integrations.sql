-- Integration tokens ("JWT SSO" hand-offs to third-party portals), configured per org.

CREATE TABLE integrations (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('HS256', 'EdDSA')),
    -- HS256 only: the shared secret, sealed like TOTP secrets
    secret TEXT,
    audience TEXT NOT NULL,
    issuer TEXT,
    lifetime_secs INTEGER NOT NULL,
    claims TEXT NOT NULL,
    custom_claims TEXT NOT NULL,
    allow_api_keys INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);
