//! Seeding: the schema comes from `coreauth migrate` (the binary's own migrations), then users,
//! memberships and live sessions are written with a few set-based SQL statements straight into
//! the database (SQLite or PostgreSQL), every user sharing one precomputed argon2id hash. A
//! million users and a million sessions take seconds this way instead of a million password
//! hashes.
//!
//! Tokens for the seeded sessions are signed with the server's own key, read from the database
//! after the server created it, through coreauth's `TokenSigner`: they are the tokens a login
//! would have returned for those sessions.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use coreauth::config::Settings;
use coreauth::domain::tokens::{SESSION_AUDIENCE, SessionClaims, TokenSigner};
use coreauth::startup::open_store;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgConnection};

/// The password of every seeded user.
pub const PASSWORD: &str = "bench password 0123456789";
/// The org every seeded user is a member of.
pub const ORG_ID: i64 = 1;

/// Seeded user `n` (1-based; user ids are 1..=users).
pub fn email(n: u64) -> String {
    format!("user{n}@bench.example")
}

/// The uuid of seeded user `n`, as the seeding SQL writes it.
fn user_uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The id of seeded user `n`'s session, as the seeding SQL writes it.
fn session_id(n: u64) -> String {
    format!("5e55{:04x}-0000-4000-8000-{n:012}", n % 65_536)
}

/// Where the bench's databases live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// An SQLite file per database in the work directory.
    Sqlite,
    /// A database per name on this PostgreSQL server (`postgres://user@host:port/postgres`),
    /// created empty and dropped at the end.
    Postgres { server: String },
}

impl Backend {
    /// What the report says the server ran on.
    pub async fn describe(&self) -> anyhow::Result<String> {
        match self {
            Self::Sqlite => Ok("SQLite (WAL)".into()),
            Self::Postgres { server } => {
                let mut conn = PgConnection::connect(server).await?;
                let mut setting = async |name: &str| -> anyhow::Result<String> {
                    Ok(
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                            .fetch_one(&mut conn)
                            .await?,
                    )
                };
                let version = setting("server_version").await?;
                let fsync = setting("fsync").await?;
                let commit = setting("synchronous_commit").await?;
                Ok(format!(
                    "PostgreSQL {version} on the same machine (fsync {fsync}, \
                     synchronous_commit {commit})"
                ))
            }
        }
    }

    /// The URL of a new, empty database called `name`.
    pub async fn create(&self, dir: &Path, name: &str) -> anyhow::Result<String> {
        match self {
            Self::Sqlite => Ok(format!(
                "sqlite://{}",
                dir.join(format!("{name}.db")).display()
            )),
            Self::Postgres { server } => {
                let mut admin = PgConnection::connect(server).await?;
                // The names are the harness's own (letters and underscores).
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await?;
                let mut url = url::Url::parse(server)?;
                url.set_path(&format!("/{name}"));
                Ok(url.to_string())
            }
        }
    }

    /// Removes a database made by `create` (SQLite files go with the work directory).
    pub async fn remove(&self, name: &str) -> anyhow::Result<()> {
        if let Self::Postgres { server } = self {
            let mut admin = PgConnection::connect(server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
        }
        Ok(())
    }

    /// The size of the database at `url`, in MiB.
    pub async fn size_mib(&self, url: &str) -> anyhow::Result<f64> {
        let bytes = match self {
            Self::Sqlite => {
                let path = url.trim_start_matches("sqlite://");
                std::fs::metadata(path)?.len() as f64
            }
            Self::Postgres { .. } => {
                let mut conn = PgConnection::connect(url).await?;
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await?;
                size as f64
            }
        };
        Ok(bytes / 1_048_576.0)
    }
}

/// Makes seeded user `user` a platform admin (the SAML and SCIM figures' admin calls), before
/// it ever signs in.
pub async fn make_platform_admin(database_url: &str, user: u64) -> anyhow::Result<()> {
    let sql = "UPDATE users SET is_platform_admin = TRUE WHERE id = $1";
    let id = i64::try_from(user)?;
    if database_url.starts_with("postgres") {
        let mut conn = PgConnection::connect(database_url).await?;
        sqlx::query(sql).bind(id).execute(&mut conn).await?;
    } else {
        let mut conn = SqliteConnectOptions::from_str(database_url)?
            .connect()
            .await?;
        sqlx::query(sql).bind(id).execute(&mut conn).await?;
    }
    Ok(())
}

/// One argon2id hash of `PASSWORD` with coreauth's default parameters, for every user.
pub fn password_hash() -> anyhow::Result<String> {
    let params = Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// Runs `coreauth migrate` on a new database file.
pub fn migrate(binary: &Path, database_url: &str, workdir: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("migrate")
        .current_dir(workdir)
        .env("COREAUTH_DATABASE_URL", database_url)
        .env("COREAUTH_LOG", "warn")
        .output()
        .context("running coreauth migrate")?;
    if !output.status.success() {
        bail!(
            "coreauth migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Writes org 1, `users` users (member of org 1), and one live session per user. Answers how
/// long it took.
pub async fn seed(database_url: &str, users: u64, hash: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    if database_url.starts_with("postgres") {
        seed_postgres(database_url, users, hash).await?;
    } else {
        seed_sqlite(database_url, users, hash).await?;
    }
    Ok(started.elapsed())
}

async fn seed_sqlite(database_url: &str, users: u64, hash: &str) -> anyhow::Result<()> {
    let now = now_millis();
    let mut conn = SqliteConnectOptions::from_str(database_url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    sqlx::query("PRAGMA cache_size = -262144")
        .execute(&mut conn)
        .await?;
    sqlx::query("BEGIN").execute(&mut conn).await?;
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES (?, 'Bench', ?)")
        .bind(ORG_ID)
        .bind(now)
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) \
         INSERT INTO users (id, uuid, email, email_key, first, last, is_active, \
         is_platform_admin, password_hash, password_set_at, must_change_password, created_at) \
         SELECT n, printf('00000000-0000-4000-8000-%012d', n), \
         'user' || n || '@bench.example', 'user' || n || '@bench.example', \
         'Bench', 'User ' || n, 1, 0, ?, ?, 0, ? FROM seq",
    )
    .bind(i64::try_from(users)?)
    .bind(hash)
    .bind(now)
    .bind(now)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "INSERT INTO memberships (user_id, org_id, role, is_active, created_at) \
         SELECT id, ?, 'member', 1, ? FROM users",
    )
    .bind(ORG_ID)
    .bind(now)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, org_id, method, client, address, user_agent, \
         created_at, expires_at, token_expires_at, renew_count) \
         SELECT printf('5e55%04x-0000-4000-8000-%012d', id % 65536, id), id, ?, 'password', \
         'bench', '127.0.0.1', NULL, ?, ?, ?, 0 FROM users",
    )
    .bind(ORG_ID)
    .bind(now)
    .bind(now + 12 * 3600 * 1000)
    .bind(now + 15 * 60 * 1000)
    .execute(&mut conn)
    .await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The same rows as `seed_sqlite`, in PostgreSQL's dialect.
async fn seed_postgres(database_url: &str, users: u64, hash: &str) -> anyhow::Result<()> {
    let now = now_millis();
    let mut conn = PgConnectOptions::from_str(database_url)?.connect().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, 'Bench', $2)")
        .bind(ORG_ID)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, uuid, email, email_key, first, last, is_active, \
         is_platform_admin, password_hash, password_set_at, must_change_password, created_at) \
         SELECT n, '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'), \
         'user' || n || '@bench.example', 'user' || n || '@bench.example', \
         'Bench', 'User ' || n, TRUE, FALSE, $2, $3, FALSE, $3 \
         FROM generate_series(1::bigint, $1) AS n",
    )
    .bind(i64::try_from(users)?)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO memberships (user_id, org_id, role, is_active, created_at) \
         SELECT id, $1, 'member', TRUE, $2 FROM users",
    )
    .bind(ORG_ID)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, org_id, method, client, address, user_agent, \
         created_at, expires_at, token_expires_at, renew_count) \
         SELECT '5e55' || lpad(to_hex(id % 65536), 4, '0') || '-0000-4000-8000-' || \
         lpad(id::text, 12, '0'), id, $1, 'password', 'bench', '127.0.0.1', NULL, $2, $3, $4, 0 \
         FROM users",
    )
    .bind(ORG_ID)
    .bind(now)
    .bind(now + 12 * 3600 * 1000)
    .bind(now + 15 * 60 * 1000)
    .execute(&mut *tx)
    .await?;
    // Rows inserted with their ids leave the identity sequences behind.
    for table in ["orgs", "users"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    // The bulk load leaves hundreds of MiB of dirty pages, which the checkpointer would
    // otherwise write out, spread over minutes, during the measured windows (it showed as
    // "other" cores in the scale rows). Like SQLite's `wal_checkpoint` above. It needs a
    // superuser or `pg_checkpoint`; without, the run goes on and says so.
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        eprintln!("bench: CHECKPOINT after seeding was refused ({e}); measuring without it");
    }
    Ok(())
}

/// A session token for the seeded session of each user in `user_ids`, signed with the key the
/// server created in the database.
pub async fn session_tokens(database_url: &str, user_ids: &[u64]) -> anyhow::Result<Vec<String>> {
    let settings = Settings {
        database_url: database_url.to_owned(),
        database_max_connections: 1,
        ..Settings::default()
    };
    let store = open_store(&settings, false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = store
        .signing_keys()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer =
        TokenSigner::new("coreauth".into(), keys).map_err(|e| anyhow::anyhow!("signer: {e}"))?;
    let now = now_millis() / 1000;
    let mut tokens = Vec::with_capacity(user_ids.len());
    for &user in user_ids {
        let claims = SessionClaims {
            iss: "coreauth".into(),
            aud: SESSION_AUDIENCE.into(),
            sub: user_uuid(user),
            uid: i64::try_from(user)?,
            org: ORG_ID,
            role: "member".into(),
            sid: session_id(user),
            iat: now,
            // Longer than the server's own tokens (15 minutes), up to the seeded sessions'
            // end, so that a long run (more rounds, longer windows) cannot outlive them.
            exp: now + 11 * 3600,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: None,
            client_id: None,
        };
        tokens.push(
            signer
                .sign(&claims)
                .map_err(|e| anyhow::anyhow!("signing: {e}"))?,
        );
    }
    Ok(tokens)
}

/// `count` user ids spread evenly over 1..=users.
pub fn spread(users: u64, count: u64) -> Vec<u64> {
    let count = count.clamp(1, users.max(1));
    let step = users / count;
    (0..count).map(|k| 1 + k * step).collect()
}

fn now_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_ones_the_seeding_sql_writes() {
        assert_eq!(user_uuid(42), "00000000-0000-4000-8000-000000000042");
        assert_eq!(session_id(70_000), "5e551170-0000-4000-8000-000000070000");
    }

    #[test]
    fn picks_are_spread_and_in_range() {
        assert_eq!(spread(1000, 4), vec![1, 251, 501, 751]);
        assert_eq!(spread(3, 10), vec![1, 2, 3]);
    }
}
