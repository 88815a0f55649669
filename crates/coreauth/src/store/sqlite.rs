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

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqliteConnection};

use super::changes::Changes;
use super::error::{StoreError, StoreResult};
use super::records::UserRecord;
use super::records::{MemberRecord, NewAuditEvent, OrgRecord, PasswordPolicy, Renewal};
use super::rows::PolicyRow;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Reads share a pool; writes go through a pool of one connection (the read pool itself
    /// for in-memory databases, which are private to each connection).
    pools: sql::Pools,
    /// Connections the writer pool has opened: `data_version` numbers are only comparable
    /// within one connection.
    writer_connects: Arc<AtomicI64>,
    changes: Changes,
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
            pools: sql::Pools {
                reads: pool,
                writes: writer,
            },
            writer_connects,
            changes: Changes::default(),
        })
    }

    /// Applies the embedded migrations; fails on a database migrated by a newer coreauth.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(self.reads()).await
    }

    async fn write_tx(&self) -> StoreResult<Tx> {
        self.writes()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }
}

type Backend = SqliteStore;
type Conn = SqliteConnection;

/// `$select` as it is: the one writer already orders the writers of a user or org.
macro_rules! locking {
    ($select:literal) => {
        $select
    };
}

/// SQLite's default collation (BINARY) is byte order already.
macro_rules! byte_order {
    () => {
        ""
    };
}

// The SQL both backends share, compiled for this one (see its module doc).
#[allow(clippy::duplicate_mod, reason = "one copy per backend")]
#[path = "sql/mod.rs"]
mod sql;

use sql::{Tx, db_error};

/// What a failure SQLite reports means here: nothing to try again (its busy handler has waited).
fn database_error(e: &dyn sqlx::error::DatabaseError) -> StoreError {
    StoreError::internal(e)
}

/// SQLite stores any text.
fn storable(_key: &str) -> bool {
    true
}

/// Writes an audit event on the connection of the change it describes.
async fn insert_audit(conn: &mut SqliteConnection, e: &NewAuditEvent) -> StoreResult<()> {
    sql::bind_audit(sqlx::query(insert_audit_sql!("")), e)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Nothing to lock: `write_tx` holds the database's one write lock already.
async fn lock_table(_tx: &mut Tx, _table: &'static str) -> StoreResult<()> {
    Ok(())
}

/// Org 1 ("Default"), which the first admin administers.
async fn insert_default_org(tx: &mut Tx, now: i64) -> StoreResult<()> {
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES (1, 'Default', $1) ON CONFLICT (id) DO NOTHING")
        .bind(now)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(db_error)
}

#[derive(FromRow)]
struct MemberProfileRow {
    #[sqlx(flatten)]
    user: UserRecord,
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

/// What only SQLite's SQL says this way: JSON for batches, one join for a member's profile.
impl SqliteStore {
    /// SQLite's `data_version` as the writer connection sees it: it changes when any other
    /// connection commits, and no other connection of this process writes (the read pool only
    /// reads). So a change means another process wrote to the file. The number is combined
    /// with how many writer connections were opened: a new connection (after one was lost)
    /// counts from scratch, and must read as a change, not as a coincidentally equal number.
    async fn data_version(&self) -> StoreResult<Option<i64>> {
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(self.writes())
            .await
            .map_err(db_error)?;
        let connects = self.writer_connects.load(Ordering::Relaxed);
        Ok(Some((connects << 32) | (version & 0xFFFF_FFFF)))
    }

    /// One query for what PostgreSQL reads in four.
    async fn read_member(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MemberRecord>> {
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
             FROM users u JOIN orgs o ON o.id = $1 \
             LEFT JOIN password_policies p ON p.org_id = o.id \
             WHERE u.id = $2",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(|r| {
            let email_domains: Vec<String> = serde_json::from_str(&r.org_domains)
                .map_err(|e| StoreError::internal(format!("stored org domains: {e}")))?;
            let policy = r.policy();
            Ok(MemberRecord {
                user: r.user,
                org: OrgRecord {
                    id: r.org_id,
                    name: r.org_name,
                    email_domains,
                },
                policy,
                mfa_enabled: r.mfa_enabled,
            })
        })
        .transpose()
    }

    async fn write_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
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
             FROM json_each($1)) AS r \
             WHERE sessions.id = r.id AND sessions.revoked_at IS NULL",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(self.writes())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

/// The shared transactions: SQLite's round trips are calls into the library.
impl sql::Shortcuts for SqliteStore {}
