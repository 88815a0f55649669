//! Passwords, their policy and history, and the second factor (TOTP, recovery codes).

use super::*;

#[async_trait]
impl CredentialStore for Backend {
    async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>> {
        let row: Option<PolicyRow> = sqlx::query_as(
            "SELECT min_length, max_age_days, history_count, reject_common, require_mfa, \
             require_verified_email FROM password_policies WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        Ok(row.map(PasswordPolicy::from))
    }

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        sqlx::query(
            "INSERT INTO password_policies \
             (org_id, min_length, max_age_days, history_count, reject_common, require_mfa, \
             updated_at, require_verified_email) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (org_id) DO UPDATE SET min_length = excluded.min_length, \
             max_age_days = excluded.max_age_days, history_count = excluded.history_count, \
             reject_common = excluded.reject_common, require_mfa = excluded.require_mfa, \
             require_verified_email = excluded.require_verified_email, \
             updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(i64::from(policy.min_length))
        .bind(i64::from(policy.max_age_days))
        .bind(i64::from(policy.history_count))
        .bind(policy.reject_common)
        .bind(policy.require_mfa)
        .bind(now)
        .bind(policy.require_verified_email)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn password_history(&self, user_id: i64, limit: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT password_hash FROM password_history WHERE user_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let _changed = self.changes.on_return(Change::User(change.user_id));
        let mut tx = self.write_tx().await?;
        // The row stays locked until commit: a concurrent change waits here, then reads the hash
        // this one wrote, and is refused if it had decided against the old one.
        let current: Option<Option<String>> =
            sqlx::query_scalar(locking!("SELECT password_hash FROM users WHERE id = $1"))
                .bind(change.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound("user"));
        };
        if let Some(token_hash) = &change.consumes_token {
            let token = super::email::use_email_token(
                &mut tx,
                token_hash,
                TokenPurpose::PasswordReset,
                change.now,
            )
            .await?;
            if token.user_id != Some(change.user_id) {
                return Err(StoreError::Conflict(
                    "this link is for another account".into(),
                ));
            }
        }
        if let Some(expected) = &change.expected_hash
            && current.as_ref() != Some(expected)
        {
            return Err(StoreError::Conflict(
                "the password was changed meanwhile; try again".into(),
            ));
        }
        if let Some(old) = &current {
            sqlx::query(
                "INSERT INTO password_history (user_id, password_hash, set_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(change.user_id)
            .bind(old)
            .bind(change.now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "DELETE FROM password_history WHERE user_id = $1 AND id NOT IN \
                 (SELECT id FROM password_history WHERE user_id = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(change.user_id)
            .bind(PASSWORD_HISTORY_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        // Any change of password makes the reset links still out links to an old state.
        sqlx::query(
            "UPDATE email_tokens SET superseded_at = $1 WHERE user_id = $2 \
             AND purpose = 'password_reset' AND used_at IS NULL AND superseded_at IS NULL",
        )
        .bind(change.now)
        .bind(change.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, password_set_at = $2, \
             must_change_password = $3 WHERE id = $4",
        )
        .bind(&change.new_hash)
        .bind(change.now)
        .bind(change.must_change)
        .bind(change.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND (CAST($3 AS TEXT) IS NULL OR id <> $3)",
        )
        .bind(change.now)
        .bind(change.user_id)
        .bind(change.keep_session.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        if change.delete_api_keys {
            let deleted = delete_keys_in(&mut tx, change.user_id, None).await?;
            audit.details["keysDeleted"] = deleted.into();
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        // Conditional on the old hash, re-checked after any concurrent change's row lock: a
        // password changed meanwhile is never overwritten by the upgrade.
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(self.writes())
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_of(&self, user_id: i64) -> StoreResult<Option<TotpRecord>> {
        let row: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT secret, confirmed_at, last_used_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        Ok(
            row.map(|(sealed_secret, confirmed_at, last_used_step)| TotpRecord {
                sealed_secret,
                confirmed_at,
                last_used_step,
            }),
        )
    }

    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // One statement: replaces an unconfirmed enrolment, and leaves a confirmed one alone
        // even if it was confirmed a moment ago by another request (the upsert re-reads the
        // row under its lock), which it then reports as the conflict.
        let done = sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
             created_at = excluded.created_at, confirmed_at = NULL, last_used_step = NULL \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "TOTP is already enabled; disable it first to enrol again".into(),
            ));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn confirm_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // Two confirmations at once: the second waits for the first's row lock, re-reads the
        // row, finds it confirmed and changes nothing.
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = $1, last_used_step = $2 \
             WHERE user_id = $3 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for hash in recovery_code_hashes {
            sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE sessions SET restriction = NULL \
             WHERE user_id = $1 AND restriction IS NOT NULL",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn consume_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        // One conditional UPDATE: parallel replays of a code queue on the row lock, and each
        // after the first re-evaluates the condition against the step the first stored.
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_used_step = $1 WHERE user_id = $2 \
             AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(self.writes())
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // The sub-select runs once, before any lock; the outer `used_at IS NULL` is what a
        // concurrent use of the same code re-checks after waiting for the row lock, so the
        // second use changes nothing.
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 \
             WHERE used_at IS NULL AND id = (SELECT id FROM mfa_recovery_codes \
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL LIMIT 1)",
        )
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::User(user_id));
        sqlx::query("UPDATE mfa_totp SET secret = $1 WHERE user_id = $2")
            .bind(sealed_secret)
            .bind(user_id)
            .execute(self.writes())
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }
}
