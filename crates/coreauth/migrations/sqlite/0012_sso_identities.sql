-- Accounts are linked to an org's identity provider by the provider's `(issuer, subject)`, never
-- by email alone: a callback finds the account through its link, and an existing account gets a
-- link only when its owner proves it (signs in with its password and starts the sign-on from
-- that session) or when the sign-on created it.
-- Kept in step with ../postgres/0012_sso_identities.sql.

CREATE TABLE sso_identities (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, issuer, subject)
);
CREATE INDEX sso_identities_by_user ON sso_identities (user_id);

-- The user who started a sign-on to link their account (from a password session).
ALTER TABLE sso_logins ADD COLUMN link_user_id INTEGER;

-- Email domains an org admin asked for that are not verified yet (a JSON array): they do
-- nothing until a platform admin sets them. Verified ones stay in sso_domains.
ALTER TABLE sso_configs ADD COLUMN pending_domains TEXT NOT NULL DEFAULT '[]';
