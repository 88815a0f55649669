//! API keys.

use super::*;

#[async_trait]
impl KeyStore for Backend {
    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord> {
        let mut tx = self.write_tx().await?;
        // Creations for one user go one at a time, so two at once cannot both count the same
        // number of keys and both pass the cap. NO KEY UPDATE leaves the key-share locks that
        // other inserts take on the user row (through foreign keys) alone.
        sqlx::query(locking!("SELECT id FROM users WHERE id = $1"))
            .bind(key.user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = $1")
            .bind(key.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if owned >= max_per_user {
            return Err(StoreError::Conflict(format!(
                "a user may have at most {max_per_user} API keys; delete one first"
            )));
        }
        let row: ApiKeyRecord = sqlx::query_as(returning_api_key!(
            "INSERT INTO api_keys (public_id, user_id, org_id, name, prefix, key_hash, scopes, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&key.public_id)
        .bind(key.user_id)
        .bind(key.org_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(&key.scopes)
        .bind(key.created_at)
        .bind(key.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(row)
    }

    async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>> {
        let row: Option<ApiKeyContextRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            ", u.uuid AS user_uuid, u.is_active AS user_active, m.role, \
             m.is_active AS membership_active FROM api_keys k \
             JOIN users u ON u.id = k.user_id \
             JOIN memberships m ON m.user_id = k.user_id AND m.org_id = k.org_id \
             WHERE k.key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(ApiKeyContext {
                role: parse_role(&r.role)?,
                key: std::sync::Arc::new(r.key),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRecord> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.user_id = $1 AND k.org_id = $2 ORDER BY k.id"
        ))
        .bind(user_id)
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().collect())
    }

    async fn api_keys_in_org(&self, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRecord> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.org_id = $1 ORDER BY k.id"
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().collect())
    }

    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        if !storable(public_id) {
            return Ok(None);
        }
        // Whose key it was is known once it is deleted; a failure before that may be anyone's.
        let mut changed = self.changes.on_return(Change::Everything);
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRecord> = sqlx::query_as(returning_api_key!(
            "DELETE FROM api_keys WHERE public_id = $1 AND org_id = $2 \
             AND (CAST($3 AS BIGINT) IS NULL OR user_id = $3)"
        ))
        .bind(public_id)
        .bind(org_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        changed.instead(row.as_ref().map(|key| Change::User(key.user_id)));
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_key_by_hash(
        &self,
        key_hash: &[u8],
        owner: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut changed = self.changes.on_return(Change::Everything);
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRecord> = sqlx::query_as(returning_api_key!(
            "DELETE FROM api_keys WHERE key_hash = $1 AND org_id = $2 AND user_id = $3"
        ))
        .bind(key_hash)
        .bind(org_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        changed.instead(row.as_ref().map(|key| Change::User(key.user_id)));
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_keys_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<u64> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let deleted = delete_keys_in(&mut tx, user_id, in_org).await?;
        let mut audit = audit.clone();
        audit.details["keysDeleted"] = deleted.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn rotate_api_key(
        &self,
        public_id: &str,
        owner: i64,
        org_id: i64,
        new: NewApiKey,
        overlap_ends: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(ApiKeyRecord, ApiKeyRecord)>> {
        if !storable(public_id) {
            return Ok(None);
        }
        let _changed = self.changes.on_return(Change::User(owner));
        let mut tx = self.write_tx().await?;
        // Locked, so two rotations of one key at once make one new key, not two.
        let id: Option<i64> = sqlx::query_scalar(locking!(
            "SELECT id FROM api_keys WHERE public_id = $1 AND user_id = $2 AND org_id = $3"
        ))
        .bind(public_id)
        .bind(owner)
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(id) = id else {
            return Ok(None);
        };
        let old: ApiKeyRecord = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(successor) = &old.replaced_by {
            return Err(StoreError::Conflict(format!(
                "this key was already rotated: its successor is {successor}"
            )));
        }
        if old.expires_at.is_some_and(|at| at <= new.created_at) {
            return Err(StoreError::Conflict(
                "this key has expired: create a new one".into(),
            ));
        }
        let created: ApiKeyRecord = sqlx::query_as(returning_api_key!(
            "INSERT INTO api_keys (public_id, user_id, org_id, name, prefix, key_hash, scopes, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&new.public_id)
        .bind(new.user_id)
        .bind(new.org_id)
        .bind(&new.name)
        .bind(&new.prefix)
        .bind(&new.key_hash)
        .bind(&new.scopes)
        .bind(new.created_at)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let replaced: ApiKeyRecord = sqlx::query_as(returning_api_key!(
            "UPDATE api_keys SET replaced_by = $1, replaced_at = $2, \
             expires_at = CASE WHEN expires_at IS NULL OR expires_at > $3 THEN $3 \
             ELSE expires_at END WHERE id = $4"
        ))
        .bind(&new.public_id)
        .bind(new.created_at)
        .bind(overlap_ends)
        .bind(old.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some((replaced, created)))
    }

    async fn service_accounts_in(&self, org_id: i64) -> StoreResult<Vec<ServiceAccountRecord>> {
        let rows: Vec<ServiceAccountRow> = sqlx::query_as(service_account_columns!(
            "WHERE u.kind = 'service' AND u.home_org_id = $1 ORDER BY u.id"
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(ServiceAccountRow::into_record)
            .collect()
    }

    async fn service_account(
        &self,
        org_id: i64,
        uuid: &str,
    ) -> StoreResult<Option<ServiceAccountRecord>> {
        if !storable(uuid) {
            return Ok(None);
        }
        let row: Option<ServiceAccountRow> = sqlx::query_as(service_account_columns!(
            "WHERE u.kind = 'service' AND u.home_org_id = $1 AND u.uuid = $2"
        ))
        .bind(org_id)
        .bind(uuid)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(ServiceAccountRow::into_record).transpose()
    }

    async fn delete_service_account(
        &self,
        user_id: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let keys = delete_keys_in(&mut tx, user_id, None).await?;
        // Its sessions are its OAuth client tokens' (client credentials).
        for statement in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM memberships WHERE user_id = $1",
        ] {
            sqlx::query(statement)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let deleted = sqlx::query(
            "DELETE FROM users WHERE id = $1 AND kind = 'service' AND home_org_id = $2",
        )
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if deleted == 0 {
            // Not a service account of this org: nothing of it may go.
            return Ok(false);
        }
        let mut audit = audit.clone();
        audit.details["keysDeleted"] = keys.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> StoreResult<()> {
        // Every instance flushes its own batch: taking the row locks in key order means two
        // flushes over the same keys wait for each other instead of deadlocking.
        let mut ordered: Vec<&(i64, i64, Option<String>)> = usage.iter().collect();
        ordered.sort_by_key(|(id, at, _)| (*id, *at));
        let mut tx = self.write_tx().await?;
        for (id, at, address) in ordered {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1, last_used_address = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(address.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        // Each instance asks once per key and address (it remembers the answer): a pair known
        // already, as after every restart, costs a read rather than a turn at the writer.
        let known: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM api_key_addresses WHERE key_id = $1 AND address = $2",
        )
        .bind(key_id)
        .bind(address)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        if known.is_some() {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        // A concurrent insert of the same pair waits for the first to commit, then does nothing:
        // the first use from an address is recorded, and audited, once.
        let done = sqlx::query(
            "INSERT INTO api_key_addresses (key_id, address, first_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let first = done.rows_affected() == 1;
        if first {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(first)
    }
}
