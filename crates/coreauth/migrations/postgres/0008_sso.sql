-- Single sign-on through an org's OpenID Connect provider. Kept in step with
-- ../sqlite/0008_sso.sql; `redirect_allow_list` is JSON held as TEXT in both.

CREATE TABLE sso_configs (
    org_id BIGINT PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- sealed like TOTP secrets, never shown again
    client_secret TEXT NOT NULL,
    allow_jit BOOLEAN NOT NULL,
    allow_password BOOLEAN NOT NULL,
    redirect_allow_list TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- An email domain signs in through at most one org's provider.
CREATE TABLE sso_domains (
    domain TEXT PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE
);
CREATE INDEX sso_domains_by_org ON sso_domains (org_id);

-- A login in flight: state, nonce and PKCE verifier, single use, short-lived.
CREATE TABLE sso_logins (
    state TEXT PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT,
    client TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX sso_logins_by_expiry ON sso_logins (expires_at);
