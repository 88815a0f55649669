-- TOTP second factor. The secret is sealed (ChaCha20-Poly1305) with a key kept outside the
-- database; recovery codes are stored as SHA-256 hashes.

CREATE TABLE mfa_totp (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    -- the newest time step accepted: a code is never accepted twice (RFC 6238 §5.2)
    last_used_step INTEGER
);

CREATE TABLE mfa_recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    code_hash BLOB NOT NULL,
    used_at INTEGER
);
CREATE INDEX mfa_recovery_codes_by_user ON mfa_recovery_codes (user_id);

-- An org may require every member to use a second factor.
ALTER TABLE password_policies ADD COLUMN require_mfa INTEGER NOT NULL DEFAULT 0;

-- A session opened before its user enrolled in a required second factor can only enrol.
ALTER TABLE sessions ADD COLUMN restriction TEXT;
