//! The PostgreSQL store, for running several instances on one database. Same trait, same
//! semantics as the SQLite store; where SQLite gets atomicity from its single writer
//! (`BEGIN IMMEDIATE`), this one takes row or table locks inside READ COMMITTED transactions,
//! so concurrent writers on other instances wait for each other instead of losing an update.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{FromRow, Postgres, Transaction};
use zeroize::Zeroizing;

use super::{Revoked, Store};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::org::{MembershipPatch, MembershipRecord, OrgRecord, Role};
use crate::domain::session::{SessionContext, SessionRecord};
use crate::domain::tokens::StoredSigningKey;
use crate::domain::user::{NewUser, UserPatch, UserRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database?…` (libpq's URL form).
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl PostgresStore {
    /// Opens the pool and checks that the server answers (so a wrong URL fails at start, not at
    /// the first request).
    pub async fn connect(settings: &PostgresSettings) -> Result<Self, sqlx::Error> {
        let mut options = PgConnectOptions::from_str(&settings.url)?;
        // Names the connections in pg_stat_activity, unless the URL names them already.
        if options.get_application_name().is_none() {
            options = options.application_name("coreauth");
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the embedded migrations; fails on a database migrated by a newer coreauth.
    /// sqlx holds an advisory lock meanwhile, so instances starting together migrate once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    async fn begin(&self) -> DomainResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_error)
    }
}

/// Maps a database failure: an unreachable or restarting database is `Unavailable` (503), the
/// rest internal.
fn db_error(e: sqlx::Error) -> DomainError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DomainError::Unavailable
        }
        sqlx::Error::Database(d) if d.code().as_deref().is_some_and(is_transient) => {
            DomainError::Unavailable
        }
        // character_not_in_repertoire: a NUL in text, which SQLite stores and PostgreSQL
        // refuses. The domain's parsers keep control characters out; this is the backstop.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("22021") => {
            DomainError::invalid("text contains a character that cannot be stored")
        }
        other => DomainError::internal(format!("database: {other}")),
    }
}

/// SQLSTATEs that say "try again": connection exceptions (08…), too many connections, the
/// server shutting down or starting up (57P01–57P03).
fn is_transient(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
}

/// Whether PostgreSQL text can hold `key`. A lookup by a key it cannot hold (one with a NUL)
/// finds nothing, as it would in SQLite, instead of failing the query.
fn storable(key: &str) -> bool {
    !key.contains('\0')
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
        }
    }
}

/// `SELECT <every user column> FROM users <rest>` as one static string.
macro_rules! select_user {
    ($rest:literal) => {
        concat!(
            "SELECT id, uuid, email, first, last, is_active, is_platform_admin, password_hash, ",
            "password_set_at, must_change_password, created_at FROM users ",
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
    type Error = DomainError;
    fn try_from(r: MembershipRow) -> DomainResult<Self> {
        Ok(Self {
            user_id: r.user_id,
            org_id: r.org_id,
            org_name: r.org_name,
            role: parse_role(&r.role)?,
            is_active: r.is_active,
        })
    }
}

fn parse_role(stored: &str) -> DomainResult<Role> {
    Role::parse(stored).map_err(|_| DomainError::internal(format!("stored role {stored:?}")))
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

const SELECT_MEMBERSHIP: &str = "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, \
     m.is_active FROM memberships m JOIN orgs o ON o.id = m.org_id \
     WHERE m.user_id = $1 AND m.org_id = $2";

async fn user_in(
    tx: &mut Transaction<'static, Postgres>,
    id: i64,
) -> DomainResult<Option<UserRecord>> {
    let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(row.map(UserRecord::from))
}

async fn insert_user(tx: &mut Transaction<'static, Postgres>, user: &NewUser) -> DomainResult<i64> {
    let result: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO users (uuid, email, email_key, first, last, is_active, is_platform_admin, \
         password_hash, password_set_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&user.uuid)
    .bind(user.email.as_str())
    .bind(user.email.key())
    .bind(user.first.as_str())
    .bind(user.last.as_str())
    .bind(user.is_platform_admin)
    .bind(user.password_hash.as_deref())
    .bind(user.password_hash.as_ref().map(|_| user.created_at))
    .bind(user.created_at)
    .fetch_one(&mut **tx)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(e) if is_unique_violation(&e) => Err(DomainError::Conflict(
            "a user with this email already exists".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn insert_membership(
    tx: &mut Transaction<'static, Postgres>,
    org_id: i64,
    user_id: i64,
    role: Role,
    now: i64,
) -> DomainResult<()> {
    let org_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1")
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    if org_exists.is_none() {
        return Err(DomainError::NotFound("org"));
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
        Err(e) if is_unique_violation(&e) => Err(DomainError::Conflict(
            "the user is already a member of this org".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn membership_in(
    tx: &mut Transaction<'static, Postgres>,
    user_id: i64,
    org_id: i64,
) -> DomainResult<Option<MembershipRecord>> {
    let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    row.map(MembershipRecord::try_from).transpose()
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> DomainResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|_| DomainError::Unavailable)
    }

    async fn signing_keys(&self) -> DomainResult<Vec<StoredSigningKey>> {
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

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(key.seed.as_slice())
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        // Under READ COMMITTED two instances could both see an empty table; this lock mode
        // conflicts with itself, so the second waits and then sees the first one's key.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(key.seed.as_slice())
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn bootstrap(&self, admin: NewUser, now: i64) -> DomainResult<Option<UserRecord>> {
        let mut tx = self.begin().await?;
        // Under READ COMMITTED two instances starting together would both see no user. This
        // lock mode conflicts with itself and with every insert into users, so the second
        // bootstrap waits, then counts the first one's admin and changes nothing.
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if users > 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO orgs (id, name, created_at) VALUES (1, 'Default', $1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // An explicit id does not advance the identity sequence: move it past every existing
        // org so the next `create_org` gets a fresh id instead of colliding with org 1.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('orgs', 'id'), \
             (SELECT COALESCE(MAX(id), 1) FROM orgs))",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let user_id = insert_user(&mut tx, &admin).await?;
        insert_membership(&mut tx, 1, user_id, Role::Admin, now).await?;
        let user = user_in(&mut tx, user_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user)
    }

    async fn user_by_email(&self, email_key: &str) -> DomainResult<Option<UserRecord>> {
        if !storable(email_key) {
            return Ok(None);
        }
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE email_key = $1"))
            .bind(email_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn user_by_id(&self, id: i64) -> DomainResult<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn create_user(&self, user: NewUser) -> DomainResult<UserRecord> {
        let mut tx = self.begin().await?;
        let user_id = insert_user(&mut tx, &user).await?;
        if let Some((org_id, role)) = user.membership {
            insert_membership(&mut tx, org_id, user_id, role, user.created_at).await?;
        }
        let created = user_in(&mut tx, user_id)
            .await?
            .ok_or_else(|| DomainError::internal("inserted user vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
    ) -> DomainResult<Option<(UserRecord, Revoked)>> {
        let mut tx = self.begin().await?;
        // One statement: the row lock it takes makes concurrent patches apply one after the
        // other, each to the other's result.
        let updated: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET first = COALESCE($1, first), last = COALESCE($2, last), \
             is_active = COALESCE($3, is_active) WHERE id = $4 RETURNING id",
        )
        .bind(patch.first.as_ref().map(|n| n.as_str()))
        .bind(patch.last.as_ref().map(|n| n.as_str()))
        .bind(patch.is_active)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.is_none() {
            return Ok(None);
        }
        let mut revoked = Revoked::default();
        if patch.is_active == Some(false) {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let user = user_in(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user.map(|u| (u, revoked)))
    }

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
    ) -> DomainResult<OrgRecord> {
        let mut tx = self.begin().await?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        for domain in email_domains {
            sqlx::query(
                "INSERT INTO org_email_domains (org_id, domain) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
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

    async fn org(&self, id: i64) -> DomainResult<Option<OrgRecord>> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(name) = name else {
            return Ok(None);
        };
        // COLLATE "C": byte order, as SQLite sorts, whatever locale the database was made with.
        let email_domains: Vec<String> = sqlx::query_scalar(
            "SELECT domain FROM org_email_domains WHERE org_id = $1 \
             ORDER BY domain COLLATE \"C\"",
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

    async fn memberships_of(&self, user_id: i64) -> DomainResult<Vec<MembershipRecord>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
             FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 \
             ORDER BY m.org_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }

    async fn membership(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> DomainResult<Option<MembershipRecord>> {
        let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
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
    ) -> DomainResult<MembershipRecord> {
        let mut tx = self.begin().await?;
        if user_in(&mut tx, user_id).await?.is_none() {
            return Err(DomainError::NotFound("user"));
        }
        insert_membership(&mut tx, org_id, user_id, role, now).await?;
        let membership = membership_in(&mut tx, user_id, org_id)
            .await?
            .ok_or_else(|| DomainError::internal("inserted membership vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(membership)
    }

    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
    ) -> DomainResult<Option<(MembershipRecord, Revoked)>> {
        let mut tx = self.begin().await?;
        // Membership changes within one org go one at a time: without this, two admins demoting
        // each other at once would each count the other as the remaining admin, and two partial
        // patches of one membership would each write back the other's old value. NO KEY UPDATE
        // does not conflict with the key-share locks that logins take on the org row (through
        // the sessions foreign key), so logins are not held up.
        let org: Option<i64> =
            sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        if org.is_none() {
            return Ok(None);
        }
        let Some(current) = membership_in(&mut tx, user_id, org_id).await? else {
            return Ok(None);
        };
        let role = patch.role.unwrap_or(current.role);
        let is_active = patch.is_active.unwrap_or(current.is_active);
        let stays_admin = role.is_admin() && is_active;
        if current.role.is_admin() && current.is_active && !stays_admin {
            let other_admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.org_id = $1 AND m.user_id <> $2 AND m.role = 'admin' \
                 AND m.is_active AND u.is_active",
            )
            .bind(org_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if other_admins == 0 {
                return Err(DomainError::Conflict(
                    "an org must keep at least one active admin".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, is_active = $2 WHERE user_id = $3 AND org_id = $4",
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
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND org_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let updated = membership_in(&mut tx, user_id, org_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated.map(|m| (m, revoked)))
    }

    async fn create_session(&self, s: &SessionRecord) -> DomainResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, org_id, method, client, address, user_agent, \
             created_at, expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn session_context(&self, id: &str) -> DomainResult<Option<SessionContext>> {
        if !storable(id) {
            return Ok(None);
        }
        let row: Option<SessionContextRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, s.org_id, s.method, s.client, s.address, s.user_agent, \
             s.created_at, s.expires_at, s.token_expires_at, s.last_renewed_at, s.renew_count, \
             s.revoked_at, u.uuid AS user_uuid, u.is_active AS user_active, u.is_platform_admin, \
             m.role, m.is_active AS membership_active \
             FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             JOIN memberships m ON m.user_id = s.user_id AND m.org_id = s.org_id \
             WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(SessionContext {
                role: parse_role(&r.role)?,
                session: r.session.into(),
                user_uuid: r.user_uuid,
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn record_renewal(
        &self,
        id: &str,
        token_expires_at: i64,
        now: i64,
    ) -> DomainResult<bool> {
        // A concurrent logout holds the row lock until it commits; this update then re-reads the
        // row and, finding it revoked, changes nothing, so no renewal outlives a logout.
        let done = sqlx::query(
            "UPDATE sessions SET renew_count = renew_count + 1, last_renewed_at = $1, \
             token_expires_at = GREATEST(token_expires_at, $2) \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token_expires_at)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_session(&self, id: &str, user_id: Option<i64>, now: i64) -> DomainResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL AND ($3::BIGINT IS NULL OR user_id = $3)",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_sessions_of(&self, user_id: i64, now: i64) -> DomainResult<Revoked> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(Revoked {
            sessions: done.rows_affected(),
        })
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> DomainResult<Vec<SessionRecord>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, org_id, method, client, address, user_agent, created_at, \
             expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND token_expires_at > $2 \
             AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(SessionRecord::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_shutdown_errors_are_transient() {
        for code in ["08006", "08001", "53300", "57P01", "57P03"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "40001"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn keys_with_nul_are_not_storable() {
        assert!(storable("6f1c0f5e-7d8b-4b8e-9a53-0c7a1d2e3f40"));
        assert!(storable("é🔑"));
        assert!(!storable("a\0b"));
    }
}
