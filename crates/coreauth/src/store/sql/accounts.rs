//! Users, orgs and memberships.

use super::*;

#[async_trait]
impl UserStore for Backend {
    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>> {
        if !storable(email_key) {
            return Ok(None);
        }
        let row: Option<UserRecord> = sqlx::query_as(select_user!("WHERE email_key = $1"))
            .bind(email_key)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        Ok(row)
    }

    async fn user_by_username(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        if !storable(username_key) {
            return Ok(None);
        }
        let row: Option<UserRecord> = sqlx::query_as(select_user!("WHERE username_key = $1"))
            .bind(username_key)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        Ok(row)
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRecord> = sqlx::query_as(select_user!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        Ok(row)
    }

    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> StoreResult<UserRecord> {
        let mut tx = self.write_tx().await?;
        let user_id = insert_user(&mut tx, &user).await?;
        if let Some((org_id, role)) = user.membership {
            insert_membership(&mut tx, org_id, user_id, role, user.created_at).await?;
            if let Some((issuer, subject)) = &user.sso_identity {
                insert_sso_identity(
                    &mut tx,
                    org_id,
                    (issuer.as_str(), subject.as_str()),
                    user_id,
                    user.created_at,
                )
                .await?;
            }
        }
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        insert_audit(&mut tx, &audit).await?;
        let created = user_in(&mut tx, user_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted user vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(UserRecord, Revoked)>> {
        let _changed = self.changes.on_return(Change::User(id));
        let mut tx = self.write_tx().await?;
        // One statement: the row lock it takes makes concurrent patches apply one after the
        // other, each to the other's result.
        let username = patch.username.as_ref();
        let updated: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "UPDATE users SET first = COALESCE($1, first), last = COALESCE($2, last), \
             is_active = COALESCE($3, is_active), \
             username = CASE WHEN $4 THEN $5 ELSE username END, \
             username_key = CASE WHEN $4 THEN $6 ELSE username_key END \
             WHERE id = $7 RETURNING id",
        )
        .bind(patch.first.as_deref())
        .bind(patch.last.as_deref())
        .bind(patch.is_active)
        .bind(username.is_some())
        .bind(
            username
                .and_then(|u| u.as_ref())
                .map(|(name, _)| name.as_str()),
        )
        .bind(
            username
                .and_then(|u| u.as_ref())
                .map(|(_, key)| key.as_str()),
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await;
        let updated = match updated {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("this username is taken".into()));
            }
            other => other.map_err(db_error)?,
        };
        if updated.is_none() {
            return Ok(None);
        }
        let mut revoked = Revoked::default();
        if patch.is_active == Some(false) {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let user = user_in(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user.map(|u| (u, revoked)))
    }

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<OrgRecord> {
        let mut tx = self.write_tx().await?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        for domain in email_domains {
            sqlx::query(
                "INSERT INTO org_email_domains (org_id, domain) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let mut audit = audit.clone();
        audit.org_id = Some(id);
        audit.subject = Some(format!("org:{id}"));
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        let mut domains = email_domains.to_vec();
        domains.sort();
        domains.dedup();
        Ok(OrgRecord {
            id,
            name: name.to_owned(),
            email_domains: domains,
        })
    }

    async fn org(&self, id: i64) -> StoreResult<Option<OrgRecord>> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        let Some(name) = name else {
            return Ok(None);
        };
        Ok(Some(OrgRecord {
            id,
            name,
            email_domains: org_domains(self.reads(), id).await?,
        }))
    }

    async fn memberships_of(&self, user_id: i64) -> StoreResult<Vec<MembershipRecord>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
             FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 \
             ORDER BY m.org_id",
        )
        .bind(user_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }

    async fn membership(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MembershipRecord>> {
        let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
            .bind(user_id)
            .bind(org_id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        row.map(MembershipRecord::try_from).transpose()
    }

    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<MembershipRecord> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        if user_in(&mut tx, user_id).await?.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        insert_membership(&mut tx, org_id, user_id, role, now).await?;
        insert_audit(&mut tx, audit).await?;
        let membership = membership_in(&mut tx, user_id, org_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted membership vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(membership)
    }

    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(MembershipRecord, Revoked)>> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // Membership changes within one org go one at a time: without this, two admins demoting
        // each other at once would each count the other as the remaining admin, and two partial
        // patches of one membership would each write back the other's old value.
        if !lock_org_memberships(&mut tx, org_id).await? {
            return Ok(None);
        }
        let Some(current) = membership_in(&mut tx, user_id, org_id).await? else {
            return Ok(None);
        };
        let role = patch.role.unwrap_or(current.role);
        let is_active = patch.is_active.unwrap_or(current.is_active);
        let stays_admin = role.is_admin() && is_active;
        if current.role.is_admin()
            && current.is_active
            && !stays_admin
            && other_active_admins(&mut tx, org_id, user_id).await? == 0
        {
            return Err(StoreError::Conflict(LAST_ADMIN.into()));
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, is_active = $2 WHERE user_id = $3 AND org_id = $4",
        )
        .bind(role.as_str())
        .bind(is_active)
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut revoked = Revoked::default();
        if !is_active {
            revoked.sessions = revoke_sessions_in(&mut tx, user_id, org_id, now).await?;
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let updated = membership_in(&mut tx, user_id, org_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated.map(|m| (m, revoked)))
    }
}
