//! The audit trail.

use super::*;

#[async_trait]
impl AuditStore for Backend {
    async fn record_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        // A transaction of its own, for the advisory lock that insert_audit holds to commit.
        let mut tx = self.write_tx().await?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        if q.event.as_deref().is_some_and(|event| !storable(event)) {
            return Ok(Vec::new());
        }
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events \
             WHERE (CAST($1 AS BIGINT) IS NULL OR org_id = $1) \
             AND (CAST($2 AS BIGINT) IS NULL OR actor_user_id = $2 OR subject_user_id = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR event = $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR occurred_at >= $4) \
             AND (CAST($5 AS BIGINT) IS NULL OR occurred_at < $5) \
             AND (CAST($6 AS BIGINT) IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(q.org_id)
        .bind(q.user_id)
        .bind(q.event.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(q.before)
        .bind(i64::from(q.limit))
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn audit_events_after(&self, after_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        // Complete up to the newest id read: see insert_audit for why no lower id can appear
        // later.
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM audit_events WHERE occurred_at < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
}
