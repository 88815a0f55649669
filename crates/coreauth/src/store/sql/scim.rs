//! SCIM provisioning: directory tokens and the members a directory manages (its groups are in
//! `scim_groups.rs`).

use super::*;
use crate::store::records::{
    NewScimToken, ScimAccountFields, ScimTokenRecord, ScimUserLookup, ScimUserRecord, ScimUserWrite,
};

/// A person member of org `$1`, with the directory's record of them, by user id.
macro_rules! select_scim_user {
    ($rest:literal) => {
        concat!(
            "SELECT u.id, u.uuid, u.email, u.first, u.last, u.is_active, u.is_platform_admin, ",
            "u.password_hash, u.password_set_at, u.must_change_password, u.created_at, ",
            "u.home_org_id, u.last_org_id, u.username, u.kind = 'service' AS is_service, ",
            "u.email_verified_at, m.role, m.is_active AS member_active, ",
            "m.created_at AS member_since, s.external_id, s.attributes, s.updated_at, s.version ",
            "FROM memberships m JOIN users u ON u.id = m.user_id ",
            "LEFT JOIN scim_users s ON s.org_id = m.org_id AND s.user_id = m.user_id ",
            "WHERE m.org_id = $1 AND u.kind = 'person' ",
            $rest,
            " ORDER BY u.id"
        )
    };
}

macro_rules! select_scim_token {
    ($rest:literal) => {
        concat!(
            "SELECT id, public_id, org_id, name, created_by, created_at, last_used_at ",
            "FROM scim_tokens ",
            $rest
        )
    };
}

#[async_trait]
impl ScimStore for Backend {
    async fn create_scim_token(
        &self,
        token: &NewScimToken,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimTokenRecord> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, token.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scim_tokens (public_id, org_id, name, token_hash, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&token.public_id)
        .bind(token.org_id)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(token.created_by)
        .bind(token.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(ScimTokenRecord {
            id,
            public_id: token.public_id.clone(),
            org_id: token.org_id,
            name: token.name.clone(),
            created_by: token.created_by,
            created_at: token.created_at,
            last_used_at: None,
        })
    }

    async fn scim_tokens(&self, org_id: i64) -> StoreResult<Vec<ScimTokenRecord>> {
        sqlx::query_as(select_scim_token!("WHERE org_id = $1 ORDER BY id"))
            .bind(org_id)
            .fetch_all(self.reads())
            .await
            .map_err(db_error)
    }

    async fn delete_scim_token(
        &self,
        org_id: i64,
        public_id: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        if !storable(public_id) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query("DELETE FROM scim_tokens WHERE org_id = $1 AND public_id = $2")
            .bind(org_id)
            .bind(public_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        commit_if_changed(tx, rows, audit).await
    }

    async fn use_scim_token(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<ScimTokenRecord>> {
        // From the writers: a token just made, or just revoked, is judged as it now is.
        let token: Option<ScimTokenRecord> =
            sqlx::query_as(select_scim_token!("WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(self.writes())
                .await
                .map_err(db_error)?;
        let stale = token
            .as_ref()
            .is_some_and(|t| t.last_used_at.is_none_or(|at| at < now - 60_000));
        if let (true, Some(token)) = (stale, &token) {
            sqlx::query("UPDATE scim_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id)
                .execute(self.writes())
                .await
                .map_err(db_error)?;
        }
        Ok(token)
    }

    async fn scim_users(
        &self,
        org_id: i64,
        lookup: &ScimUserLookup,
    ) -> StoreResult<Vec<ScimUserRecord>> {
        let (sql, value) = match lookup {
            ScimUserLookup::All => (select_scim_user!(""), None),
            ScimUserLookup::Uuid(v) => (select_scim_user!("AND u.uuid = $2"), Some(v)),
            ScimUserLookup::EmailKey(v) => (select_scim_user!("AND u.email_key = $2"), Some(v)),
            ScimUserLookup::UsernameKey(v) => {
                (select_scim_user!("AND u.username_key = $2"), Some(v))
            }
            ScimUserLookup::ExternalId(v) => (select_scim_user!("AND s.external_id = $2"), Some(v)),
        };
        if value.is_some_and(|v| !storable(v)) {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, ScimUserRow>(sql).bind(org_id);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.reads()).await.map_err(db_error)?;
        rows.into_iter().map(ScimUserRecord::try_from).collect()
    }

    async fn create_scim_user(
        &self,
        user: NewUser,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimUserRecord> {
        let mut tx = self.write_tx().await?;
        let (org_id, role) = user
            .membership
            .ok_or_else(|| StoreError::internal("a SCIM user without its org"))?;
        let user_id = insert_user(&mut tx, &user).await?;
        insert_membership(&mut tx, org_id, user_id, role, user.created_at).await?;
        finish_scim_user(tx, user_id, write, audit).await
    }

    async fn link_scim_user(
        &self,
        user_id: i64,
        role: Role,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimUserRecord> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        insert_membership(&mut tx, write.org_id, user_id, role, write.now).await?;
        finish_scim_user(tx, user_id, write, audit).await
    }

    async fn update_scim_user(
        &self,
        user_id: i64,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(ScimUserRecord, Revoked)>> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        if !lock_org_memberships(&mut tx, write.org_id).await? {
            return Ok(None);
        }
        let Some(current) = membership_in(&mut tx, user_id, write.org_id).await? else {
            return Ok(None);
        };
        if let Some(account) = &write.account {
            update_account(&mut tx, user_id, account).await?;
        }
        let mut revoked = Revoked::default();
        if current.is_active && !write.member_active {
            if current.role.is_admin()
                && other_active_admins(&mut tx, write.org_id, user_id).await? == 0
            {
                return Err(StoreError::Conflict(LAST_ADMIN.into()));
            }
            revoked.sessions =
                revoke_sessions_in(&mut tx, user_id, write.org_id, write.now).await?;
        }
        if current.is_active != write.member_active {
            sqlx::query("UPDATE memberships SET is_active = $1 WHERE user_id = $2 AND org_id = $3")
                .bind(write.member_active)
                .bind(user_id)
                .bind(write.org_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        let updated = finish_scim_user(tx, user_id, write, &audit).await?;
        Ok(Some((updated, revoked)))
    }

    async fn remove_scim_user(
        &self,
        org_id: i64,
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Revoked>> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        if !lock_org_memberships(&mut tx, org_id).await? {
            return Ok(None);
        }
        let Some(current) = membership_in(&mut tx, user_id, org_id).await? else {
            return Ok(None);
        };
        if current.role.is_admin()
            && current.is_active
            && other_active_admins(&mut tx, org_id, user_id).await? == 0
        {
            return Err(StoreError::Conflict(LAST_ADMIN.into()));
        }
        sqlx::query(
            "DELETE FROM scim_group_members WHERE user_id = $1 \
             AND group_id IN (SELECT id FROM scim_groups WHERE org_id = $2)",
        )
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM scim_users WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let revoked = Revoked {
            sessions: revoke_sessions_in(&mut tx, user_id, org_id, now).await?,
        };
        let keys = delete_keys_in(&mut tx, user_id, Some(org_id)).await?;
        sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND org_id = $2")
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        audit.details["apiKeysDeleted"] = keys.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(revoked))
    }
}

/// The account's own fields, as the directory of its home org wrote them. A changed address is
/// no longer verified.
async fn update_account(tx: &mut Tx, user_id: i64, account: &ScimAccountFields) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE users SET email_verified_at = CASE WHEN email_key = $2 THEN email_verified_at \
         ELSE NULL END, email = $1, email_key = $2, first = $3, last = $4, username = $5, \
         username_key = $6 WHERE id = $7",
    )
    .bind(&account.email)
    .bind(&account.email_key)
    .bind(&account.first)
    .bind(&account.last)
    .bind(account.username.as_ref().map(|(name, _)| name.as_str()))
    .bind(account.username.as_ref().map(|(_, key)| key.as_str()))
    .bind(user_id)
    .execute(&mut **tx)
    .await;
    match updated {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "a user with this email or username already exists".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

/// Writes the directory's record of the member (a new version of it), audits, reads the member
/// back and commits.
async fn finish_scim_user(
    mut tx: Tx,
    user_id: i64,
    write: &ScimUserWrite,
    audit: &NewAuditEvent,
) -> StoreResult<ScimUserRecord> {
    if !write.member_active {
        sqlx::query("UPDATE memberships SET is_active = FALSE WHERE user_id = $1 AND org_id = $2")
            .bind(user_id)
            .bind(write.org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    sqlx::query(
        "INSERT INTO scim_users (org_id, user_id, external_id, attributes, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (org_id, user_id) DO UPDATE \
         SET external_id = excluded.external_id, attributes = excluded.attributes, \
         updated_at = excluded.updated_at, version = scim_users.version + 1",
    )
    .bind(write.org_id)
    .bind(user_id)
    .bind(write.external_id.as_deref())
    .bind(&write.attributes)
    .bind(write.now)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let mut audit = audit.clone();
    audit.subject_user_id = Some(user_id);
    insert_audit(&mut tx, &audit).await?;
    let row: ScimUserRow = sqlx::query_as(select_scim_user!("AND u.id = $2"))
        .bind(write.org_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    ScimUserRecord::try_from(row)
}
