//! The PostgreSQL store, for running several instances on one database. Same trait, same
//! semantics as the SQLite store; where SQLite gets atomicity from its single writer
//! (`BEGIN IMMEDIATE`), this one takes row or table locks inside READ COMMITTED transactions,
//! so concurrent writers on other instances wait for each other instead of losing an update.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::StoreResult;
use super::changes::Changes;
use super::error::StoreError;
use super::pg_changes::ChangeFeed;
use super::records::{NewAuditEvent, Renewal, SessionRecord, ThrottleSettlement};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    /// Reads and writes share one pool: PostgreSQL takes writers in parallel.
    pools: sql::Pools,
    /// What the pool connects with, for the change feed's connection of its own.
    options: PgConnectOptions,
    changes: Changes,
}

/// How long a pooled connection may sit idle before it is pinged when handed out again.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

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
            // sqlx pings every idle connection it hands out by default: one more round trip to
            // the server per query. A connection back in the pool
            // within the last second has just answered, so only one idle for longer is pinged
            // (and closed, and another one taken, when the server hung up on it, e.g. after a
            // restart).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pools: sql::Pools {
                reads: pool.clone(),
                writes: pool,
            },
            options,
            changes: Changes::default(),
        })
    }

    /// Changes other instances make, for this instance's session cache to forget.
    pub fn change_feed(&self) -> ChangeFeed {
        ChangeFeed::new(self.options.clone())
    }

    /// Applies the embedded migrations; fails on a database migrated by a newer coreauth.
    /// sqlx holds an advisory lock meanwhile, so instances starting together migrate once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(self.writes()).await
    }

    async fn write_tx(&self) -> StoreResult<Tx> {
        self.writes().begin().await.map_err(db_error)
    }
}

type Backend = PostgresStore;
type Conn = PgConnection;

/// `$select` taking the row lock that orders the writers of one user or org (see `sql/mod.rs`).
/// NO KEY UPDATE leaves alone the key-share locks that inserts referring to the row take
/// (through foreign keys), so logins and key creations of others are not held up.
macro_rules! locking {
    ($select:literal) => {
        concat!($select, " FOR NO KEY UPDATE")
    };
}

/// `$select` locking the rows it picks and passing over those another transaction holds: workers
/// of several instances taking due work (`claim_mail`) each get rows no other one has, instead
/// of queueing behind each other's locks and then finding the rows taken.
macro_rules! skipping_locked {
    ($select:literal) => {
        concat!($select, " FOR UPDATE SKIP LOCKED")
    };
}

/// Byte order, as SQLite sorts, whatever locale the database was made with.
macro_rules! byte_order {
    () => {
        " COLLATE \"C\""
    };
}

// The SQL both backends share, compiled for this one (see its module doc).
#[allow(clippy::duplicate_mod, reason = "one copy per backend")]
#[path = "sql/mod.rs"]
mod sql;

use sql::{Tx, db_error};

/// What a failure PostgreSQL reports means here: a server restarting or out of connections
/// is `Unavailable` (503), worth trying again.
fn database_error(e: &dyn sqlx::error::DatabaseError) -> StoreError {
    match e.code().as_deref() {
        Some(code) if is_transient(code) || is_rolled_back(code) => StoreError::Unavailable,
        // character_not_in_repertoire: a NUL in text, which SQLite stores and PostgreSQL
        // refuses. The domain's parsers keep control characters out; this is the backstop.
        Some("22021") => StoreError::Unstorable("text contains a character that cannot be stored"),
        _ => StoreError::internal(e),
    }
}

/// SQLSTATEs that say "try again": connection exceptions (08…), too many connections, the
/// server shutting down or starting up (57P01–57P03).
fn is_transient(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
}

/// SQLSTATEs of a transaction PostgreSQL rolled back to break a deadlock or a serialisation
/// conflict (40P01, 40001): nothing of it was written, and the client's retry finds the other
/// transaction done. Answered `503` rather than retried here: a login's attempt was counted
/// before its check, and counting it again would spend a guess it never made.
fn is_rolled_back(code: &str) -> bool {
    matches!(code, "40P01" | "40001")
}

/// Whether PostgreSQL text can hold `key`. A lookup by a key it cannot hold (one with a NUL)
/// finds nothing, as it would in SQLite, instead of failing the query.
fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// The advisory lock that orders audit ids by commit (an arbitrary key: "coreaudt" in ASCII).
const AUDIT_ORDER_LOCK: i64 = 0x636f_7265_6175_6474;

/// Writes an audit event in the transaction of the change it describes.
///
/// The audit export follows the table by id (`audit_events_after`), which is only safe if no
/// event can become visible with an id below one already read. SQLite's single writer gives that
/// for free; here, two transactions could take ids 10 and 11 and commit in the other order, and
/// an export reading in between would pass 11 and never see 10. So the id is taken under a
/// transaction-scoped advisory lock held until commit: ids are handed out in commit order.
///
/// The lock is taken in the same statement: `pg_advisory_xact_lock` in the FROM clause yields
/// the row before it is projected, and the projection is where the identity default draws the
/// id. One round trip instead of two, for every audited write. Only the tail of each
/// transaction (this insert, a read or two, the commit) runs under the lock, and nothing after
/// this insert waits for a row lock, so it cannot take part in a deadlock.
async fn insert_audit(conn: &mut PgConnection, e: &NewAuditEvent) -> StoreResult<()> {
    let query = sqlx::query(insert_audit_sql!("FROM pg_advisory_xact_lock($14)"));
    sql::bind_audit(query, e)
        .bind(AUDIT_ORDER_LOCK)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Locks `table` against concurrent writers until the transaction ends: under READ COMMITTED
/// two instances could otherwise both find it empty (first key, first user). This lock mode
/// conflicts with itself and with every insert, so the second waits and then sees the first
/// one's rows.
async fn lock_table(tx: &mut Tx, table: &'static str) -> StoreResult<()> {
    let statement = match table {
        "users" => "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE",
        "signing_keys" => "LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE",
        other => return Err(StoreError::internal(format!("no lock for table {other}"))),
    };
    sqlx::query(statement)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// An explicit id does not advance the identity sequence: moves it past every existing row of
/// `table`, so the next insert gets a fresh id instead of colliding (org 1, inserted by id).
async fn advance_ids(tx: &mut Tx, table: &'static str) -> StoreResult<()> {
    let statement = match table {
        "orgs" => {
            "SELECT setval(pg_get_serial_sequence('orgs', 'id'), \
                   (SELECT COALESCE(MAX(id), 1) FROM orgs))"
        }
        other => {
            return Err(StoreError::internal(format!(
                "no identity for table {other}"
            )));
        }
    };
    sqlx::query(statement)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// What only PostgreSQL's SQL says this way: a batch of renewals as arrays.
impl PostgresStore {
    /// Other instances' writes come through the change feed; there is no marker to poll.
    async fn data_version(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }

    async fn write_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
        // One transaction, so that a failure leaves nothing half-written for the retry to add
        // again. Its rows are locked first, in id order: instances writing batches over the
        // same sessions at once then queue on the first row they share instead of deadlocking.
        // Sessions revoked meanwhile are left as their revocation recorded them.
        let mut sorted: Vec<&Renewal> = renewals.iter().collect();
        sorted.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let mut tx = self.write_tx().await?;
        for chunk in sorted.chunks(1000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.session_id.as_str()).collect();
            let counts: Vec<i64> = chunk.iter().map(|r| r.count).collect();
            let expiries: Vec<i64> = chunk.iter().map(|r| r.token_expires_at).collect();
            let times: Vec<i64> = chunk.iter().map(|r| r.renewed_at).collect();
            sqlx::query("SELECT 1 FROM sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query(
                "UPDATE sessions s SET renew_count = s.renew_count + r.n, \
                 last_renewed_at = GREATEST(s.last_renewed_at, r.at), \
                 token_expires_at = GREATEST(s.token_expires_at, r.exp) \
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                 AS r(id, n, exp, at) WHERE s.id = r.id AND s.revoked_at IS NULL",
            )
            .bind(&ids)
            .bind(&counts)
            .bind(&expiries)
            .bind(&times)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }
}

/// A login's writes and an attempt's count, each in one statement (see `sql::Shortcuts`).
impl sql::Shortcuts for PostgresStore {
    async fn open_session(
        &self,
        s: &SessionRecord,
        audit: &NewAuditEvent,
        settles: &ThrottleSettlement,
    ) -> Option<StoreResult<()>> {
        // One statement, so one round trip and its own transaction: the login's hot path.
        // The session insert and the throttle settlement must finish before the audit lock is
        // taken, as they would in a transaction of their own statements: a login holding the
        // lock while it waits for a row lock (the user row its session refers to, while an
        // admin deletes the user; a throttle row, while another login counts on it) could
        // deadlock with the holder of that row lock waiting for the audit lock. PostgreSQL runs
        // a WITH clause the main query does not read after the main query, so the lock's
        // argument reads them all: `0 * written.n` makes the lock wait for them. The refund
        // reads `cleared`, so the account's row is locked before the address's, the order
        // `count_attempts` takes them in. A NULL key settles nothing.
        let query = sqlx::query(concat!(
            "WITH cleared AS (DELETE FROM throttle WHERE key = $15 RETURNING 1), \
             refunded AS (UPDATE throttle SET attempts = attempts - 1 \
             WHERE key = $30 AND attempts > 0 AND (SELECT count(*) FROM cleared) >= 0 \
             RETURNING 1), opened AS (",
            insert_session_sql!(16),
            " RETURNING 1), \
             used AS (UPDATE users SET last_org_id = $18 \
             WHERE id = $17 AND last_org_id IS DISTINCT FROM $18 RETURNING 1) ",
            insert_audit_sql!(
                "FROM (SELECT (SELECT count(*) FROM cleared) + (SELECT count(*) FROM refunded) \
                 + (SELECT count(*) FROM opened) + (SELECT count(*) FROM used)) \
                 AS written(n), LATERAL pg_advisory_xact_lock($14 + 0 * written.n)"
            )
        ));
        let key = |key: &Option<String>| key.clone().filter(|key| storable(key));
        let query = sql::bind_audit(query, audit)
            .bind(AUDIT_ORDER_LOCK)
            .bind(key(&settles.clear));
        let done = sql::bind_session(query, s)
            .bind(key(&settles.refund))
            .execute(self.writes())
            .await;
        Some(done.map(|_| ()).map_err(db_error))
    }

    async fn count_attempts(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Option<StoreResult<Vec<(i64, i64)>>> {
        // One statement: the first attempt inserts, every other one (on any instance) takes the
        // row lock and counts on top of the previous count, so none is lost. Rows are taken in
        // the order of `keys`, so two statements never lock the same two rows in opposite order.
        let rows: Result<Vec<(String, i64, i64)>, _> = sqlx::query_as(
            "INSERT INTO throttle (key, attempts, window_start) \
             SELECT k.key, 1, $2 FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n) \
             ORDER BY k.n \
             ON CONFLICT (key) DO UPDATE SET \
             attempts = CASE WHEN throttle.window_start + $3 <= $2 THEN 1 \
                             ELSE throttle.attempts + 1 END, \
             window_start = CASE WHEN throttle.window_start + $3 <= $2 THEN $2 \
                                 ELSE throttle.window_start END \
             RETURNING key, attempts, window_start",
        )
        .bind(keys)
        .bind(now)
        .bind(window_ms)
        .fetch_all(self.writes())
        .await;
        Some(
            rows.map_err(db_error)
                .and_then(|rows| in_order_of(keys, rows)),
        )
    }
}

/// Throttle counters as `hit_throttle` answers them: in the order of `keys`.
fn in_order_of(keys: &[String], rows: Vec<(String, i64, i64)>) -> StoreResult<Vec<(i64, i64)>> {
    keys.iter()
        .map(|key| {
            rows.iter()
                .find(|(k, _, _)| k == key)
                .map(|&(_, attempts, start)| (attempts, start))
                .ok_or_else(|| StoreError::internal("a throttle counter was not returned"))
        })
        .collect()
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
    fn deadlock_and_serialisation_victims_are_rolled_back() {
        for code in ["40P01", "40001"] {
            assert!(is_rolled_back(code), "{code}");
        }
        for code in ["23505", "08006", "40002"] {
            assert!(!is_rolled_back(code), "{code}");
        }
    }

    #[test]
    fn keys_with_nul_are_not_storable() {
        assert!(storable("6f1c0f5e-7d8b-4b8e-9a53-0c7a1d2e3f40"));
        assert!(storable("é🔑"));
        assert!(!storable("a\0b"));
    }
}
