-- Single sign-on through an org's OpenID Connect provider.

CREATE TABLE sso_configs (
    org_id INTEGER PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- sealed like TOTP secrets, never shown again
    client_secret TEXT NOT NULL,
    allow_jit INTEGER NOT NULL,
    allow_password INTEGER NOT NULL,
    redirect_allow_list TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- An email domain signs in through at most one org's provider.
CREATE TABLE sso_domains (
    domain TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE
);
CREATE INDEX sso_domains_by_org ON sso_domains (org_id);

-- A login in flight: state, nonce and PKCE verifier, single use, short-lived.
CREATE TABLE sso_logins (
    state TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT,
    client TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX sso_logins_by_expiry ON sso_logins (expires_at);
