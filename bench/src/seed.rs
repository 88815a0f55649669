//! Seeding: the schema comes from `coreauth migrate` (the binary's own migrations), then users,
//! memberships and live sessions are written with a few set-based SQL statements straight into
//! the SQLite file, every user sharing one precomputed argon2id hash. A million users and a
//! million sessions take seconds this way instead of a million password hashes.
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
use coreauth::domain::tokens::{SESSION_AUDIENCE, SessionClaims, TokenSigner};
use coreauth::store::Store;
use coreauth::store::sqlite::{SqliteSettings, SqliteStore};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// The password of every seeded user.
pub const PASSWORD: &str = "bench password 0123456789";
/// The org every seeded user is a member of.
pub const ORG_ID: i64 = 1;

/// Seeded user `n` (1-based; user ids are 1..=users).
pub fn email(n: u64) -> String {
    format!("user{n}@bench.example")
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
    Ok(started.elapsed())
}

/// A session token for the seeded session of each user in `user_ids`, signed with the key the
/// server created in the database.
pub async fn session_tokens(database_url: &str, user_ids: &[u64]) -> anyhow::Result<Vec<String>> {
    let store = SqliteStore::connect(&SqliteSettings {
        url: database_url.to_owned(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    })
    .await?;
    let keys = store
        .signing_keys()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer =
        TokenSigner::new("coreauth".into(), keys).map_err(|e| anyhow::anyhow!("signer: {e}"))?;
    let mut conn = SqliteConnectOptions::from_str(database_url)?
        .connect()
        .await?;
    let now = now_millis() / 1000;
    let mut tokens = Vec::with_capacity(user_ids.len());
    for &user in user_ids {
        let (sid, uuid): (String, String) = sqlx::query_as(
            "SELECT s.id, u.uuid FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.user_id = ? AND s.revoked_at IS NULL LIMIT 1",
        )
        .bind(i64::try_from(user)?)
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("the seeded session of user {user}"))?;
        let claims = SessionClaims {
            iss: "coreauth".into(),
            aud: SESSION_AUDIENCE.into(),
            sub: uuid,
            uid: i64::try_from(user)?,
            org: ORG_ID,
            role: "member".into(),
            sid,
            iat: now,
            exp: now + 15 * 60,
            jti: uuid::Uuid::new_v4().to_string(),
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
    fn picks_are_spread_and_in_range() {
        assert_eq!(spread(1000, 4), vec![1, 251, 501, 751]);
        assert_eq!(spread(3, 10), vec![1, 2, 3]);
    }
}
