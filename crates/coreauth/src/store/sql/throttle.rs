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
        if let Some(counted) = Shortcuts::count_attempts(self, keys, now, window_ms).await {
            return counted;
        }
        // The first attempt inserts, every other one (on any instance) takes the row lock and
        // counts on top of the previous count, so none is lost. Rows are taken in the order of
        // `keys`, so two transactions never lock the same two rows in opposite order.
        let mut tx = self.write_tx().await?;
        let mut counted = Vec::with_capacity(keys.len());
        for key in keys {
            counted.push(
                sqlx::query_as(
                    "INSERT INTO throttle (key, attempts, window_start) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                     attempts = CASE WHEN throttle.window_start + $3 <= $2 THEN 1 \
                                     ELSE throttle.attempts + 1 END, \
                     window_start = CASE WHEN throttle.window_start + $3 <= $2 THEN $2 \
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

    async fn settle_throttle(&self, settlement: &ThrottleSettlement) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        settle_throttle(&mut tx, settlement).await?;
        tx.commit().await.map_err(db_error)
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
