//! The embedded SQLite store: one file, WAL journal, migrations embedded in the binary. Writes
//! that read first take the write lock up front (`BEGIN IMMEDIATE`), so two of them never
//! deadlock on a lock upgrade.
//!
//! Reads share a pool of connections; every write goes through one dedicated writer connection.
//! SQLite lets one writer in at a time anyway: with several connections trying, the losers sleep
//! in SQLite's busy handler (milliseconds at a time), while with one writer they wait in the
//! pool's queue and are woken as soon as it is free.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Sqlite, SqliteConnection, Transaction};
use zeroize::Zeroizing;

use super::error::{StoreError, StoreResult};
use super::records::{
    ApiKeyContext, ApiKeyRecord, AuditQuery, AuditRecord, IntegrationAlgorithm, IntegrationRecord,
    MembershipPatch, MembershipRecord, NewApiKey, NewAuditEvent, NewUser, OrgRecord,
    PasswordPolicy, Renewal, Role, SessionContext, SessionRecord, StoredSigningKey, UserPatch,
    UserRecord,
};
use super::{
    PASSWORD_HISTORY_KEPT, PasswordChange, Revoked, SsoConfigRecord, SsoLoginRecord, Store,
    TotpRecord,
};
use crate::domain::session_cache::MemberProfile;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: a pool of one connection (the read pool itself for in-memory databases, which
    /// are private to each connection).
    writer: SqlitePool,
    /// Connections the writer pool has opened: `data_version` numbers are only comparable
    /// within one connection.
    writer_connects: Arc<AtomicI64>,
}

#[derive(Debug, Clone)]
pub struct SqliteSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl SqliteStore {
    pub async fn connect(settings: &SqliteSettings) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // A connection to a local file cannot go stale: no ping before every query (each ping
        // is one more round trip to the connection's thread).
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let in_memory = settings.url.contains(":memory:") || settings.url.contains("mode=memory");
        let writer_connects = Arc::new(AtomicI64::new(0));
        let counted = writer_connects.clone();
        let writer = if in_memory {
            pool.clone()
        } else {
            // One connection kept for the life of the process (no idle or age limit), so that
            // its `data_version` keeps counting other processes' commits.
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(move |_, _| {
                    let counted = counted.clone();
                    Box::pin(async move {
                        counted.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?
        };
        Ok(Self {
            pool,
            writer,
            writer_connects,
        })
    }

    /// Applies the embedded migrations; fails on a database migrated by a newer coreauth.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }
}

/// Maps a database failure: an unreachable database is `Unavailable` (503), the rest internal.
fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable
        }
        other => StoreError::internal(other),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[derive(FromRow)]
struct UserRow {
    id: i64,
    uuid: String,
    email: String,
    first: String,
    last: String,
    is_active: bool,
    is_platform_admin: bool,
    password_hash: Option<String>,
    password_set_at: Option<i64>,
    must_change_password: bool,
    created_at: i64,
    home_org_id: Option<i64>,
    last_org_id: Option<i64>,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        Self {
            id: r.id,
            uuid: r.uuid,
            email: r.email,
            first: r.first,
            last: r.last,
            is_active: r.is_active,
            is_platform_admin: r.is_platform_admin,
            password_hash: r.password_hash,
            password_set_at: r.password_set_at,
            must_change_password: r.must_change_password,
            created_at: r.created_at,
            home_org_id: r.home_org_id,
            last_org_id: r.last_org_id,
        }
    }
}

/// `SELECT <every user column> FROM users <rest>` as one static string.
macro_rules! select_user {
    ($rest:literal) => {
        concat!(
            "SELECT id, uuid, email, first, last, is_active, is_platform_admin, password_hash, ",
            "password_set_at, must_change_password, created_at, home_org_id, last_org_id FROM users ",
            $rest
        )
    };
}

#[derive(FromRow)]
struct MembershipRow {
    user_id: i64,
    org_id: i64,
    org_name: String,
    role: String,
    is_active: bool,
}

impl TryFrom<MembershipRow> for MembershipRecord {
    type Error = StoreError;
    fn try_from(r: MembershipRow) -> StoreResult<Self> {
        Ok(Self {
            user_id: r.user_id,
            org_id: r.org_id,
            org_name: r.org_name,
            role: parse_role(&r.role)?,
            is_active: r.is_active,
        })
    }
}

fn parse_role(stored: &str) -> StoreResult<Role> {
    Role::parse(stored).map_err(|_| StoreError::internal(format!("stored role {stored:?}")))
}

#[derive(FromRow)]
struct SessionRow {
    id: String,
    user_id: i64,
    org_id: i64,
    method: String,
    client: Option<String>,
    address: Option<String>,
    user_agent: Option<String>,
    created_at: i64,
    expires_at: i64,
    token_expires_at: i64,
    last_renewed_at: Option<i64>,
    renew_count: i64,
    revoked_at: Option<i64>,
    restriction: Option<String>,
}

impl From<SessionRow> for SessionRecord {
    fn from(r: SessionRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            org_id: r.org_id,
            method: r.method,
            client: r.client,
            address: r.address,
            user_agent: r.user_agent,
            created_at: r.created_at,
            expires_at: r.expires_at,
            token_expires_at: r.token_expires_at,
            last_renewed_at: r.last_renewed_at,
            renew_count: r.renew_count,
            revoked_at: r.revoked_at,
            restriction: r.restriction,
        }
    }
}

#[derive(FromRow)]
struct SessionContextRow {
    #[sqlx(flatten)]
    session: SessionRow,
    user_uuid: String,
    user_active: bool,
    is_platform_admin: bool,
    role: String,
    membership_active: bool,
}

#[derive(FromRow)]
struct PolicyRow {
    min_length: i64,
    max_age_days: i64,
    history_count: i64,
    reject_common: bool,
    require_mfa: bool,
}

impl From<PolicyRow> for PasswordPolicy {
    fn from(r: PolicyRow) -> Self {
        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        Self {
            min_length: clamp(r.min_length),
            max_age_days: clamp(r.max_age_days),
            history_count: clamp(r.history_count),
            reject_common: r.reject_common,
            require_mfa: r.require_mfa,
        }
    }
}

#[derive(FromRow)]
struct MemberProfileRow {
    #[sqlx(flatten)]
    user: UserRow,
    org_id: i64,
    org_name: String,
    /// A JSON array of the org's email domains, sorted.
    org_domains: String,
    /// The org's policy row, all null when the org has none (the defaults).
    min_length: Option<i64>,
    max_age_days: Option<i64>,
    history_count: Option<i64>,
    reject_common: Option<bool>,
    require_mfa: Option<bool>,
    mfa_enabled: bool,
}

impl MemberProfileRow {
    fn policy(&self) -> PasswordPolicy {
        match (
            self.min_length,
            self.max_age_days,
            self.history_count,
            self.reject_common,
            self.require_mfa,
        ) {
            (
                Some(min_length),
                Some(max_age_days),
                Some(history_count),
                Some(common),
                Some(mfa),
            ) => PasswordPolicy::from(PolicyRow {
                min_length,
                max_age_days,
                history_count,
                reject_common: common,
                require_mfa: mfa,
            }),
            _ => PasswordPolicy::default(),
        }
    }
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: i64,
    public_id: String,
    user_id: i64,
    org_id: i64,
    name: String,
    prefix: String,
    read_only: bool,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_address: Option<String>,
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            public_id: r.public_id,
            user_id: r.user_id,
            org_id: r.org_id,
            name: r.name,
            prefix: r.prefix,
            read_only: r.read_only,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            last_used_address: r.last_used_address,
        }
    }
}

#[derive(FromRow)]
struct ApiKeyContextRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    user_uuid: String,
    user_active: bool,
    is_platform_admin: bool,
    role: String,
    membership_active: bool,
}

/// `<rest>` with every api_keys column, as one static string.
macro_rules! api_key_columns {
    ($before:literal, $after:literal) => {
        concat!(
            $before,
            " k.id, k.public_id, k.user_id, k.org_id, k.name, k.prefix, k.read_only, ",
            "k.created_at, k.expires_at, k.last_used_at, k.last_used_address ",
            $after
        )
    };
}

/// Forgets a throttle counter (`clear_throttle`, and a login's own transaction).
async fn delete_throttle(conn: &mut SqliteConnection, key: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM throttle WHERE key = ?")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Writes an audit event on the connection of the change it describes.
async fn insert_audit(conn: &mut SqliteConnection, e: &NewAuditEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, event, outcome, reason, org_id, actor_user_id, \
         subject_user_id, subject, address, user_agent, client, request_id, details) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
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
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(db_error)
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    occurred_at: i64,
    event: String,
    outcome: String,
    reason: Option<String>,
    org_id: Option<i64>,
    actor_user_id: Option<i64>,
    subject_user_id: Option<i64>,
    subject: Option<String>,
    address: Option<String>,
    user_agent: Option<String>,
    client: Option<String>,
    request_id: Option<String>,
    details: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            event: NewAuditEvent {
                occurred_at: r.occurred_at,
                event: r.event,
                success: r.outcome == "success",
                reason: r.reason,
                org_id: r.org_id,
                actor_user_id: r.actor_user_id,
                subject_user_id: r.subject_user_id,
                subject: r.subject,
                address: r.address,
                user_agent: r.user_agent,
                client: r.client,
                request_id: r.request_id,
                details: serde_json::from_str(&r.details).unwrap_or_default(),
            },
        }
    }
}

/// Records the deletion of `row` (if one was deleted) and commits.
async fn finish_key_deletion(
    mut tx: Transaction<'static, Sqlite>,
    row: Option<ApiKeyRow>,
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
    Ok(Some(row.into()))
}

#[derive(FromRow)]
struct IntegrationRow {
    org_id: i64,
    name: String,
    algorithm: String,
    secret: Option<String>,
    audience: String,
    issuer: Option<String>,
    lifetime_secs: i64,
    claims: String,
    custom_claims: String,
    allow_api_keys: bool,
}

impl TryFrom<IntegrationRow> for IntegrationRecord {
    type Error = StoreError;
    fn try_from(r: IntegrationRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::internal(format!("stored integration {what}"));
        Ok(Self {
            org_id: r.org_id,
            algorithm: IntegrationAlgorithm::parse(&r.algorithm)
                .map_err(|_| corrupt("algorithm"))?,
            name: r.name,
            sealed_secret: r.secret,
            audience: r.audience,
            issuer: r.issuer,
            lifetime_secs: u32::try_from(r.lifetime_secs).map_err(|_| corrupt("lifetime"))?,
            claims: serde_json::from_str(&r.claims).map_err(|_| corrupt("claims"))?,
            custom_claims: serde_json::from_str(&r.custom_claims)
                .map_err(|_| corrupt("custom claims"))?,
            allow_api_keys: r.allow_api_keys,
        })
    }
}

async fn user_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: i64,
) -> StoreResult<Option<UserRecord>> {
    let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(row.map(UserRecord::from))
}

async fn insert_user(tx: &mut Transaction<'static, Sqlite>, user: &NewUser) -> StoreResult<i64> {
    let result = sqlx::query(
        "INSERT INTO users (uuid, email, email_key, first, last, is_active, is_platform_admin, \
         password_hash, password_set_at, created_at, home_org_id) \
         VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
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
    .execute(&mut **tx)
    .await;
    match result {
        Ok(done) => Ok(done.last_insert_rowid()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "a user with this email already exists".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn insert_sso_identity(
    tx: &mut Transaction<'static, Sqlite>,
    org_id: i64,
    (issuer, subject): (&str, &str),
    user_id: i64,
    now: i64,
) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO sso_identities (org_id, issuer, subject, user_id, created_at) \
         VALUES (?, ?, ?, ?, ?)",
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

/// Deletes the user's API keys, or those in `in_org` only; answers how many.
async fn delete_keys_in(
    tx: &mut Transaction<'static, Sqlite>,
    user_id: i64,
    in_org: Option<i64>,
) -> StoreResult<u64> {
    sqlx::query("DELETE FROM api_keys WHERE user_id = ? AND (? IS NULL OR org_id = ?)")
        .bind(user_id)
        .bind(in_org)
        .bind(in_org)
        .execute(&mut **tx)
        .await
        .map(|done| done.rows_affected())
        .map_err(db_error)
}

/// `NotFound("org")` unless the org exists.
async fn require_org(tx: &mut Transaction<'static, Sqlite>, org_id: i64) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = ?")
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    found.map(|_| ()).ok_or(StoreError::NotFound("org"))
}

async fn insert_membership(
    tx: &mut Transaction<'static, Sqlite>,
    org_id: i64,
    user_id: i64,
    role: Role,
    now: i64,
) -> StoreResult<()> {
    require_org(tx, org_id).await?;
    let result = sqlx::query(
        "INSERT INTO memberships (user_id, org_id, role, is_active, created_at) \
         VALUES (?, ?, ?, 1, ?)",
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
    tx: &mut Transaction<'static, Sqlite>,
    user_id: i64,
    org_id: i64,
) -> StoreResult<Option<MembershipRecord>> {
    let row: Option<MembershipRow> = sqlx::query_as(
        "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
         FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ? AND m.org_id = ?",
    )
    .bind(user_id)
    .bind(org_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    row.map(MembershipRecord::try_from).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable)
    }

    /// SQLite's `data_version` as the writer connection sees it: it changes when any other
    /// connection commits, and no other connection of this process writes (the read pool only
    /// reads). So a change means another process wrote to the file. The number is combined
    /// with how many writer connections were opened: a new connection (after one was lost)
    /// counts from scratch, and must read as a change, not as a coincidentally equal number.
    async fn foreign_write_marker(&self) -> StoreResult<Option<i64>> {
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&self.writer)
            .await
            .map_err(db_error)?;
        let connects = self.writer_connects.load(Ordering::Relaxed);
        Ok(Some((connects << 32) | (version & 0xFFFF_FFFF)))
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows: Vec<(String, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT kid, algorithm, private_key, created_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(kid, algorithm, seed, created_at)| StoredSigningKey {
                kid,
                algorithm,
                seed: Zeroizing::new(seed),
                created_at,
            })
            .collect())
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        // One statement is one write transaction: SQLite's single writer makes the check and
        // the insert atomic, even across processes sharing the file.
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at) \
             SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(key.seed.as_slice())
        .bind(key.created_at)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<UserRecord>> {
        let mut tx = self.write_tx().await?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if users > 0 {
            return Ok(None);
        }
        let org_id: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if org_id.is_none() {
            sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES (1, 'Default', ?)")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
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

    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE email_key = ?"))
            .bind(email_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> StoreResult<UserRecord> {
        let mut tx = self.write_tx().await?;
        let user_id = insert_user(&mut tx, &user).await?;
        if let Some((org_id, role)) = user.membership {
            insert_membership(&mut tx, org_id, user_id, role, user.created_at).await?;
            if let Some((issuer, subject)) = &user.sso_identity {
                insert_sso_identity(
                    &mut tx,
                    org_id,
                    (issuer.as_str(), subject.as_str()),
                    user_id,
                    user.created_at,
                )
                .await?;
            }
        }
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        insert_audit(&mut tx, &audit).await?;
        let created = user_in(&mut tx, user_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted user vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(UserRecord, Revoked)>> {
        let mut tx = self.write_tx().await?;
        if user_in(&mut tx, id).await?.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE users SET first = COALESCE(?, first), last = COALESCE(?, last), \
             is_active = COALESCE(?, is_active) WHERE id = ?",
        )
        .bind(patch.first.as_deref())
        .bind(patch.last.as_deref())
        .bind(patch.is_active)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut revoked = Revoked::default();
        if patch.is_active == Some(false) {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let user = user_in(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user.map(|u| (u, revoked)))
    }

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<OrgRecord> {
        let mut tx = self.write_tx().await?;
        let id = sqlx::query("INSERT INTO orgs (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .last_insert_rowid();
        for domain in email_domains {
            sqlx::query("INSERT OR IGNORE INTO org_email_domains (org_id, domain) VALUES (?, ?)")
                .bind(id)
                .bind(domain)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let mut audit = audit.clone();
        audit.org_id = Some(id);
        audit.subject = Some(format!("org:{id}"));
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        let mut domains = email_domains.to_vec();
        domains.sort();
        domains.dedup();
        Ok(OrgRecord {
            id,
            name: name.to_owned(),
            email_domains: domains,
        })
    }

    async fn org(&self, id: i64) -> StoreResult<Option<OrgRecord>> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM orgs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(name) = name else {
            return Ok(None);
        };
        let email_domains: Vec<String> = sqlx::query_scalar(
            "SELECT domain FROM org_email_domains WHERE org_id = ? ORDER BY domain",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(Some(OrgRecord {
            id,
            name,
            email_domains,
        }))
    }

    async fn memberships_of(&self, user_id: i64) -> StoreResult<Vec<MembershipRecord>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
             FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ? \
             ORDER BY m.org_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }

    async fn membership(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MembershipRecord>> {
        let row: Option<MembershipRow> = sqlx::query_as(
            "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
             FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = ? AND m.org_id = ?",
        )
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(MembershipRecord::try_from).transpose()
    }

    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<MembershipRecord> {
        let mut tx = self.write_tx().await?;
        if user_in(&mut tx, user_id).await?.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        insert_membership(&mut tx, org_id, user_id, role, now).await?;
        insert_audit(&mut tx, audit).await?;
        let membership = membership_in(&mut tx, user_id, org_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted membership vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(membership)
    }

    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(MembershipRecord, Revoked)>> {
        let mut tx = self.write_tx().await?;
        let Some(current) = membership_in(&mut tx, user_id, org_id).await? else {
            return Ok(None);
        };
        let role = patch.role.unwrap_or(current.role);
        let is_active = patch.is_active.unwrap_or(current.is_active);
        let stays_admin = role.is_admin() && is_active;
        if current.role.is_admin() && current.is_active && !stays_admin {
            let other_admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.org_id = ? AND m.user_id <> ? AND m.role = 'admin' \
                 AND m.is_active = 1 AND u.is_active = 1",
            )
            .bind(org_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if other_admins == 0 {
                return Err(StoreError::Conflict(
                    "an org must keep at least one active admin".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE memberships SET role = ?, is_active = ? WHERE user_id = ? AND org_id = ?",
        )
        .bind(role.as_str())
        .bind(is_active)
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut revoked = Revoked::default();
        if !is_active {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = ? \
                 WHERE user_id = ? AND org_id = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let updated = membership_in(&mut tx, user_id, org_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated.map(|m| (m, revoked)))
    }

    async fn create_session(
        &self,
        s: &SessionRecord,
        audit: &NewAuditEvent,
        clears: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, org_id, method, client, address, user_agent, \
             created_at, expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at, \
             restriction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // Only when it changes: a login to the same org as last time writes nothing more.
        sqlx::query("UPDATE users SET last_org_id = ? WHERE id = ? AND last_org_id IS NOT ?")
            .bind(s.org_id)
            .bind(s.user_id)
            .bind(s.org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        if let Some(key) = clears {
            delete_throttle(&mut tx, key).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn session_context(&self, id: &str) -> StoreResult<Option<SessionContext>> {
        let row: Option<SessionContextRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, s.org_id, s.method, s.client, s.address, s.user_agent, \
             s.created_at, s.expires_at, s.token_expires_at, s.last_renewed_at, s.renew_count, \
             s.revoked_at, s.restriction, u.uuid AS user_uuid, u.is_active AS user_active, \
             u.is_platform_admin, \
             m.role, m.is_active AS membership_active \
             FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             JOIN memberships m ON m.user_id = s.user_id AND m.org_id = s.org_id \
             WHERE s.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(SessionContext {
                role: parse_role(&r.role)?,
                session: std::sync::Arc::new(r.session.into()),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    /// The default reads the profile in five queries; this is one.
    async fn member_profile(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> StoreResult<Option<Arc<MemberProfile>>> {
        let row: Option<MemberProfileRow> = sqlx::query_as(
            "SELECT u.id, u.uuid, u.email, u.first, u.last, u.is_active, u.is_platform_admin, \
             u.password_hash, u.password_set_at, u.must_change_password, u.created_at, \
             u.home_org_id, u.last_org_id, \
             o.id AS org_id, o.name AS org_name, \
             (SELECT json_group_array(domain) FROM (SELECT domain FROM org_email_domains \
              WHERE org_id = o.id ORDER BY domain)) AS org_domains, \
             p.min_length, p.max_age_days, p.history_count, p.reject_common, p.require_mfa, \
             EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id \
              AND t.confirmed_at IS NOT NULL) AS mfa_enabled \
             FROM users u JOIN orgs o ON o.id = ? \
             LEFT JOIN password_policies p ON p.org_id = o.id \
             WHERE u.id = ?",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            let email_domains: Vec<String> = serde_json::from_str(&r.org_domains)
                .map_err(|e| StoreError::internal(format!("stored org domains: {e}")))?;
            let policy = r.policy();
            Ok(Arc::new(MemberProfile::new(
                r.user.into(),
                OrgRecord {
                    id: r.org_id,
                    name: r.org_name,
                    email_domains,
                },
                policy,
                r.mfa_enabled,
            )))
        })
        .transpose()
    }

    async fn record_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
        // One statement for the whole batch: the rows travel as one JSON array.
        let rows: Vec<_> = renewals
            .iter()
            .map(|r| serde_json::json!([r.session_id, r.count, r.token_expires_at, r.renewed_at]))
            .collect();
        sqlx::query(
            "UPDATE sessions SET renew_count = renew_count + r.n, \
             last_renewed_at = MAX(COALESCE(last_renewed_at, r.at), r.at), \
             token_expires_at = MAX(token_expires_at, r.exp) \
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS n, \
             json_extract(value, '$[2]') AS exp, json_extract(value, '$[3]') AS at \
             FROM json_each(?)) AS r \
             WHERE sessions.id = r.id AND sessions.revoked_at IS NULL",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let renew_count: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ? \
             WHERE id = ? AND revoked_at IS NULL AND (? IS NULL OR user_id = ?) \
             RETURNING renew_count",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(renew_count) = renew_count else {
            return Ok(false);
        };
        let mut audit = audit.clone();
        audit.details["renewCount"] = renew_count.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL \
             AND (? IS NULL OR org_id = ?)",
        )
        .bind(now)
        .bind(user_id)
        .bind(in_org)
        .bind(in_org)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn lift_session_restriction(
        &self,
        session_id: &str,
        restriction: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET restriction = NULL WHERE id = ? AND restriction = ? \
             AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(restriction)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, org_id, method, client, address, user_agent, created_at, \
             expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at, restriction \
             FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND token_expires_at > ? \
             AND expires_at > ? ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(SessionRecord::from).collect())
    }

    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord> {
        let mut tx = self.write_tx().await?;
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = ?")
            .bind(key.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if owned >= max_per_user {
            return Err(StoreError::Conflict(format!(
                "a user may have at most {max_per_user} API keys; delete one first"
            )));
        }
        let row: ApiKeyRow = sqlx::query_as(
            "INSERT INTO api_keys (public_id, user_id, org_id, name, prefix, key_hash, read_only, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING id, public_id, user_id, org_id, name, prefix, read_only, created_at, \
             expires_at, last_used_at, last_used_address",
        )
        .bind(&key.public_id)
        .bind(key.user_id)
        .bind(key.org_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(key.read_only)
        .bind(key.created_at)
        .bind(key.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(row.into())
    }

    async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>> {
        let row: Option<ApiKeyContextRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            ", u.uuid AS user_uuid, u.is_active AS user_active, u.is_platform_admin, m.role, \
             m.is_active AS membership_active FROM api_keys k \
             JOIN users u ON u.id = k.user_id \
             JOIN memberships m ON m.user_id = k.user_id AND m.org_id = k.org_id \
             WHERE k.key_hash = ?"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(ApiKeyContext {
                role: parse_role(&r.role)?,
                key: Arc::new(r.key.into()),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.user_id = ? AND k.org_id = ? ORDER BY k.id"
        ))
        .bind(user_id)
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn api_keys_in_org(&self, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.org_id = ? ORDER BY k.id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "DELETE FROM api_keys WHERE public_id = ? AND org_id = ? \
             AND (? IS NULL OR user_id = ?) \
             RETURNING id, public_id, user_id, org_id, name, prefix, read_only, created_at, \
             expires_at, last_used_at, last_used_address",
        )
        .bind(public_id)
        .bind(org_id)
        .bind(owner)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_key_by_hash(
        &self,
        key_hash: &[u8],
        owner: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "DELETE FROM api_keys WHERE key_hash = ? AND org_id = ? AND user_id = ? \
             RETURNING id, public_id, user_id, org_id, name, prefix, read_only, created_at, \
             expires_at, last_used_at, last_used_address",
        )
        .bind(key_hash)
        .bind(org_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_keys_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let deleted = delete_keys_in(&mut tx, user_id, in_org).await?;
        let mut audit = audit.clone();
        audit.details["keysDeleted"] = deleted.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for (id, at, address) in usage {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ?, last_used_address = ? \
                 WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(at)
            .bind(address.as_deref())
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO api_key_addresses (key_id, address, first_seen_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let first = done.rows_affected() == 1;
        if first {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(first)
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        insert_audit(&mut conn, event).await
    }

    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events \
             WHERE (?1 IS NULL OR org_id = ?1) \
             AND (?2 IS NULL OR actor_user_id = ?2 OR subject_user_id = ?2) \
             AND (?3 IS NULL OR event = ?3) \
             AND (?4 IS NULL OR occurred_at >= ?4) \
             AND (?5 IS NULL OR occurred_at < ?5) \
             AND (?6 IS NULL OR id < ?6) \
             ORDER BY id DESC LIMIT ?7",
        )
        .bind(q.org_id)
        .bind(q.user_id)
        .bind(q.event.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(q.before)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>> {
        let row: Option<PolicyRow> = sqlx::query_as(
            "SELECT min_length, max_age_days, history_count, reject_common, require_mfa \
             FROM password_policies WHERE org_id = ?",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(PasswordPolicy::from))
    }

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        require_org(&mut tx, org_id).await?;
        sqlx::query(
            "INSERT INTO password_policies \
             (org_id, min_length, max_age_days, history_count, reject_common, require_mfa, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id) DO UPDATE SET min_length = excluded.min_length, \
             max_age_days = excluded.max_age_days, history_count = excluded.history_count, \
             reject_common = excluded.reject_common, require_mfa = excluded.require_mfa, \
             updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(i64::from(policy.min_length))
        .bind(i64::from(policy.max_age_days))
        .bind(i64::from(policy.history_count))
        .bind(policy.reject_common)
        .bind(policy.require_mfa)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn password_history(&self, user_id: i64, limit: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT password_hash FROM password_history WHERE user_id = ? \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let mut tx = self.write_tx().await?;
        let current: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                .bind(change.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound("user"));
        };
        if let Some(expected) = &change.expected_hash
            && current.as_ref() != Some(expected)
        {
            return Err(StoreError::Conflict(
                "the password was changed meanwhile; try again".into(),
            ));
        }
        if let Some(old) = &current {
            sqlx::query(
                "INSERT INTO password_history (user_id, password_hash, set_at) VALUES (?, ?, ?)",
            )
            .bind(change.user_id)
            .bind(old)
            .bind(change.now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "DELETE FROM password_history WHERE user_id = ?1 AND id NOT IN \
                 (SELECT id FROM password_history WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2)",
            )
            .bind(change.user_id)
            .bind(PASSWORD_HISTORY_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE users SET password_hash = ?, password_set_at = ?, must_change_password = ? \
             WHERE id = ?",
        )
        .bind(&change.new_hash)
        .bind(change.now)
        .bind(change.must_change)
        .bind(change.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ? \
             WHERE user_id = ? AND revoked_at IS NULL AND (? IS NULL OR id <> ?)",
        )
        .bind(change.now)
        .bind(change.user_id)
        .bind(change.keep_session.as_deref())
        .bind(change.keep_session.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        if change.delete_api_keys {
            let deleted = delete_keys_in(&mut tx, change.user_id, None).await?;
            audit.details["keysDeleted"] = deleted.into();
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_of(&self, user_id: i64) -> StoreResult<Option<TotpRecord>> {
        let row: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT secret, confirmed_at, last_used_step FROM mfa_totp WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(
            row.map(|(sealed_secret, confirmed_at, last_used_step)| TotpRecord {
                sealed_secret,
                confirmed_at,
                last_used_step,
            }),
        )
    }

    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let confirmed: Option<Option<i64>> =
            sqlx::query_scalar("SELECT confirmed_at FROM mfa_totp WHERE user_id = ?")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        if matches!(confirmed, Some(Some(_))) {
            return Err(StoreError::Conflict(
                "TOTP is already enabled; disable it first to enrol again".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
             created_at = excluded.created_at, confirmed_at = NULL, last_used_step = NULL",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn confirm_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = ?, last_used_step = ? \
             WHERE user_id = ? AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for hash in recovery_code_hashes {
            sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES (?, ?)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE sessions SET restriction = NULL WHERE user_id = ? AND restriction IS NOT NULL",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn consume_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_used_step = ? WHERE user_id = ? \
             AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < ?)",
        )
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = ? \
             WHERE id = (SELECT id FROM mfa_recovery_codes \
                         WHERE user_id = ? AND code_hash = ? AND used_at IS NULL LIMIT 1)",
        )
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> StoreResult<()> {
        sqlx::query("UPDATE mfa_totp SET secret = ? WHERE user_id = ?")
            .bind(sealed_secret)
            .bind(user_id)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM mfa_totp WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn save_integration(
        &self,
        i: &IntegrationRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        require_org(&mut tx, i.org_id).await?;
        sqlx::query(
            "INSERT INTO integrations (org_id, name, algorithm, secret, audience, issuer, \
             lifetime_secs, claims, custom_claims, allow_api_keys, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id, name) DO UPDATE SET algorithm = excluded.algorithm, \
             secret = excluded.secret, audience = excluded.audience, issuer = excluded.issuer, \
             lifetime_secs = excluded.lifetime_secs, claims = excluded.claims, \
             custom_claims = excluded.custom_claims, allow_api_keys = excluded.allow_api_keys, \
             updated_at = excluded.updated_at",
        )
        .bind(i.org_id)
        .bind(&i.name)
        .bind(i.algorithm.as_str())
        .bind(i.sealed_secret.as_deref())
        .bind(&i.audience)
        .bind(i.issuer.as_deref())
        .bind(i64::from(i.lifetime_secs))
        .bind(serde_json::to_string(&i.claims).map_err(StoreError::internal)?)
        .bind(serde_json::Value::Object(i.custom_claims.clone()).to_string())
        .bind(i.allow_api_keys)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn integration(&self, org_id: i64, name: &str) -> StoreResult<Option<IntegrationRecord>> {
        let row: Option<IntegrationRow> = sqlx::query_as(
            "SELECT org_id, name, algorithm, secret, audience, issuer, lifetime_secs, claims, \
             custom_claims, allow_api_keys FROM integrations WHERE org_id = ? AND name = ?",
        )
        .bind(org_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(IntegrationRecord::try_from).transpose()
    }

    async fn integrations_of(&self, org_id: i64) -> StoreResult<Vec<IntegrationRecord>> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(
            "SELECT org_id, name, algorithm, secret, audience, issuer, lifetime_secs, claims, \
             custom_claims, allow_api_keys FROM integrations WHERE org_id = ? ORDER BY name",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(IntegrationRecord::try_from).collect()
    }

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM integrations WHERE org_id = ? AND name = ?")
            .bind(org_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        let mut tx = self.write_tx().await?;
        let mut counted = Vec::with_capacity(keys.len());
        for key in keys {
            counted.push(
                sqlx::query_as(
                    "INSERT INTO throttle (key, attempts, window_start) VALUES (?1, 1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET \
                     attempts = CASE WHEN throttle.window_start + ?3 <= ?2 THEN 1 \
                                     ELSE throttle.attempts + 1 END, \
                     window_start = CASE WHEN throttle.window_start + ?3 <= ?2 THEN ?2 \
                                         ELSE throttle.window_start END \
                     RETURNING attempts, window_start",
                )
                .bind(key)
                .bind(now)
                .bind(window_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?,
            );
        }
        tx.commit().await.map_err(db_error)?;
        Ok(counted)
    }

    async fn clear_throttle(&self, key: &str) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        delete_throttle(&mut conn, key).await
    }

    async fn prune_throttle(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM throttle WHERE window_start < ?")
            .bind(before)
            .execute(&self.writer)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }

    async fn save_sso_config(
        &self,
        c: &SsoConfigRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        require_org(&mut tx, c.org_id).await?;
        for domain in &c.email_domains {
            let owner: Option<i64> =
                sqlx::query_scalar("SELECT org_id FROM sso_domains WHERE domain = ?")
                    .bind(domain)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if owner.is_some_and(|o| o != c.org_id) {
                return Err(StoreError::Conflict(format!(
                    "the domain {domain} already signs in through another org's SSO"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO sso_configs (org_id, issuer, client_id, client_secret, allow_jit, \
             allow_password, redirect_allow_list, updated_at, pending_domains) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id) DO UPDATE SET issuer = excluded.issuer, \
             client_id = excluded.client_id, client_secret = excluded.client_secret, \
             allow_jit = excluded.allow_jit, allow_password = excluded.allow_password, \
             redirect_allow_list = excluded.redirect_allow_list, updated_at = excluded.updated_at, \
             pending_domains = excluded.pending_domains",
        )
        .bind(c.org_id)
        .bind(&c.issuer)
        .bind(&c.client_id)
        .bind(&c.sealed_client_secret)
        .bind(c.allow_jit)
        .bind(c.allow_password)
        .bind(serde_json::to_string(&c.redirect_allow_list).map_err(StoreError::internal)?)
        .bind(now)
        .bind(serde_json::to_string(&c.pending_domains).map_err(StoreError::internal)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM sso_domains WHERE org_id = ?")
            .bind(c.org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for domain in &c.email_domains {
            sqlx::query("INSERT INTO sso_domains (domain, org_id) VALUES (?, ?)")
                .bind(domain)
                .bind(c.org_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn sso_config(&self, org_id: i64) -> StoreResult<Option<SsoConfigRecord>> {
        let row: Option<(String, String, String, bool, bool, String, String)> = sqlx::query_as(
            "SELECT issuer, client_id, client_secret, allow_jit, allow_password, \
             redirect_allow_list, pending_domains FROM sso_configs WHERE org_id = ?",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some((
            issuer,
            client_id,
            sealed_client_secret,
            allow_jit,
            allow_password,
            list,
            pending,
        )) = row
        else {
            return Ok(None);
        };
        let email_domains: Vec<String> =
            sqlx::query_scalar("SELECT domain FROM sso_domains WHERE org_id = ? ORDER BY domain")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(Some(SsoConfigRecord {
            org_id,
            issuer,
            client_id,
            sealed_client_secret,
            email_domains,
            pending_domains: serde_json::from_str(&pending)
                .map_err(|_| StoreError::internal("stored pending SSO domains"))?,
            allow_jit,
            allow_password,
            redirect_allow_list: serde_json::from_str(&list)
                .map_err(|_| StoreError::internal("stored SSO allow-list"))?,
        }))
    }

    async fn delete_sso_config(&self, org_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM sso_configs WHERE org_id = ?")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sso_domains WHERE org_id = ?")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn sso_org_for_domain(&self, domain: &str) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(
            "SELECT d.org_id FROM sso_domains d JOIN sso_configs c ON c.org_id = d.org_id \
             WHERE d.domain = ?",
        )
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT org_id FROM org_email_domains WHERE domain = ?1 \
             UNION SELECT org_id FROM sso_domains WHERE domain = ?1",
        )
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn sso_identity(
        &self,
        org_id: i64,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(
            "SELECT user_id FROM sso_identities WHERE org_id = ? AND issuer = ? AND subject = ?",
        )
        .bind(org_id)
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn link_sso_identity(
        &self,
        org_id: i64,
        identity: (&str, &str),
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_sso_identity(&mut tx, org_id, identity, user_id, now).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_sso_login(&self, l: &SsoLoginRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_logins (state, org_id, nonce, pkce_verifier, return_to, client, \
             created_at, expires_at, link_user_id, browser_binding) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&l.state)
        .bind(l.org_id)
        .bind(&l.nonce)
        .bind(&l.sealed_pkce_verifier)
        .bind(l.return_to.as_deref())
        .bind(l.client.as_deref())
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.link_user_id)
        .bind(l.browser_binding.as_deref())
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn take_sso_login(&self, state: &str, now: i64) -> StoreResult<Option<SsoLoginRecord>> {
        let row: Option<(
            String,
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            Option<i64>,
            Option<String>,
        )> = sqlx::query_as(
            "UPDATE sso_logins SET used_at = ? WHERE state = ? AND used_at IS NULL \
                 RETURNING state, org_id, nonce, pkce_verifier, return_to, client, created_at, \
                 expires_at, link_user_id, browser_binding",
        )
        .bind(now)
        .bind(state)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(row.map(
            |(
                state,
                org_id,
                nonce,
                sealed_pkce_verifier,
                return_to,
                client,
                created_at,
                expires_at,
                link_user_id,
                browser_binding,
            )| {
                SsoLoginRecord {
                    state,
                    org_id,
                    nonce,
                    sealed_pkce_verifier,
                    return_to,
                    client,
                    created_at,
                    expires_at,
                    link_user_id,
                    browser_binding,
                }
            },
        ))
    }

    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM sso_logins WHERE used_at IS NOT NULL OR expires_at < ?")
            .bind(before)
            .execute(&self.writer)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }

    async fn audit_events_after(&self, after_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM audit_events WHERE occurred_at < ?")
            .bind(before)
            .execute(&self.writer)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
}
