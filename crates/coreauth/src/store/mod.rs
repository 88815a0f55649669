//! Storage behind one trait, one implementation per backend. The domain calls these methods and
//! never sees SQL; the store keeps data consistent (one transaction per call) but decides no
//! policy beyond the integrity of what it holds.

use async_trait::async_trait;

use crate::domain::error::DomainResult;
use crate::domain::org::{MembershipPatch, MembershipRecord, OrgRecord, Role};
use crate::domain::session::{SessionContext, SessionRecord};
use crate::domain::tokens::StoredSigningKey;
use crate::domain::user::{NewUser, UserPatch, UserRecord};

pub mod postgres;
pub mod sqlite;

/// What an admin change revoked along with it, for the caller's information.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revoked {
    pub sessions: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> DomainResult<()>;

    async fn signing_keys(&self) -> DomainResult<Vec<StoredSigningKey>>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()>;
    /// Stores `key` only when there is no signing key yet, checked atomically: instances that
    /// start together on an empty database then all read back the same single key, instead of
    /// each signing with its own key that the others have not loaded.
    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()>;

    /// Creates org 1 ("Default") and `admin` as its admin and a platform admin, only when the
    /// database has no user yet (checked in the same transaction). `None` when it had users.
    async fn bootstrap(&self, admin: NewUser, now: i64) -> DomainResult<Option<UserRecord>>;

    async fn user_by_email(&self, email_key: &str) -> DomainResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: i64) -> DomainResult<Option<UserRecord>>;
    /// `Conflict` when the email is taken; `NotFound("org")` for an unknown membership org.
    async fn create_user(&self, user: NewUser) -> DomainResult<UserRecord>;
    /// Deactivating a user revokes all their sessions in the same transaction.
    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
    ) -> DomainResult<Option<(UserRecord, Revoked)>>;

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
    ) -> DomainResult<OrgRecord>;
    async fn org(&self, id: i64) -> DomainResult<Option<OrgRecord>>;

    /// All memberships of a user, active or not, ordered by org id.
    async fn memberships_of(&self, user_id: i64) -> DomainResult<Vec<MembershipRecord>>;
    async fn membership(&self, user_id: i64, org_id: i64)
    -> DomainResult<Option<MembershipRecord>>;
    /// `Conflict` when the user is already a member.
    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
    ) -> DomainResult<MembershipRecord>;
    /// Applies `patch` atomically; deactivation revokes the member's sessions in that org. Refuses
    /// (`Conflict`) a change that would leave the org without an active admin.
    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
    ) -> DomainResult<Option<(MembershipRecord, Revoked)>>;

    async fn create_session(&self, session: &SessionRecord) -> DomainResult<()>;
    async fn session_context(&self, id: &str) -> DomainResult<Option<SessionContext>>;
    /// Counts a renewal and records the new token expiry; false when the session was revoked
    /// meanwhile.
    async fn record_renewal(&self, id: &str, token_expires_at: i64, now: i64)
    -> DomainResult<bool>;
    /// Revokes one session, only if it belongs to `user_id` when one is given.
    async fn revoke_session(&self, id: &str, user_id: Option<i64>, now: i64) -> DomainResult<bool>;
    async fn revoke_sessions_of(&self, user_id: i64, now: i64) -> DomainResult<Revoked>;
    /// Sessions of a user that are neither revoked nor past their last token's expiry.
    async fn live_sessions_of(&self, user_id: i64, now: i64) -> DomainResult<Vec<SessionRecord>>;
}
