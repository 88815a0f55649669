-- Machine identities: usernames, service accounts, scoped API keys that rotate with an overlap.
-- Kept in step with ../sqlite/0018_machine_identities.sql.

-- An optional login name besides the email (seed 004's `john.doe`), unique without regard to
-- case like emails: `username_key` is its lower-cased form. It never contains `@`, so a login
-- name is an email or a username and never both.
ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_by_username ON users (username_key);

-- A service account is a user of kind 'service' that lives in one org (its home org, with the
-- role of its membership there) and acts only through API keys: no email, password, username,
-- session or second factor. Its `email_key` is 'service:' || uuid, which no address parses to.
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person'
    CHECK (kind IN ('person', 'service'));
CREATE INDEX users_service_accounts ON users (home_org_id) WHERE kind = 'service';

-- Scopes, space-separated. A read-only key had `read`; any other key could do everything its
-- owner's role allowed, which is every scope there was.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
UPDATE api_keys SET scopes = CASE WHEN read_only THEN 'read' ELSE 'keys:read keys:write users:read users:write org:read org:write audit:read tokens:introspect integrations:mint' END;

-- A rotation: the key that replaced this one (its public id) and when. The old key's
-- `expires_at` is brought forward to the end of the overlap at the same moment.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;
ALTER TABLE api_keys ADD COLUMN replaced_at BIGINT;

-- The cache keeps each key's scopes and expiry (0009): its notice now watches scopes, not
-- read_only, which goes.
DROP TRIGGER api_keys_cache ON api_keys;
ALTER TABLE api_keys DROP COLUMN read_only;
CREATE TRIGGER api_keys_cache AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.org_id, OLD.key_hash, OLD.name, OLD.scopes, OLD.expires_at)
        IS DISTINCT FROM (NEW.user_id, NEW.org_id, NEW.key_hash, NEW.name, NEW.scopes, NEW.expires_at))
    EXECUTE FUNCTION coreauth_cache_changed('u', 'user_id');
