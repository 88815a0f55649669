-- Attempt counters for throttling (per account, per address), shared by every instance on the
-- same database. A row counts the attempts in its current window. Kept in step with
-- ../sqlite/0007_throttle.sql.

CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    attempts BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
CREATE INDEX throttle_by_window ON throttle (window_start);
