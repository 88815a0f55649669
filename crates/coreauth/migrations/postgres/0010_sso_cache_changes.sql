-- Instances also keep each org's SSO configuration in memory (every password login reads it),
-- so a change to it, by any instance or by hand, is announced like the others of 0009:
-- `o:<org id>` on the channel `coreauth_cache`.
-- Kept in step with ../sqlite/0010_sso_cache_changes.sql, which has nothing to do.

CREATE TRIGGER sso_configs_cache AFTER INSERT OR UPDATE OR DELETE ON sso_configs
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('o', 'org_id');

CREATE TRIGGER sso_domains_cache AFTER INSERT OR UPDATE OR DELETE ON sso_domains
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('o', 'org_id');
