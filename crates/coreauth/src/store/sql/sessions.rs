//! Sessions, and what a request reads about the member behind one.

use super::*;

#[async_trait]
impl SessionStore for Backend {
    async fn create_session(
        &self,
        s: &SessionRecord,
        audit: &NewAuditEvent,
        settles: &ThrottleSettlement,
    ) -> StoreResult<()> {
        if let Some(done) = Shortcuts::open_session(self, s, audit, settles).await {
            return done;
        }
        let mut tx = self.write_tx().await?;
        // The audit insert comes last, as in every audited write: on PostgreSQL it takes the
        // audit lock, and a login holding it while waiting for a row lock (the throttle row,
        // while another login counts on it) could deadlock with that row's holder.
        settle_throttle(&mut tx, settles).await?;
        bind_session(sqlx::query(insert_session_sql!()), s)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // Only when it changes: a login to the same org as last time writes nothing more.
        sqlx::query(
            "UPDATE users SET last_org_id = $1 WHERE id = $2 AND last_org_id IS DISTINCT FROM $1",
        )
        .bind(s.org_id)
        .bind(s.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn session_context(&self, id: &str) -> StoreResult<Option<SessionContext>> {
        if !storable(id) {
            return Ok(None);
        }
        let row: Option<SessionContextRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, s.org_id, s.method, s.client, s.address, s.user_agent, \
             s.created_at, s.expires_at, s.token_expires_at, s.last_renewed_at, s.renew_count, \
             s.revoked_at, s.restriction, u.uuid AS user_uuid, u.is_active AS user_active, \
             u.is_platform_admin, m.role, m.is_active AS membership_active \
             FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             JOIN memberships m ON m.user_id = s.user_id AND m.org_id = s.org_id \
             WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(SessionContext {
                role: parse_role(&r.role)?,
                session: std::sync::Arc::new(r.session),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn member(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MemberRecord>> {
        let row: Option<MemberRow> = sqlx::query_as(
            "SELECT u.id, u.uuid, u.email, u.first, u.last, u.is_active, u.is_platform_admin, \
             u.password_hash, u.password_set_at, u.must_change_password, u.created_at, \
             u.home_org_id, u.last_org_id, u.username, u.kind = 'service' AS is_service, \
             u.email_verified_at, \
             o.name AS org_name, \
             p.min_length, p.max_age_days, p.history_count, p.reject_common, p.require_mfa, \
             p.require_verified_email, \
             EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id \
              AND t.confirmed_at IS NOT NULL) AS mfa_enabled \
             FROM users u JOIN orgs o ON o.id = $1 \
             LEFT JOIN password_policies p ON p.org_id = o.id \
             WHERE u.id = $2",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let policy = row.policy();
        Ok(Some(MemberRecord {
            org: OrgRecord {
                id: org_id,
                name: row.org_name,
                email_domains: org_domains(self.reads(), org_id).await?,
            },
            user: row.user,
            policy,
            mfa_enabled: row.mfa_enabled,
        }))
    }

    async fn record_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
        let done = self.write_renewals(renewals).await;
        for renewal in renewals {
            self.changes.announce(&match &done {
                Ok(()) => Change::Renewed(renewal.clone()),
                Err(_) => Change::Session(renewal.session_id.clone()),
            });
        }
        done
    }

    async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Session(id.to_owned()));
        if !storable(id) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        // The row lock makes a second, concurrent revocation wait, re-read the row and find it
        // revoked already: one revocation, one event.
        let renew_count: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL AND (CAST($3 AS BIGINT) IS NULL OR user_id = $3) \
             RETURNING renew_count",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(renew_count) = renew_count else {
            return Ok(false);
        };
        let mut audit = audit.clone();
        audit.details["renewCount"] = renew_count.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND (CAST($3 AS BIGINT) IS NULL OR org_id = $3)",
        )
        .bind(now)
        .bind(user_id)
        .bind(in_org)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn lift_session_restriction(
        &self,
        session_id: &str,
        restriction: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self
            .changes
            .on_return(Change::Session(session_id.to_owned()));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET restriction = NULL WHERE id = $1 AND restriction = $2 \
             AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(restriction)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<SessionRecord> = sqlx::query_as(
            "SELECT id, user_id, org_id, method, client, address, user_agent, created_at, \
             expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at, restriction \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND token_expires_at > $2 \
             AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().collect())
    }
}
