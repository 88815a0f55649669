//! The `Store` both SQL backends share: every statement and transaction written once, compiled
//! once for each backend. `sqlite.rs` and `postgres.rs` each include this directory as a module
//! of their own (`#[path = "sql/mod.rs"]`), one file per area of the store, after defining
//! what it takes from `super`:
//! - the store type (`Backend`, holding `Pools`) and its connection type (`Conn`);
//! - `write_tx`, a write transaction; `database_error`, what a failure the database reports
//!   means; `storable`, which text the database can hold; `insert_audit`;
//! - `locking!` (the row lock of a read that orders writers), `skipping_locked!` (the rows a
//!   worker takes, passing over those another holds), `byte_order!` (sorting), and
//!   `lock_table`, `advance_ids`;
//! - what it says in its own SQL: `write_renewals`, `data_version`, and `Shortcuts`, the writes
//!   it makes in one statement where this code takes a transaction.
//!
//! Why this and not generic code over `sqlx::Database`, a query builder or `sqlx::Any`: each
//! copy is concrete, so there are no trait bounds to spell out for every bound value and row,
//! statements stay static strings `sqlx` prepares once and caches per connection, and nothing
//! is converted at run time (`Any` copies every row into its own value type and knows neither
//! SQLite's single writer nor PostgreSQL's locks). The cost is compiling this code twice, as
//! the two hand copies it replaces were. Placeholders are `$N` in both: SQLite takes `$N` as
//! the N-th parameter, as PostgreSQL does.
//!
//! Locks: SQLite has one writer (`write_tx` is `BEGIN IMMEDIATE` on the writer connection), so
//! what PostgreSQL must lock (READ COMMITTED, several instances) is already serialised there;
//! `locking!` adds the row lock on PostgreSQL and nothing on SQLite.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Backend, Conn, advance_ids, database_error, insert_audit, lock_table, storable};
use crate::store::changes::{Change, Changes};
use crate::store::records::{
    ApiKeyContext, ApiKeyRecord, AuditQuery, AuditRecord, ClaimMapping, DomainClaimRecord,
    EmailSettings, EmailTemplate, EmailTokenRecord, IntegrationRecord, InvitationRecord, Joining,
    MailQueueCounts, MailRequestRecord, MemberRecord, MembershipPatch, MembershipRecord, NewApiKey,
    NewAuditEvent, NewEmailToken, NewInvitation, NewMail, NewUser, OrgRecord,
    PASSWORD_HISTORY_KEPT, PasswordChange, PasswordPolicy, Renewal, Revoked, Role, SamlSettings,
    ServiceAccountRecord, SessionContext, SessionRecord, SsoConnectionRecord, SsoDeviceRecord,
    SsoIdentityRecord, SsoLoginRecord, StoredSigningKey, ThrottleSettlement, TokenPurpose,
    TotpRecord, UserPatch, UserRecord,
};
use crate::store::rows::*;
use crate::store::{
    AuditStore, CredentialStore, EmailStore, IntegrationStore, KeyStore, MailStore, ScimGroupStore,
    ScimStore, SessionStore, SigningKeyStore, SsoStore, Store, StoreError, StoreResult,
    ThrottleStore, UserStore,
};

type Db = <Conn as sqlx::Connection>::Database;
/// A write transaction of this backend (`write_tx`).
pub(super) type Tx = sqlx::Transaction<'static, Db>;

/// The pools a backend reads and writes on. Single-statement writes go to `writes` as
/// transactions do: on SQLite that is the one writer connection.
pub(super) struct Pools {
    pub(super) reads: sqlx::Pool<Db>,
    pub(super) writes: sqlx::Pool<Db>,
}

impl Backend {
    pub(super) fn reads(&self) -> &sqlx::Pool<Db> {
        &self.pools.reads
    }

    pub(super) fn writes(&self) -> &sqlx::Pool<Db> {
        &self.pools.writes
    }
}

/// Maps a database failure: an unreachable database is `Unavailable` (503); what the database
/// itself reports, as the backend reads it (`database_error`); the rest internal.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable
        }
        sqlx::Error::Database(d) => database_error(d.as_ref()),
        other => StoreError::internal(other),
    }
}

/// Writes a backend makes in one statement where the code here takes a transaction of several
/// statements. On PostgreSQL every round trip costs the database server CPU, which on a busy
/// machine is taken from the logins' hashing (the login rows of `bench/RESULTS.md`); SQLite's
/// round trips are calls into the library, so it takes the transactions. `None`: no shortcut.
pub(super) trait Shortcuts {
    async fn open_session(
        &self,
        _session: &SessionRecord,
        _audit: &NewAuditEvent,
        _settles: &ThrottleSettlement,
    ) -> Option<StoreResult<()>> {
        None
    }

    async fn count_attempts(
        &self,
        _keys: &[String],
        _now: i64,
        _window_ms: i64,
    ) -> Option<StoreResult<Vec<(i64, i64)>>> {
        None
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

/// Binds an event to `insert_audit_sql!`'s thirteen parameters.
pub(super) fn bind_audit<'q>(query: Query<'q>, e: &NewAuditEvent) -> Query<'q> {
    query
        .bind(e.occurred_at)
        .bind(&e.event)
        .bind(if e.success { "success" } else { "failure" })
        .bind(e.reason.as_deref())
        .bind(e.org_id)
        .bind(e.actor_user_id)
        .bind(e.subject_user_id)
        .bind(e.subject.as_deref())
        .bind(e.address.as_deref())
        .bind(e.user_agent.as_deref())
        .bind(e.client.as_deref())
        .bind(e.request_id.as_deref())
        .bind(e.details.to_string())
}

/// Binds a session to `insert_session_sql!`'s fourteen parameters.
pub(super) fn bind_session<'q>(query: Query<'q>, s: &SessionRecord) -> Query<'q> {
    query
        .bind(&s.id)
        .bind(s.user_id)
        .bind(s.org_id)
        .bind(&s.method)
        .bind(s.client.as_deref())
        .bind(s.address.as_deref())
        .bind(s.user_agent.as_deref())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.token_expires_at)
        .bind(s.last_renewed_at)
        .bind(s.renew_count)
        .bind(s.revoked_at)
        .bind(s.restriction.as_deref())
}

/// Settles a right guess's counters, the cleared one first (`ThrottleStore::settle_throttle`).
async fn settle_throttle(conn: &mut Conn, settlement: &ThrottleSettlement) -> StoreResult<()> {
    if let Some(key) = settlement.clear.as_deref().filter(|key| storable(key)) {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    if let Some(key) = settlement.refund.as_deref().filter(|key| storable(key)) {
        sqlx::query("UPDATE throttle SET attempts = attempts - 1 WHERE key = $1 AND attempts > 0")
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Audits and commits a write that changed `rows` rows; one that changed none is rolled back
/// unaudited. Answers whether it changed any.
async fn commit_if_changed(mut tx: Tx, rows: u64, audit: &NewAuditEvent) -> StoreResult<bool> {
    if rows == 0 {
        return Ok(false);
    }
    insert_audit(&mut tx, audit).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(true)
}

/// Records the deletion of `row` (if one was deleted) and commits.
async fn finish_key_deletion(
    mut tx: Tx,
    row: Option<ApiKeyRecord>,
    audit: &NewAuditEvent,
) -> StoreResult<Option<ApiKeyRecord>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let mut audit = audit.clone();
    audit.subject = Some(row.public_id.clone());
    audit.subject_user_id = Some(row.user_id);
    audit.details["name"] = row.name.clone().into();
    insert_audit(&mut tx, &audit).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(Some(row))
}

async fn insert_sso_identity(
    tx: &mut Tx,
    org_id: i64,
    (issuer, subject): (&str, &str),
    user_id: i64,
    now: i64,
) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO sso_identities (org_id, issuer, subject, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org_id)
    .bind(issuer)
    .bind(subject)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "this identity is already linked to an account".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

/// Org 1 ("Default"), which the first admin administers.
async fn insert_default_org(tx: &mut Tx, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO orgs (id, name, created_at) VALUES (1, 'Default', $1) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    advance_ids(tx, "orgs").await
}

/// The email domains set on an org, in byte order.
async fn org_domains(pool: &sqlx::Pool<Db>, org_id: i64) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(concat!(
        "SELECT domain FROM org_email_domains WHERE org_id = $1 ORDER BY domain",
        byte_order!()
    ))
    .bind(org_id)
    .fetch_all(pool)
    .await
    .map_err(db_error)
}

/// Deletes the user's API keys, or those in `in_org` only; answers how many.
async fn delete_keys_in(tx: &mut Tx, user_id: i64, in_org: Option<i64>) -> StoreResult<u64> {
    sqlx::query(
        "DELETE FROM api_keys WHERE user_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR org_id = $2)",
    )
    .bind(user_id)
    .bind(in_org)
    .execute(&mut **tx)
    .await
    .map(|done| done.rows_affected())
    .map_err(db_error)
}

/// Locks org `id`'s row so that membership changes within the org go one at a time; false when
/// there is no such org. NO KEY UPDATE does not conflict with the key-share locks that logins
/// take on the org row (through the sessions foreign key), so logins are not held up.
async fn lock_org_memberships(tx: &mut Tx, id: i64) -> StoreResult<bool> {
    let org: Option<i64> = sqlx::query_scalar(locking!("SELECT id FROM orgs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(org.is_some())
}

const LAST_ADMIN: &str = "an org must keep at least one active admin";

/// The org's active person admins other than `user_id` (under `lock_org_memberships`).
async fn other_active_admins(tx: &mut Tx, org_id: i64, user_id: i64) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = $1 AND m.user_id <> $2 AND m.role = 'admin' \
         AND m.is_active AND u.is_active AND u.kind = 'person'",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)
}

/// Revokes the user's live sessions in the org; answers how many.
async fn revoke_sessions_in(tx: &mut Tx, user_id: i64, org_id: i64, now: i64) -> StoreResult<u64> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 \
         WHERE user_id = $2 AND org_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(org_id)
    .execute(&mut **tx)
    .await
    .map(|done| done.rows_affected())
    .map_err(db_error)
}

/// Whether org `id` exists, read in `tx`.
async fn org_exists(tx: &mut Tx, id: i64) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(found.is_some())
}

async fn user_in(tx: &mut Tx, id: i64) -> StoreResult<Option<UserRecord>> {
    let row: Option<UserRecord> = sqlx::query_as(select_user!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(row)
}

async fn insert_user(tx: &mut Tx, user: &NewUser) -> StoreResult<i64> {
    let result: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO users (uuid, email, email_key, first, last, is_active, is_platform_admin, \
         password_hash, password_set_at, created_at, home_org_id, username, username_key, kind) \
         VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(&user.uuid)
    .bind(&user.email)
    .bind(&user.email_key)
    .bind(&user.first)
    .bind(&user.last)
    .bind(user.is_platform_admin)
    .bind(user.password_hash.as_deref())
    .bind(user.password_hash.as_ref().map(|_| user.created_at))
    .bind(user.created_at)
    .bind(user.membership.map(|(org_id, _)| org_id))
    .bind(user.username.as_ref().map(|(name, _)| name.as_str()))
    .bind(user.username.as_ref().map(|(_, key)| key.as_str()))
    .bind(if user.is_service { "service" } else { "person" })
    .fetch_one(&mut **tx)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "a user with this email or username already exists".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn insert_membership(
    tx: &mut Tx,
    org_id: i64,
    user_id: i64,
    role: Role,
    now: i64,
) -> StoreResult<()> {
    if !org_exists(tx, org_id).await? {
        return Err(StoreError::NotFound("org"));
    }
    let result = sqlx::query(
        "INSERT INTO memberships (user_id, org_id, role, is_active, created_at) \
         VALUES ($1, $2, $3, TRUE, $4)",
    )
    .bind(user_id)
    .bind(org_id)
    .bind(role.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "the user is already a member of this org".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn membership_in(
    tx: &mut Tx,
    user_id: i64,
    org_id: i64,
) -> StoreResult<Option<MembershipRecord>> {
    let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    row.map(MembershipRecord::try_from).transpose()
}

mod accounts;
mod audit;
mod credentials;
mod email;
mod integrations;
mod keys;
mod mail;
mod scim;
mod scim_groups;
mod sessions;
mod signing_keys;
mod sso;
mod throttle;

#[allow(unused_imports, reason = "for the stores of the flows that queue mail")]
use mail::insert_mail;

#[async_trait]
impl Store for Backend {
    fn changes(&self) -> &Changes {
        &self.changes
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.writes())
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable)
    }

    async fn close(&self) {
        // On PostgreSQL both are the same pool; closing it twice is harmless.
        self.writes().close().await;
        self.reads().close().await;
    }

    async fn foreign_write_marker(&self) -> StoreResult<Option<i64>> {
        self.data_version().await
    }

    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<UserRecord>> {
        let mut tx = self.write_tx().await?;
        // Two instances starting together on PostgreSQL would both see no user: the lock makes
        // the second wait, then count the first one's admin and change nothing.
        lock_table(&mut tx, "users").await?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if users > 0 {
            return Ok(None);
        }
        insert_default_org(&mut tx, now).await?;
        let user_id = insert_user(&mut tx, &admin).await?;
        insert_membership(&mut tx, 1, user_id, Role::Admin, now).await?;
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        audit.org_id = Some(1);
        insert_audit(&mut tx, &audit).await?;
        let user = user_in(&mut tx, user_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user)
    }
}
