-- Nothing to do on SQLite: kept in step with ../postgres/0010_sso_cache_changes.sql (see
-- 0009_cache_changes.sql for why).
SELECT 1;
