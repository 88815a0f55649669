-- A user's home org, the org whose admin (or a platform admin) created the account: account-wide
-- administration (names, deactivation, password, second factor, every session) belongs to its
-- admins and to platform admins. And the org the user last signed in to: a login without
-- selectedOrg opens the home org when that membership is active, else this one.
-- Kept in step with ../postgres/0011_home_org.sql.

ALTER TABLE users ADD COLUMN home_org_id INTEGER;
ALTER TABLE users ADD COLUMN last_org_id INTEGER;

-- Accounts created before: the org of their first membership, the one they were created with
-- (memberships added later have later times).
UPDATE users SET home_org_id = (
    SELECT m.org_id FROM memberships m WHERE m.user_id = users.id
    ORDER BY m.created_at, m.org_id LIMIT 1
);
