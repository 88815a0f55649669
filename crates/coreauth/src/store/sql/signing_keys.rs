//! The keys tokens are signed with.

use super::*;

#[async_trait]
impl SigningKeyStore for Backend {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        type Row = (String, String, Vec<u8>, i64, i64, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT kid, algorithm, private_key, created_at, activates_at, retired_at \
             FROM signing_keys ORDER BY activates_at, kid",
        )
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(kid, algorithm, seed, created_at, activates_at, retired_at)| StoredSigningKey {
                    kid,
                    algorithm,
                    seed: Zeroizing::new(seed),
                    created_at,
                    activates_at,
                    retired_at,
                },
            )
            .collect())
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Instances starting together on an empty PostgreSQL database would each see no key.
        lock_table(&mut tx, "signing_keys").await?;
        insert_key(INSERT_FIRST, key)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        after: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        lock_table(&mut tx, "signing_keys").await?;
        let done = insert_key(INSERT_UNLESS_LATER, key)
            .bind(after)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }

    async fn retire_signing_key(
        &self,
        kid: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // An empty seed: the private half of a retired key is not kept.
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1, private_key = $2 \
             WHERE kid = $3 AND retired_at IS NULL",
        )
        .bind(now)
        .bind(Vec::<u8>::new())
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }
}

/// Binds `key` to `$1`–`$5` of one of the inserts below.
fn insert_key<'q>(
    sql: &'static str,
    key: &'q StoredSigningKey,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
    sqlx::query(sql)
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(key.seed.as_slice())
        .bind(key.created_at)
        .bind(key.activates_at)
}

macro_rules! insert_key_sql {
    ($condition:literal) => {
        concat!(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at, activates_at) \
             SELECT $1, $2, $3, $4, $5 ",
            $condition
        )
    };
}

const INSERT_FIRST: &str = insert_key_sql!("WHERE NOT EXISTS (SELECT 1 FROM signing_keys)");
/// `$6`: the `activates_at` no key may be later than, or NULL.
const INSERT_UNLESS_LATER: &str = insert_key_sql!(
    "WHERE CAST($6 AS BIGINT) IS NULL OR NOT EXISTS (SELECT 1 FROM signing_keys \
     WHERE retired_at IS NULL AND activates_at > $6)"
);
