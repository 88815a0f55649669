//! Attempt counters.

use super::*;

#[async_trait]
impl ThrottleStore for Backend {
    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.count_attempts(keys, now, window_ms).await
    }

    async fn clear_throttle(&self, key: &str) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        delete_throttle(&mut conn, key).await
    }

    async fn prune_throttle(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM throttle WHERE window_start < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
}
