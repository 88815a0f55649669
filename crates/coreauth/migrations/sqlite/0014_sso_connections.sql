-- Several SSO connections per org, each with its own claim mapping and domains, and the email
-- domains an org claims, which count (strategy discovery, linking, account creation) only once
-- verified: by a DNS TXT record `coreauth-verification=<token>` or by a platform admin.
-- Kept in step with ../postgres/0014_sso_connections.sql.

CREATE TABLE domain_claims (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    -- the value the org publishes (not a secret: DNS is public), its own for each claim
    token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    verified_at INTEGER,
    -- 'dns' or 'platform-admin'
    verified_by TEXT,
    PRIMARY KEY (org_id, domain)
);
-- Any number of orgs may claim a domain; one may have it verified.
CREATE UNIQUE INDEX domain_claims_verified ON domain_claims (domain) WHERE verified_at IS NOT NULL;

CREATE TABLE sso_connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    preset TEXT NOT NULL,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- sealed like TOTP secrets, never shown again
    client_secret TEXT NOT NULL,
    -- JSON: which claims hold the email and groups, groups -> role
    claim_mapping TEXT NOT NULL,
    allow_jit INTEGER NOT NULL,
    allow_password INTEGER NOT NULL,
    redirect_allow_list TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX sso_connections_by_org ON sso_connections (org_id);

-- A domain signs in through one connection of its org.
CREATE TABLE sso_connection_domains (
    connection_id INTEGER NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    PRIMARY KEY (connection_id, domain),
    UNIQUE (org_id, domain)
);
CREATE INDEX sso_connection_domains_by_domain ON sso_connection_domains (domain);

-- Each org's settings become its connection "default"; its verified domains verified claims
-- (a platform admin set or approved them), its pending ones pending claims.
INSERT INTO sso_connections (org_id, name, preset, issuer, client_id, client_secret,
    claim_mapping, allow_jit, allow_password, redirect_allow_list, created_at, updated_at)
SELECT org_id, 'default', 'generic', issuer, client_id, client_secret,
    '{"emailClaims":["email"],"trustUnverifiedEmail":false,"groupsClaim":null,"roleMapping":{},"defaultRole":"member"}',
    allow_jit, allow_password, redirect_allow_list, updated_at, updated_at
FROM sso_configs;

INSERT INTO domain_claims (org_id, domain, token, created_at, verified_at, verified_by)
SELECT org_id, domain, lower(hex(randomblob(16))), 0, 0, 'platform-admin' FROM sso_domains;

INSERT INTO domain_claims (org_id, domain, token, created_at)
SELECT c.org_id, p.value, lower(hex(randomblob(16))), c.updated_at
FROM sso_configs c, json_each(c.pending_domains) p
WHERE true
ON CONFLICT DO NOTHING;

INSERT INTO sso_connection_domains (connection_id, org_id, domain)
SELECT s.id, d.org_id, d.domain FROM domain_claims d JOIN sso_connections s ON s.org_id = d.org_id;

-- Sign-ons in flight live ten minutes: those started before this change are dropped.
DELETE FROM sso_logins;
ALTER TABLE sso_logins ADD COLUMN connection_id INTEGER NOT NULL DEFAULT 0;

DROP TABLE sso_domains;
DROP TABLE sso_configs;
