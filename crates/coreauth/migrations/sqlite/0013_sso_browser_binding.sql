-- A sign-on in flight is bound to the browser that started it: the SHA-256 (hex) of a secret
-- set in an HttpOnly cookie at /sso/start, which the callback must present. Null for a sign-on
-- started to link an account, which is bound to that account instead.
-- Kept in step with ../postgres/0013_sso_browser_binding.sql.

ALTER TABLE sso_logins ADD COLUMN browser_binding TEXT;
