-- Attempt counters for throttling (per account, per address), shared by every instance on the
-- same database. A row counts the attempts in its current window.

CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);
CREATE INDEX throttle_by_window ON throttle (window_start);
