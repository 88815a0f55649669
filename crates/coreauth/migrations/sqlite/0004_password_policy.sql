-- Per-org password policy (no row: the defaults) and each user's previous password hashes.

CREATE TABLE password_policies (
    org_id INTEGER PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    min_length INTEGER NOT NULL,
    max_age_days INTEGER NOT NULL,
    history_count INTEGER NOT NULL,
    reject_common INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE password_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    password_hash TEXT NOT NULL,
    set_at INTEGER NOT NULL
);
CREATE INDEX password_history_by_user ON password_history (user_id, id);
