-- Remote integrations: instead of signing a token, coreauth asks the portal's own API for one
-- (Qrvey mints its composer tokens from a server-side call with the customer's API key). Their
-- `algorithm` is 'remote', `remote` holds the endpoint as JSON (URL, API key header, timeout,
-- where the token and its expiry are in the answer), `secret` the sealed API key, and they have
-- no audience or issuer. SQLite cannot alter a CHECK or drop a NOT NULL, so the table is rebuilt
-- (nothing references it, and it has no trigger or index of its own).
-- Kept in step with ../postgres/0019_remote_integrations.sql.

CREATE TABLE integrations_0019 (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('HS256', 'EdDSA', 'remote')),
    -- HS256: the shared secret; remote: the API key; sealed like TOTP secrets
    secret TEXT,
    audience TEXT,
    issuer TEXT,
    lifetime_secs INTEGER NOT NULL,
    claims TEXT NOT NULL,
    custom_claims TEXT NOT NULL,
    allow_api_keys INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    remote TEXT,
    PRIMARY KEY (org_id, name),
    CONSTRAINT integrations_kind_check CHECK (
        (algorithm = 'remote' AND remote IS NOT NULL AND audience IS NULL)
        OR (algorithm <> 'remote' AND remote IS NULL AND audience IS NOT NULL)
    )
);

INSERT INTO integrations_0019 (org_id, name, algorithm, secret, audience, issuer, lifetime_secs,
    claims, custom_claims, allow_api_keys, updated_at)
SELECT org_id, name, algorithm, secret, audience, issuer, lifetime_secs, claims, custom_claims,
    allow_api_keys, updated_at
FROM integrations;

DROP TABLE integrations;

ALTER TABLE integrations_0019 RENAME TO integrations;
