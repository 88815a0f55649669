//! The store's mail traits: the outgoing queue (`MailStore`, worked by `domain::mail::delivery`)
//! and what mail is about (`EmailStore`: invitations, one-time tokens, requests for messages, an
//! org's mail settings). Implemented once for both databases in `sql/mail.rs` and `sql/email.rs`.

use async_trait::async_trait;

use super::StoreResult;
use super::records::{
    EmailSettings, EmailTemplate, EmailTokenRecord, InvitationRecord, Joining, MailQueueCounts,
    MailRequestRecord, NewAuditEvent, NewEmailToken, NewInvitation, NewMail, QueuedMail,
};

/// The outgoing mail queue. Messages are mostly queued by the change they announce, in its
/// transaction (`sql::insert_mail`); a worker on each instance takes what is due and sends it.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Queues one message on its own.
    async fn queue_mail(&self, mail: &NewMail) -> StoreResult<()>;

    /// Takes up to `limit` messages due at `now` (not sent, not given up, not held by another
    /// worker), holding them until `lease_until`: no other worker takes them meanwhile, and a
    /// worker that dies leaves them to be taken again when the lease runs out.
    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>>;

    /// Sent: the sealed message is erased; the row stays, for the counts, until pruned.
    async fn mail_sent(&self, id: i64, now: i64) -> StoreResult<()>;

    /// An attempt failed: tried again at `retry_at`, or given up when it is `None`. `error`
    /// says what failed (never the message).
    async fn mail_failed(
        &self,
        id: i64,
        error: &str,
        now: i64,
        retry_at: Option<i64>,
    ) -> StoreResult<()>;

    async fn mail_counts(&self) -> StoreResult<MailQueueCounts>;

    /// Deletes messages sent or given up before `before`.
    async fn prune_mail(&self, before: i64) -> StoreResult<u64>;
}

/// Invitations, the one-time tokens of mailed links, and each org's mail settings.
#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Stores a token with the message carrying it, in one transaction: older unused tokens
    /// of the same purpose for the same user or invitation are superseded (an invitation's
    /// expiry becomes the new token's), `mail` is queued and `audit` written.
    async fn create_email_token(
        &self,
        token: &NewEmailToken,
        mail: &NewMail,
        fulfils: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Accepts a request for a message (`MailRequestRecord::id` is ignored): one insert, the
    /// same whatever the address.
    async fn queue_mail_request(&self, request: &MailRequestRecord) -> StoreResult<()>;

    /// Takes up to `limit` requests of `kind` not held by another worker, until `lease_until`.
    async fn claim_mail_requests(
        &self,
        kind: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<MailRequestRecord>>;

    /// The token with this SHA-256, whatever its state.
    async fn email_token(&self, token_hash: &[u8]) -> StoreResult<Option<EmailTokenRecord>>;

    /// Records a request for a message with the message if there is one (none: an unknown
    /// address), in one transaction, as a request that makes a token is recorded. `fulfils`,
    /// here and in `create_email_token`: the accepted request (`mail_requests`) this carries
    /// out, deleted in the same transaction so that it is carried out once.
    async fn record_mail_request(
        &self,
        mail: Option<&NewMail>,
        fulfils: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Creates an invitation, its token and its message, in one transaction.
    async fn create_invitation(
        &self,
        invitation: &NewInvitation,
        token: &NewEmailToken,
        mail: &NewMail,
        audit: &NewAuditEvent,
    ) -> StoreResult<InvitationRecord>;

    async fn invitations_of(&self, org_id: i64) -> StoreResult<Vec<InvitationRecord>>;

    async fn invitation(
        &self,
        org_id: i64,
        public_id: &str,
    ) -> StoreResult<Option<InvitationRecord>>;

    async fn invitation_by_id(&self, id: i64) -> StoreResult<Option<InvitationRecord>>;

    /// The newest invitation of `email_key` to `org_id` still open at `now`.
    async fn open_invitation(
        &self,
        org_id: i64,
        email_key: &str,
        now: i64,
    ) -> StoreResult<Option<InvitationRecord>>;

    /// Revokes an open invitation (its tokens die with it); false when none was open.
    async fn revoke_invitation(
        &self,
        org_id: i64,
        public_id: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Accepts invitation `invitation_id`, in one transaction: with its link's token
    /// `token_hash` used (refused with `Conflict` when it is no longer usable), or with none
    /// through the org's single sign-on; the invitation marked accepted and its other links
    /// dead; the user created (with the SSO identity it came with, linked) or the membership
    /// added. The user's id.
    async fn accept_invitation(
        &self,
        token_hash: Option<&[u8]>,
        invitation_id: i64,
        joining: Joining,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<i64>;

    /// Marks the address `email_key` of `user_id` verified with the token, in one transaction
    /// (`Conflict` when the token is no longer usable or the address changed).
    async fn verify_email(
        &self,
        token_hash: &[u8],
        user_id: i64,
        email_key: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    async fn email_settings(&self, org_id: i64) -> StoreResult<EmailSettings>;

    async fn set_email_settings(
        &self,
        org_id: i64,
        settings: &EmailSettings,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    async fn email_templates(&self, org_id: i64) -> StoreResult<Vec<EmailTemplate>>;

    /// Sets (or with `None`, removes) the org's template of `kind`.
    async fn set_email_template(
        &self,
        org_id: i64,
        kind: &str,
        template: Option<&EmailTemplate>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
}
