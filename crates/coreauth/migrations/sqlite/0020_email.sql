-- Email: the outgoing queue, the one-time tokens of the links mails carry, invitations, each
-- org's templates and sender, and whether an address is verified.
-- Kept in step with ../postgres/0020_email.sql.

-- Each message is queued in the transaction of what it announces, and sent after by a worker,
-- so a message is neither lost when the process dies before sending nor sent for a change that
-- did not happen. Its subject and bodies are sealed (its link carries a one-time token) and
-- emptied once it is sent.
CREATE TABLE mail_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- the message's Message-ID, and what its seal is bound to
    public_id TEXT NOT NULL UNIQUE,
    org_id INTEGER,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- a worker holds what it took until then; one that dies leaves it to be taken again
    leased_until INTEGER,
    sent_at INTEGER,
    -- given up after the last attempt
    failed_at INTEGER,
    last_error TEXT
);
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- Requests whose answer must not depend on the address (a forgotten password, a new
-- verification link): written as they are accepted, the same row for every address, and turned
-- into a token and a message (or nothing, for an unknown address) by a worker, each in the
-- transaction that deletes it. A request accepted before a crash is carried out after it.
CREATE TABLE mail_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('password_reset', 'email_verification')),
    email TEXT NOT NULL,
    address TEXT,
    user_agent TEXT,
    request_id TEXT,
    created_at INTEGER NOT NULL,
    leased_until INTEGER
);

-- Invitations to an org, by address: accepted once, revocable, expiring.
CREATE TABLE invitations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    invited_by INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    accepted_at INTEGER,
    accepted_by INTEGER,
    revoked_at INTEGER
);
CREATE INDEX invitations_by_org ON invitations (org_id, id);
CREATE INDEX invitations_by_email ON invitations (email_key);

-- The tokens of mailed links, stored as SHA-256: used once, dead after expires_at, and
-- superseded by a newer token of the same purpose for the same user or invitation.
CREATE TABLE email_tokens (
    token_hash BLOB PRIMARY KEY,
    purpose TEXT NOT NULL
        CHECK (purpose IN ('password_reset', 'email_verification', 'invitation')),
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    invitation_id INTEGER REFERENCES invitations (id) ON DELETE CASCADE,
    -- the address a verification token proves
    email_key TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    superseded_at INTEGER
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_by_invitation ON email_tokens (invitation_id);

-- Per org: the sender's display name and reply-to address, and templates replacing the
-- built-in ones (no row: the defaults).
CREATE TABLE email_settings (
    org_id INTEGER PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    from_name TEXT,
    reply_to TEXT,
    updated_at INTEGER NOT NULL
);
CREATE TABLE email_templates (
    org_id INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, kind)
);

-- When the address was proven (a link followed, or SSO that vouches for it); null: unproven.
-- Addresses from before are unproven too: nothing ever proved them.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
-- An org may refuse logins until the address is proven.
ALTER TABLE password_policies ADD COLUMN require_verified_email INTEGER NOT NULL DEFAULT 0;
