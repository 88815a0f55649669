-- The audit trail: one row per security event, written in the same transaction as the change
-- it describes. Never holds a secret.

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    reason TEXT,
    org_id INTEGER,
    actor_user_id INTEGER,
    subject_user_id INTEGER,
    subject TEXT,
    address TEXT,
    user_agent TEXT,
    client TEXT,
    request_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_org ON audit_events (org_id, id);
CREATE INDEX audit_events_by_actor ON audit_events (actor_user_id, id);
CREATE INDEX audit_events_by_subject ON audit_events (subject_user_id, id);
CREATE INDEX audit_events_by_time ON audit_events (occurred_at);

-- The addresses each API key has been used from, so a first use from a new one is an event.
CREATE TABLE api_key_addresses (
    key_id INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, address)
);
