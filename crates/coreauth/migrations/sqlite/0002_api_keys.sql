-- API keys ("auth headers"): stored only as the SHA-256 of the full key.

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    -- the first characters of the key, shown in lists so a person can recognise it
    prefix TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    read_only INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    last_used_address TEXT
);
CREATE INDEX api_keys_by_owner ON api_keys (user_id, org_id);
CREATE INDEX api_keys_by_org ON api_keys (org_id);
