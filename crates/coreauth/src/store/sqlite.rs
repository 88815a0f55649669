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
use sqlx::{Connection, SqliteConnection};

use super::changes::Changes;
use super::error::{StoreError, StoreResult};
use super::records::{NewAuditEvent, Renewal};

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
        let in_memory = settings.url.contains(":memory:") || settings.url.contains("mode=memory");
        // A connection to a local file cannot go stale: no ping before every query (each ping
        // is one more round trip to the connection's thread).
        let mut reads = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout);
        if !in_memory {
            // (In memory, closing the last connection would drop the database.)
            reads = reads.after_release(|conn, _| Box::pin(still_usable(conn)));
        }
        let pool = reads.connect_with(options.clone()).await?;
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
                .after_release(|conn, _| Box::pin(still_usable(conn)))
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

/// `$select` as it is: with one writer, no other worker can take the same rows meanwhile.
macro_rules! skipping_locked {
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

/// Whether a connection handed back to its pool may serve again: not when it is still inside a
/// transaction once the rollback its `Transaction` queued on drop has run. When a disk-full or
/// I/O error makes SQLite roll a transaction back by itself, sqlx's rollback then fails ("no
/// transaction is active") and leaves its transaction depth at 1, so every later `BEGIN` on
/// that connection fails; closing it lets the pool open a fresh one once the disk has room.
async fn still_usable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A round trip to the connection's thread, which runs the queued rollback first.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

// The SQL both backends share, compiled for this one (see its module doc).
#[allow(clippy::duplicate_mod, reason = "one copy per backend")]
#[path = "sql/mod.rs"]
mod sql;

use sql::{Tx, db_error};

/// What a failure SQLite reports means here. A full disk, a file made read-only, an I/O error
/// or a database still locked once the busy handler has waited are the machine's state, not a
/// bug: `Unavailable` (`503` with `Retry-After`), with a log line that names the cause, since
/// only the operator can mend it. SQLite refuses the write whole, so nothing is half-written.
fn database_error(e: &dyn sqlx::error::DatabaseError) -> StoreError {
    // The extended result code; its low byte is the primary code.
    let extended = e.code().and_then(|c| c.parse::<i32>().ok());
    let cause = match extended.map(|c| c & 0xff) {
        Some(13) => "the disk holding the SQLite database is full",
        // SQLITE_IOERR_WRITE: a write the system refused, as it does past a file-size limit.
        Some(10) if extended == Some(778) => {
            "writing the SQLite database failed: its disk may be full, or the file over a size \
             limit (ulimit -f)"
        }
        Some(8) => {
            "the SQLite database is read-only (file or directory permissions, or a read-only mount)"
        }
        Some(10) => "an I/O error reading or writing the SQLite database",
        Some(14) => "the SQLite database file cannot be opened",
        Some(5 | 6) => "the SQLite database stayed locked by another writer past the busy timeout",
        _ => return StoreError::internal(e),
    };
    tracing::error!("{cause}: {}", e.message());
    StoreError::Unavailable
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

/// Nothing to advance: a rowid is always past the largest one, explicit or not.
async fn advance_ids(_tx: &mut Tx, _table: &'static str) -> StoreResult<()> {
    Ok(())
}

/// What only SQLite's SQL says this way: a batch of renewals as JSON.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// Real SQLite refusals, as a full disk and a read-only database give them.
    #[tokio::test]
    async fn a_full_disk_and_a_read_only_database_are_unavailable_not_internal() {
        let mut db = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (b BLOB)")
            .execute(&mut db)
            .await
            .unwrap();
        // The database may not grow past its current pages: what a full disk looks like.
        sqlx::query("PRAGMA max_page_count = 2")
            .execute(&mut db)
            .await
            .unwrap();
        let full = sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&mut db)
            .await
            .unwrap_err();
        assert!(matches!(db_error(full), StoreError::Unavailable));

        sqlx::query("PRAGMA query_only = ON")
            .execute(&mut db)
            .await
            .unwrap();
        let read_only = sqlx::query("INSERT INTO t VALUES (x'00')")
            .execute(&mut db)
            .await
            .unwrap_err();
        assert!(matches!(db_error(read_only), StoreError::Unavailable));

        let bug = sqlx::query("INSERT INTO missing VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap_err();
        assert!(matches!(db_error(bug), StoreError::Internal(_)));
    }
}
