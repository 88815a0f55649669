//! Invitations, the one-time tokens of mailed links, and each org's mail settings.

use super::*;

#[async_trait]
impl EmailStore for Backend {
    async fn create_email_token(
        &self,
        token: &NewEmailToken,
        mail: &NewMail,
        fulfils: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        fulfil(&mut tx, fulfils).await?;
        insert_email_token(&mut tx, token).await?;
        if let Some(invitation) = token.invitation_id {
            // A resent invitation lives as long as its newest link.
            sqlx::query("UPDATE invitations SET expires_at = $1 WHERE id = $2")
                .bind(token.expires_at)
                .bind(invitation)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        insert_mail(&mut tx, mail).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn email_token(&self, token_hash: &[u8]) -> StoreResult<Option<EmailTokenRecord>> {
        // From the writers: a token made a moment ago (and mailed at once) must be found.
        sqlx::query_as(SELECT_EMAIL_TOKEN)
            .bind(token_hash)
            .fetch_optional(self.writes())
            .await
            .map_err(db_error)
    }

    async fn queue_mail_request(&self, request: &MailRequestRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mail_requests (kind, email, address, user_agent, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&request.kind)
        .bind(&request.email)
        .bind(request.address.as_deref())
        .bind(request.user_agent.as_deref())
        .bind(request.request_id.as_deref())
        .bind(request.created_at)
        .execute(self.writes())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn claim_mail_requests(
        &self,
        kind: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<MailRequestRecord>> {
        // As the mail queue is claimed (`sql/mail.rs`): one statement, rows held by another
        // worker skipped on PostgreSQL.
        let mut taken: Vec<MailRequestRecord> = sqlx::query_as(concat!(
            "UPDATE mail_requests SET leased_until = $3 WHERE id IN (",
            skipping_locked!(
                "SELECT id FROM mail_requests WHERE kind = $4 \
                 AND (leased_until IS NULL OR leased_until <= $1) ORDER BY id LIMIT $2"
            ),
            ") RETURNING id, kind, email, address, user_agent, request_id, created_at"
        ))
        .bind(now)
        .bind(limit)
        .bind(lease_until)
        .bind(kind)
        .fetch_all(self.writes())
        .await
        .map_err(db_error)?;
        taken.sort_by_key(|request| request.id);
        Ok(taken)
    }

    async fn record_mail_request(
        &self,
        mail: Option<&NewMail>,
        fulfils: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        fulfil(&mut tx, fulfils).await?;
        if let Some(mail) = mail {
            insert_mail(&mut tx, mail).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_invitation(
        &self,
        invitation: &NewInvitation,
        token: &NewEmailToken,
        mail: &NewMail,
        audit: &NewAuditEvent,
    ) -> StoreResult<InvitationRecord> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, invitation.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO invitations (public_id, org_id, email, email_key, role, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&invitation.public_id)
        .bind(invitation.org_id)
        .bind(&invitation.email)
        .bind(&invitation.email_key)
        .bind(invitation.role.as_str())
        .bind(invitation.invited_by)
        .bind(invitation.created_at)
        .bind(invitation.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let token = NewEmailToken {
            invitation_id: Some(id),
            ..token.clone()
        };
        insert_email_token(&mut tx, &token).await?;
        insert_mail(&mut tx, mail).await?;
        let mut audit = audit.clone();
        audit.subject = Some(invitation.public_id.clone());
        insert_audit(&mut tx, &audit).await?;
        let created = invitation_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted invitation vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn invitations_of(&self, org_id: i64) -> StoreResult<Vec<InvitationRecord>> {
        let rows: Vec<InvitationRow> =
            sqlx::query_as(select_invitation!("WHERE org_id = $1 ORDER BY id DESC"))
                .bind(org_id)
                .fetch_all(self.reads())
                .await
                .map_err(db_error)?;
        rows.into_iter().map(InvitationRow::into_record).collect()
    }

    async fn invitation(
        &self,
        org_id: i64,
        public_id: &str,
    ) -> StoreResult<Option<InvitationRecord>> {
        if !storable(public_id) {
            return Ok(None);
        }
        let row: Option<InvitationRow> =
            sqlx::query_as(select_invitation!("WHERE org_id = $1 AND public_id = $2"))
                .bind(org_id)
                .bind(public_id)
                .fetch_optional(self.writes())
                .await
                .map_err(db_error)?;
        row.map(InvitationRow::into_record).transpose()
    }

    async fn invitation_by_id(&self, id: i64) -> StoreResult<Option<InvitationRecord>> {
        let row: Option<InvitationRow> = sqlx::query_as(select_invitation!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.writes())
            .await
            .map_err(db_error)?;
        row.map(InvitationRow::into_record).transpose()
    }

    async fn open_invitation(
        &self,
        org_id: i64,
        email_key: &str,
        now: i64,
    ) -> StoreResult<Option<InvitationRecord>> {
        let row: Option<InvitationRow> = sqlx::query_as(select_invitation!(
            "WHERE org_id = $1 AND email_key = $2 AND accepted_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $3 ORDER BY id DESC LIMIT 1"
        ))
        .bind(org_id)
        .bind(email_key)
        .bind(now)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        row.map(InvitationRow::into_record).transpose()
    }

    async fn revoke_invitation(
        &self,
        org_id: i64,
        public_id: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        if !storable(public_id) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let revoked = sqlx::query(
            "UPDATE invitations SET revoked_at = $1 WHERE org_id = $2 AND public_id = $3 \
             AND revoked_at IS NULL AND accepted_at IS NULL",
        )
        .bind(now)
        .bind(org_id)
        .bind(public_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if revoked == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn accept_invitation(
        &self,
        token_hash: Option<&[u8]>,
        invitation_id: i64,
        joining: Joining,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        if let Some(token_hash) = token_hash {
            use_email_token(&mut tx, token_hash, TokenPurpose::Invitation, now).await?;
        }
        // Any other link of the invitation dies with it.
        sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE invitation_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(invitation_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let invitation = invitation_in(&mut tx, invitation_id)
            .await?
            .ok_or(StoreError::NotFound("invitation"))?;
        if invitation.accepted_at.is_some() || invitation.revoked_at.is_some() {
            return Err(StoreError::Conflict(
                "this invitation was accepted or revoked".into(),
            ));
        }
        let user_id = match joining {
            Joining::NewUser(user) => {
                let user_id = insert_user(&mut tx, &user).await?;
                insert_membership(&mut tx, invitation.org_id, user_id, invitation.role, now)
                    .await?;
                if let Some((issuer, subject)) = &user.sso_identity {
                    let identity = (issuer.as_str(), subject.as_str());
                    insert_sso_identity(&mut tx, invitation.org_id, identity, user_id, now).await?;
                }
                // The link reached the address: it is proven.
                sqlx::query("UPDATE users SET email_verified_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                user_id
            }
            Joining::Existing(user_id) => {
                let _changed = self.changes.on_return(Change::User(user_id));
                if membership_in(&mut tx, user_id, invitation.org_id)
                    .await?
                    .is_some()
                {
                    return Err(StoreError::Conflict(
                        "you are already a member of this org".into(),
                    ));
                }
                insert_membership(&mut tx, invitation.org_id, user_id, invitation.role, now)
                    .await?;
                user_id
            }
        };
        sqlx::query("UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3")
            .bind(now)
            .bind(user_id)
            .bind(invitation_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        audit.actor_user_id = audit.actor_user_id.or(Some(user_id));
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user_id)
    }

    async fn verify_email(
        &self,
        token_hash: &[u8],
        user_id: i64,
        email_key: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        use_email_token(&mut tx, token_hash, TokenPurpose::EmailVerification, now).await?;
        let done =
            sqlx::query("UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_key = $3")
                .bind(now)
                .bind(user_id)
                .bind(email_key)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "the account's address changed since this link was sent".into(),
            ));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn email_settings(&self, org_id: i64) -> StoreResult<EmailSettings> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT from_name, reply_to FROM email_settings WHERE org_id = $1")
                .bind(org_id)
                .fetch_optional(self.reads())
                .await
                .map_err(db_error)?;
        Ok(row
            .map(|(from_name, reply_to)| EmailSettings {
                from_name,
                reply_to,
            })
            .unwrap_or_default())
    }

    async fn set_email_settings(
        &self,
        org_id: i64,
        settings: &EmailSettings,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        sqlx::query(
            "INSERT INTO email_settings (org_id, from_name, reply_to, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO UPDATE SET \
             from_name = excluded.from_name, reply_to = excluded.reply_to, \
             updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(settings.from_name.as_deref())
        .bind(settings.reply_to.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn email_templates(&self, org_id: i64) -> StoreResult<Vec<EmailTemplate>> {
        sqlx::query_as(
            "SELECT kind, subject, text_body, html_body FROM email_templates \
             WHERE org_id = $1 ORDER BY kind",
        )
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn set_email_template(
        &self,
        org_id: i64,
        kind: &str,
        template: Option<&EmailTemplate>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        match template {
            Some(template) => sqlx::query(
                "INSERT INTO email_templates \
                 (org_id, kind, subject, text_body, html_body, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, kind) DO UPDATE SET \
                 subject = excluded.subject, text_body = excluded.text_body, \
                 html_body = excluded.html_body, updated_at = excluded.updated_at",
            )
            .bind(org_id)
            .bind(kind)
            .bind(&template.subject)
            .bind(&template.text_body)
            .bind(template.html_body.as_deref())
            .bind(now),
            None => sqlx::query("DELETE FROM email_templates WHERE org_id = $1 AND kind = $2")
                .bind(org_id)
                .bind(kind),
        }
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }
}

/// Deletes the accepted request a transaction carries out.
async fn fulfil(tx: &mut Tx, request: Option<i64>) -> StoreResult<()> {
    if let Some(id) = request {
        sqlx::query("DELETE FROM mail_requests WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

const SELECT_EMAIL_TOKEN: &str = "SELECT purpose, user_id, invitation_id, email_key, created_at, \
     expires_at, used_at, superseded_at FROM email_tokens WHERE token_hash = $1";

/// Stores a token, superseding the older unused ones of its purpose for its user or invitation.
async fn insert_email_token(tx: &mut Tx, token: &NewEmailToken) -> StoreResult<()> {
    sqlx::query(
        "UPDATE email_tokens SET superseded_at = $1 WHERE purpose = $2 \
         AND used_at IS NULL AND superseded_at IS NULL \
         AND ((CAST($3 AS BIGINT) IS NOT NULL AND user_id = $3) \
         OR (CAST($4 AS BIGINT) IS NOT NULL AND invitation_id = $4))",
    )
    .bind(token.created_at)
    .bind(token.purpose.as_str())
    .bind(token.user_id)
    .bind(token.invitation_id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, purpose, user_id, invitation_id, email_key, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&token.token_hash)
    .bind(token.purpose.as_str())
    .bind(token.user_id)
    .bind(token.invitation_id)
    .bind(token.email_key.as_deref())
    .bind(token.created_at)
    .bind(token.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Uses a token in `tx`, or refuses (`Conflict`) one that is unknown, of another purpose,
/// used, superseded or expired at `now`. The row stays locked until commit, so of two uses at
/// once one waits and then finds it used.
pub(super) async fn use_email_token(
    tx: &mut Tx,
    token_hash: &[u8],
    purpose: TokenPurpose,
    now: i64,
) -> StoreResult<EmailTokenRecord> {
    let locked: Option<i64> = sqlx::query_scalar(locking!(
        "SELECT created_at FROM email_tokens WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let token: Option<EmailTokenRecord> = match locked {
        Some(_) => sqlx::query_as(SELECT_EMAIL_TOKEN)
            .bind(token_hash)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?,
        None => None,
    };
    let usable = token.filter(|t| {
        t.purpose == purpose.as_str()
            && t.used_at.is_none()
            && t.superseded_at.is_none()
            && t.expires_at > now
    });
    let Some(token) = usable else {
        return Err(StoreError::Conflict(
            "this link was used, replaced by a newer one, or has expired".into(),
        ));
    };
    sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2")
        .bind(now)
        .bind(token_hash)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(token)
}

async fn invitation_in(tx: &mut Tx, id: i64) -> StoreResult<Option<InvitationRecord>> {
    let row: Option<InvitationRow> = sqlx::query_as(select_invitation!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    row.map(InvitationRow::into_record).transpose()
}
