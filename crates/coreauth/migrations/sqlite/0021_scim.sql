-- SCIM 2.0 provisioning (RFC 7643/7644): an org's directory (Entra ID, Okta) adds, changes and
-- removes the org's people and groups through /scim/v2, with a bearer token of the org.
-- Kept in step with ../postgres/0021_scim.sql.

-- The tokens a directory presents: shown once, kept as their SHA-256, revoked by deletion.
CREATE TABLE scim_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_by INTEGER,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX scim_tokens_by_org ON scim_tokens (org_id);

-- What the directory said about a member beyond the account's own fields and the membership:
-- its externalId and the rest of the resource as given (title, phone numbers, the enterprise
-- extension), returned as it was written. `version` makes the resource's ETag.
CREATE TABLE scim_users (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    external_id TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX scim_users_by_external_id ON scim_users (org_id, external_id);

-- The directory's groups, each org's own; their names are unique within it regardless of case.
CREATE TABLE scim_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    display_name_key TEXT NOT NULL,
    external_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX scim_groups_by_name ON scim_groups (org_id, display_name_key);

CREATE TABLE scim_group_members (
    group_id INTEGER NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_by_user ON scim_group_members (user_id);

-- Which role a group gives in the org: matched against a SCIM group's displayName or
-- externalId, and against the groups an SSO provider asserts when the connection maps none of
-- its own. A member in several mapped groups gets the highest role.
CREATE TABLE group_roles (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    PRIMARY KEY (org_id, group_name)
);
