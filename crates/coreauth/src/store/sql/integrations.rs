//! Integration token settings.

use super::*;

#[async_trait]
impl IntegrationStore for Backend {
    async fn save_integration(
        &self,
        i: &IntegrationRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, i.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        let (algorithm, audience, issuer, remote) = stored_kind(&i.kind)?;
        sqlx::query(
            "INSERT INTO integrations (org_id, name, algorithm, secret, audience, issuer, \
             lifetime_secs, claims, custom_claims, allow_api_keys, updated_at, remote) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (org_id, name) DO UPDATE SET algorithm = excluded.algorithm, \
             secret = excluded.secret, audience = excluded.audience, issuer = excluded.issuer, \
             lifetime_secs = excluded.lifetime_secs, claims = excluded.claims, \
             custom_claims = excluded.custom_claims, allow_api_keys = excluded.allow_api_keys, \
             updated_at = excluded.updated_at, remote = excluded.remote",
        )
        .bind(i.org_id)
        .bind(&i.name)
        .bind(algorithm)
        .bind(i.sealed_secret.as_deref())
        .bind(audience)
        .bind(issuer)
        .bind(i64::from(i.lifetime_secs))
        .bind(serde_json::to_string(&i.claims).map_err(StoreError::internal)?)
        .bind(serde_json::Value::Object(i.custom_claims.clone()).to_string())
        .bind(i.allow_api_keys)
        .bind(now)
        .bind(remote)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn integration(&self, org_id: i64, name: &str) -> StoreResult<Option<IntegrationRecord>> {
        if !storable(name) {
            return Ok(None);
        }
        let row: Option<IntegrationRow> =
            sqlx::query_as(select_integration!("WHERE org_id = $1 AND name = $2"))
                .bind(org_id)
                .bind(name)
                .fetch_optional(self.reads())
                .await
                .map_err(db_error)?;
        row.map(IntegrationRecord::try_from).transpose()
    }

    async fn integrations_of(&self, org_id: i64) -> StoreResult<Vec<IntegrationRecord>> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(concat!(
            select_integration!("WHERE org_id = $1 ORDER BY name"),
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter().map(IntegrationRecord::try_from).collect()
    }

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        if !storable(name) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM integrations WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }
}
