-- Remote integrations: instead of signing a token, coreauth asks the portal's own API for one
-- (Qrvey mints its composer tokens from a server-side call with the customer's API key). Their
-- `algorithm` is 'remote', `remote` holds the endpoint as JSON held as TEXT (URL, API key
-- header, timeout, where the token and its expiry are in the answer), `secret` the sealed API
-- key, and they have no audience or issuer.
-- Kept in step with ../sqlite/0019_remote_integrations.sql (which rebuilds the table: SQLite
-- cannot alter a CHECK).

ALTER TABLE integrations DROP CONSTRAINT integrations_algorithm_check;
ALTER TABLE integrations ADD CONSTRAINT integrations_algorithm_check
    CHECK (algorithm IN ('HS256', 'EdDSA', 'remote'));
ALTER TABLE integrations ALTER COLUMN audience DROP NOT NULL;
ALTER TABLE integrations ADD COLUMN remote TEXT;
ALTER TABLE integrations ADD CONSTRAINT integrations_kind_check CHECK (
    (algorithm = 'remote' AND remote IS NOT NULL AND audience IS NULL)
    OR (algorithm <> 'remote' AND remote IS NULL AND audience IS NOT NULL)
);
