-- Sign-ons coreauth starts for its own surfaces: where the callback hands the session. `docs`: the
-- API documentation's cookie; `device:<id>`: the device (a CLI) polling for it. Null: the
-- caller's `returnTo` or JSON, as before.
-- Kept in step with ../sqlite/0015_sso_hand_off.sql.

ALTER TABLE sso_logins ADD COLUMN hand_off TEXT;

-- A device sign-in: a CLI asked for it and polls with its device code (kept as its SHA-256);
-- the person confirms it in a browser with the short user code (the same), then signs in at the
-- org's provider; the session waits here, sealed, until the device takes it, once.
CREATE TABLE sso_devices (
    id TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    org_id BIGINT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    connection_id BIGINT NOT NULL,
    client TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    sealed_session TEXT,
    -- the refusal's code, when the sign-in at the provider was refused
    refusal TEXT,
    taken_at BIGINT
);
CREATE INDEX sso_devices_by_expiry ON sso_devices (expires_at);
