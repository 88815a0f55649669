-- Nothing to do on SQLite: kept in step with ../postgres/0009_cache_changes.sql, whose triggers
-- tell instances sharing a PostgreSQL database what to forget. An SQLite database has one
-- instance, and a write by another process on the file is noticed through `PRAGMA data_version`.
SELECT 1;
