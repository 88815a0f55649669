-- Signing keys rotate: a key is published (in the JWKS) from its creation, signs from
-- activates_at (a day later, by default, so every verifier has fetched it first), and is retired
-- once the last token it signed has expired: no longer published nor accepted, and its private
-- half erased. Existing keys signed from their creation.
-- Kept in step with ../sqlite/0016_signing_key_rotation.sql.

ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retired_at BIGINT;
UPDATE signing_keys SET activates_at = created_at;
