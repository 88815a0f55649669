//! Storage behind one trait, one implementation per backend. The domain calls these methods and
//! never sees SQL; the store keeps data consistent (one transaction per call) but decides no
//! policy beyond the integrity of what it holds.
//!
//! Every change that is a security event takes the `NewAuditEvent` describing it and writes it
//! in the same transaction; where the change creates the thing the event is about (a user, an
//! org), the store fills in its id.

use async_trait::async_trait;

use self::changes::Changes;
use self::records::{
    ApiKeyContext, ApiKeyRecord, AuditQuery, AuditRecord, IntegrationRecord, MemberRecord,
    MembershipPatch, MembershipRecord, NewApiKey, NewAuditEvent, NewUser, OrgRecord,
    PasswordPolicy, Renewal, Role, ServiceAccountRecord, SessionContext, SessionRecord,
    StoredSigningKey, UserPatch, UserRecord,
};
pub mod changes;
mod email;
pub mod error;
pub mod records;
#[macro_use]
mod rows;
mod scim;

pub mod pg_changes;
pub mod postgres;
pub mod sqlite;

pub use self::email::{EmailStore, MailStore};
pub use self::error::{StoreError, StoreResult};
pub use self::records::{
    DomainClaimRecord, PASSWORD_HISTORY_KEPT, PasswordChange, Revoked, SsoConnectionRecord,
    SsoDeviceRecord, SsoIdentityRecord, SsoLoginRecord, ThrottleSettlement, TotpRecord,
};
pub use self::scim::{ScimGroupStore, ScimStore};

/// All of the store, area by area: the domain holds an `Arc<dyn Store>` and calls any of them.
#[async_trait]
pub trait Store:
    UserStore
    + SessionStore
    + KeyStore
    + CredentialStore
    + SsoStore
    + AuditStore
    + IntegrationStore
    + ThrottleStore
    + SigningKeyStore
    + MailStore
    + EmailStore
    + ScimStore
    + ScimGroupStore
    + Send
    + Sync
    + 'static
{
    /// Where this store announces what its writes change (for the session cache to forget).
    fn changes(&self) -> &Changes;

    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes every connection, once each is back from whatever was using it. On SQLite the
    /// last one to close folds the write-ahead log into the database file, so that a stopped
    /// server leaves one self-contained file (what an operator copies as a backup).
    async fn close(&self);

    /// A number that changes whenever a process other than this one commits to the database,
    /// so that what this instance remembers can be forgotten then; `None` where the backend
    /// cannot tell (PostgreSQL, whose other instances write all the time).
    async fn foreign_write_marker(&self) -> StoreResult<Option<i64>>;

    /// Creates org 1 ("Default") and `admin` as its admin and a platform admin, only when the
    /// database has no user yet (checked in the same transaction). `None` when it had users.
    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<UserRecord>>;
}

/// Users, orgs and memberships.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>>;

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;

    /// The user with this username (its lookup key), if any.
    async fn user_by_username(&self, username_key: &str) -> StoreResult<Option<UserRecord>>;

    /// `Conflict` when the email is taken; `NotFound("org")` for an unknown membership org.
    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> StoreResult<UserRecord>;

    /// Deactivating a user revokes all their sessions in the same transaction.
    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(UserRecord, Revoked)>>;

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<OrgRecord>;

    async fn org(&self, id: i64) -> StoreResult<Option<OrgRecord>>;

    /// All memberships of a user, active or not, ordered by org id.
    async fn memberships_of(&self, user_id: i64) -> StoreResult<Vec<MembershipRecord>>;

    async fn membership(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MembershipRecord>>;

    /// `Conflict` when the user is already a member.
    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<MembershipRecord>;

    /// Applies `patch` atomically; deactivation revokes the member's sessions in that org. Refuses
    /// (`Conflict`) a change that would leave the org without an active admin.
    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(MembershipRecord, Revoked)>>;
}

/// Sessions, and what a request reads about the member behind one.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session and its audit event, and settles the throttle counters the login
    /// proved itself against in the same transaction (one commit for both).
    async fn create_session(
        &self,
        session: &SessionRecord,
        audit: &NewAuditEvent,
        settles: &ThrottleSettlement,
    ) -> StoreResult<()>;

    async fn session_context(&self, id: &str) -> StoreResult<Option<SessionContext>>;

    /// What `/user/me` and a renewal show about a member: the user, the org, its password policy
    /// (the defaults when it has none) and whether the user has a confirmed second factor;
    /// `None` when the user or the org does not exist.
    async fn member(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MemberRecord>>;

    /// Adds each renewal's count to its session and moves its token expiry and last renewal
    /// forward (never back). Sessions that are gone are skipped.
    async fn record_renewals(&self, renewals: &[Renewal]) -> StoreResult<()>;

    /// Revokes one session, only if it belongs to `user_id` when one is given.
    async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Revokes the user's sessions: all of them, or those in `in_org` only.
    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked>;

    /// Clears the session's restriction if it is `restriction`, with its audit event; false
    /// when it was not (already lifted, or another).
    async fn lift_session_restriction(
        &self,
        session_id: &str,
        restriction: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Sessions of a user that are neither revoked nor past their last token's expiry.
    async fn live_sessions_of(&self, user_id: i64, now: i64) -> StoreResult<Vec<SessionRecord>>;
}

/// API keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a key unless its owner already has `max_per_user` keys (`Conflict`), atomically.
    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord>;

    /// The key with this SHA-256, with its owner's state, through the unique index on the hash.
    async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>>;

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>>;

    async fn api_keys_in_org(&self, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Deletes the key with this public id in `org_id`, only if owned by `owner` when given.
    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>>;

    async fn delete_api_key_by_hash(
        &self,
        key_hash: &[u8],
        owner: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>>;

    /// Deletes every key of a user, or those in `in_org` only, with one audit event counting
    /// them (`details.keysDeleted`).
    async fn delete_api_keys_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<u64>;

    /// Replaces key `public_id` (of `owner` in `org_id`) with `new`, in one transaction: the new
    /// key is inserted, and the old one marked replaced and made to expire at `overlap_ends`
    /// unless it expires sooner. `None` for no such key; `Conflict` for a key already replaced
    /// or expired (at `new.created_at`).
    async fn rotate_api_key(
        &self,
        public_id: &str,
        owner: i64,
        org_id: i64,
        new: NewApiKey,
        overlap_ends: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(ApiKeyRecord, ApiKeyRecord)>>;

    /// The service accounts of an org, oldest first.
    async fn service_accounts_in(&self, org_id: i64) -> StoreResult<Vec<ServiceAccountRecord>>;

    /// The service account with this uuid in `org_id`.
    async fn service_account(
        &self,
        org_id: i64,
        uuid: &str,
    ) -> StoreResult<Option<ServiceAccountRecord>>;

    /// Deletes a service account with its keys and membership; false when there was none.
    async fn delete_service_account(
        &self,
        user_id: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Records when (and from where) keys were last used: `(key id, time, address)`.
    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> StoreResult<()>;

    /// Remembers that a key was used from `address`; true (and `audit` written) the first time.
    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
}

/// Passwords, their policy and history, and the second factor (TOTP, recovery codes).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The org's policy; `None` when the org uses the defaults.
    async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>>;

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// The user's previous password hashes, newest first.
    async fn password_history(&self, user_id: i64, limit: i64) -> StoreResult<Vec<String>>;

    /// Sets a new password: the old hash goes to the history (kept to
    /// `PASSWORD_HISTORY_KEPT`), sessions are revoked but `keep_session`, atomically.
    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked>;

    /// Replaces `old_hash` by `new_hash` (same password, stronger parameters) if it is still the
    /// current one; the password's age does not change.
    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;

    async fn totp_of(&self, user_id: i64) -> StoreResult<Option<TotpRecord>>;

    /// Stores a new, unconfirmed enrolment (replacing an unconfirmed one); `Conflict` when the
    /// user already has a confirmed one.
    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Confirms the enrolment with the step of the code that proved it, replaces the recovery
    /// codes, and lifts the enrolment restriction of the user's sessions, atomically.
    async fn confirm_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Accepts `step` only if it is newer than every step accepted before (atomic, so a code
    /// replayed in parallel is accepted once).
    async fn consume_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool>;

    /// Marks an unused recovery code used; false when there is none with this hash.
    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> StoreResult<()>;

    /// Removes the user's TOTP and recovery codes; false when there was none.
    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool>;
}

/// Single sign-on: connections, the org's claims to email domains, linked identities, sign-ons
/// in flight.
#[async_trait]
pub trait SsoStore: Send + Sync {
    /// Creates (`id` 0) or replaces one of an org's connections and its domains, and adds the
    /// org's claims to them (a claim the org holds already is kept, a verified one in
    /// `claims` verifies a pending one); answers the connection's id. `Conflict` when another
    /// connection of the org has the name or one of the domains, or when a claim given as
    /// verified is another org's verified domain; `NotFound` for an unknown org or connection.
    async fn save_sso_connection(
        &self,
        connection: &SsoConnectionRecord,
        claims: &[DomainClaimRecord],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<i64>;

    /// The org's connections, oldest first.
    async fn sso_connections(&self, org_id: i64) -> StoreResult<Vec<SsoConnectionRecord>>;

    async fn sso_connection(&self, connection_id: i64) -> StoreResult<Option<SsoConnectionRecord>>;

    /// Deletes one of the org's connections, or all of them (`None`); false when there was
    /// none.
    async fn delete_sso_connections(
        &self,
        org_id: i64,
        connection_id: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// The org and connection this email domain signs in through: the connection holding the
    /// domain in the org whose claim to it is verified.
    async fn sso_connection_for_domain(&self, domain: &str) -> StoreResult<Option<(i64, i64)>>;

    /// The orgs holding this domain: set on the org by a platform admin, or verified.
    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>>;

    /// The org's claims to domains, by domain.
    async fn domain_claims(&self, org_id: i64) -> StoreResult<Vec<DomainClaimRecord>>;

    /// Adds a claim, or verifies the org's pending one when `claim` is verified; `Conflict`
    /// when it is verified and another org's claim to the domain is too.
    async fn save_domain_claim(
        &self,
        claim: &DomainClaimRecord,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Withdraws a claim, and takes the domain off the org's connections; false when there was
    /// none.
    async fn delete_domain_claim(
        &self,
        org_id: i64,
        domain: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// The user linked to this identity at the org's provider.
    async fn sso_identity(
        &self,
        org_id: i64,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<i64>>;

    /// Links an identity at the org's provider to a user; `Conflict` when it is linked already.
    async fn link_sso_identity(
        &self,
        org_id: i64,
        identity: (&str, &str),
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// The identities linked to the user, by org.
    async fn sso_identities_of(&self, user_id: i64) -> StoreResult<Vec<SsoIdentityRecord>>;

    /// Removes the user's link to this identity; false when there was none.
    async fn unlink_sso_identity(
        &self,
        user_id: i64,
        org_id: i64,
        identity: (&str, &str),
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    async fn create_sso_login(&self, login: &SsoLoginRecord) -> StoreResult<()>;

    /// Takes a login in flight by its state, once: a second call with the same state finds
    /// nothing. Expired ones are returned too (the caller tells the user it expired).
    async fn take_sso_login(&self, state: &str, now: i64) -> StoreResult<Option<SsoLoginRecord>>;

    /// Deletes sign-ons in flight, and device sign-ins, that were used, or that expired before
    /// `before`.
    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64>;

    /// Records a SAML assertion as consumed until `expires_at` (its `NotOnOrAfter`, skew
    /// included), once for all instances: false when it was consumed before (a replay).
    /// Expired ones go with `prune_sso_logins`.
    async fn consume_saml_assertion(
        &self,
        issuer: &str,
        assertion_id: &str,
        expires_at: i64,
    ) -> StoreResult<bool>;

    /// The SAML connections, in any org, whose IdP has this entity id.
    async fn saml_connections_of_issuer(
        &self,
        issuer: &str,
    ) -> StoreResult<Vec<SsoConnectionRecord>>;

    /// Whether this assertion was consumed already (and is not pruned yet).
    async fn saml_assertion_seen(&self, issuer: &str, assertion_id: &str) -> StoreResult<bool>;

    async fn create_sso_device(&self, device: &SsoDeviceRecord) -> StoreResult<()>;

    /// The device sign-in with this user code (its hash), whatever its state.
    async fn sso_device_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<SsoDeviceRecord>>;

    /// Records how the person's sign-in ended, once: false when it had ended already.
    async fn complete_sso_device(
        &self,
        id: &str,
        sealed_session: Option<&str>,
        refusal: Option<&str>,
    ) -> StoreResult<bool>;

    /// Takes the device sign-in's session, once: the record, and whether this call took it
    /// (false: pending, refused, or taken before), or `None`.
    async fn take_sso_device(
        &self,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<(SsoDeviceRecord, bool)>>;
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records an event that goes with no change (a refused login, …).
    async fn record_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;

    /// Events matching `query`, newest first, at most `query.limit`.
    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// Events with an id above `after_id`, oldest first (for exporting the trail).
    async fn audit_events_after(&self, after_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;

    /// Deletes events that occurred before `before`; answers how many.
    async fn prune_audit(&self, before: i64) -> StoreResult<u64>;
}

/// Integration token settings.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Creates or replaces an org's integration.
    async fn save_integration(
        &self,
        integration: &IntegrationRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    async fn integration(&self, org_id: i64, name: &str) -> StoreResult<Option<IntegrationRecord>>;

    async fn integrations_of(&self, org_id: i64) -> StoreResult<Vec<IntegrationRecord>>;

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
}

/// Attempt counters.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Counts an attempt for each of `keys` (distinct), starting a new window for a key whose
    /// current one (`window_ms` long) has ended; answers, in the order of `keys`, the attempts
    /// in each window and when it started. One atomic statement and one commit for all keys
    /// (a login counts against its account and its address), so parallel attempts are all
    /// counted; rows are locked in the order of `keys`.
    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> StoreResult<Vec<(i64, i64)>>;

    /// Settles a guess that proved right: the counter to clear is deleted, then the one to
    /// refund gives back one attempt (the order `hit_throttle` locks them in).
    async fn settle_throttle(&self, settlement: &ThrottleSettlement) -> StoreResult<()>;

    /// Deletes counters whose window started before `before`.
    async fn prune_throttle(&self, before: i64) -> StoreResult<u64>;
}

/// The keys tokens are signed with, retired ones included.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every key, by `activates_at`.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;

    /// Stores `key` only when there is no signing key yet, checked atomically: instances that
    /// start together on an empty database then all read back the same single key, instead of
    /// each signing with its own key that the others have not loaded.
    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;

    /// Stores `key`, unless `after` is given and a key not retired activates after it (checked
    /// atomically: instances rotating at the same moment add one key between them). Answers
    /// whether it was stored.
    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        after: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// Retires a key not yet retired, erasing its seed; whether there was one.
    async fn retire_signing_key(
        &self,
        kid: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
}
