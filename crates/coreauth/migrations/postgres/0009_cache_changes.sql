-- Instances sharing this database keep what authenticating a request reads (sessions, API keys,
-- member profiles) in memory. Every change to those rows, made by any instance or by hand, is
-- announced at commit on the channel `coreauth_cache`, and each instance forgets its copies
-- (`store::pg_changes`). Payloads: `s:<session id>`, `u:<user id>`, `o:<org id>`.
--
-- Left out on purpose: renewal counts and token expiry on sessions, and API key usage. They
-- decide nothing a copy is used for, and are written all the time. A column that the cached
-- reads depend on must be listed in its table's WHEN clause below.
-- Kept in step with ../sqlite/0009_cache_changes.sql, which has nothing to do.

CREATE FUNCTION coreauth_cache_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    PERFORM pg_notify('coreauth_cache', TG_ARGV[0] || ':' || (changed ->> TG_ARGV[1]));
    RETURN NULL;
END
$$;

CREATE TRIGGER users_cache AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('u', 'id');

-- A new row needs no notice: nothing is cached for what is absent (a lookup that finds no
-- membership, session or key keeps nothing), and bulk loads stay quiet.
CREATE TRIGGER memberships_cache AFTER UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');

CREATE TRIGGER sessions_cache AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.org_id, OLD.expires_at, OLD.revoked_at, OLD.restriction)
        IS DISTINCT FROM (NEW.user_id, NEW.org_id, NEW.expires_at, NEW.revoked_at, NEW.restriction))
    EXECUTE FUNCTION coreauth_cache_changed('s', 'id');

CREATE TRIGGER sessions_cache_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('s', 'id');

CREATE TRIGGER api_keys_cache AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.org_id, OLD.key_hash, OLD.name, OLD.read_only, OLD.expires_at)
        IS DISTINCT FROM (NEW.user_id, NEW.org_id, NEW.key_hash, NEW.name, NEW.read_only, NEW.expires_at))
    EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');

CREATE TRIGGER api_keys_cache_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');

CREATE TRIGGER mfa_totp_cache AFTER UPDATE ON mfa_totp
    FOR EACH ROW
    WHEN ((OLD.secret, OLD.confirmed_at) IS DISTINCT FROM (NEW.secret, NEW.confirmed_at))
    EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');

CREATE TRIGGER mfa_totp_cache_added_or_deleted AFTER INSERT OR DELETE ON mfa_totp
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');

CREATE TRIGGER password_policies_cache AFTER INSERT OR UPDATE OR DELETE ON password_policies
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('o', 'org_id');

CREATE TRIGGER orgs_cache AFTER UPDATE OR DELETE ON orgs
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('o', 'id');

CREATE TRIGGER org_email_domains_cache AFTER INSERT OR UPDATE OR DELETE ON org_email_domains
    FOR EACH ROW EXECUTE FUNCTION coreauth_cache_changed('o', 'org_id');
