//! Single sign-on: settings, linked identities, sign-ons in flight.

use super::*;

#[async_trait]
impl SsoStore for Backend {
    async fn save_sso_config(
        &self,
        c: &SsoConfigRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::Org(c.org_id));
        let taken = |domain: &str| {
            StoreError::Conflict(format!(
                "the domain {domain} already signs in through another org's SSO"
            ))
        };
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, c.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        for domain in &c.email_domains {
            let owner: Option<i64> =
                sqlx::query_scalar("SELECT org_id FROM sso_domains WHERE domain = $1")
                    .bind(domain)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if owner.is_some_and(|o| o != c.org_id) {
                return Err(taken(domain));
            }
        }
        // Saves of one org's settings queue on this row (the upsert locks it), so the delete and
        // re-insert of its domains below never interleave with another save's.
        sqlx::query(
            "INSERT INTO sso_configs (org_id, issuer, client_id, client_secret, allow_jit, \
             allow_password, redirect_allow_list, updated_at, pending_domains) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (org_id) DO UPDATE SET issuer = excluded.issuer, \
             client_id = excluded.client_id, client_secret = excluded.client_secret, \
             allow_jit = excluded.allow_jit, allow_password = excluded.allow_password, \
             redirect_allow_list = excluded.redirect_allow_list, updated_at = excluded.updated_at, \
             pending_domains = excluded.pending_domains",
        )
        .bind(c.org_id)
        .bind(&c.issuer)
        .bind(&c.client_id)
        .bind(&c.sealed_client_secret)
        .bind(c.allow_jit)
        .bind(c.allow_password)
        .bind(serde_json::to_string(&c.redirect_allow_list).map_err(StoreError::internal)?)
        .bind(now)
        .bind(serde_json::to_string(&c.pending_domains).map_err(StoreError::internal)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM sso_domains WHERE org_id = $1")
            .bind(c.org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for domain in &c.email_domains {
            // Another org claiming the domain at the same moment passed the check above too;
            // the primary key lets one of them have it and refuses the other the same way.
            sqlx::query("INSERT INTO sso_domains (domain, org_id) VALUES ($1, $2)")
                .bind(domain)
                .bind(c.org_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        taken(domain)
                    } else {
                        db_error(e)
                    }
                })?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn sso_config(&self, org_id: i64) -> StoreResult<Option<SsoConfigRecord>> {
        let row: Option<(String, String, String, bool, bool, String, String)> = sqlx::query_as(
            "SELECT issuer, client_id, client_secret, allow_jit, allow_password, \
             redirect_allow_list, pending_domains FROM sso_configs WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        let Some((
            issuer,
            client_id,
            sealed_client_secret,
            allow_jit,
            allow_password,
            list,
            pending,
        )) = row
        else {
            return Ok(None);
        };
        let email_domains: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT domain FROM sso_domains WHERE org_id = $1 ORDER BY domain",
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(Some(SsoConfigRecord {
            org_id,
            issuer,
            client_id,
            sealed_client_secret,
            email_domains,
            pending_domains: serde_json::from_str(&pending)
                .map_err(|_| StoreError::internal("stored pending SSO domains"))?,
            allow_jit,
            allow_password,
            redirect_allow_list: serde_json::from_str(&list)
                .map_err(|_| StoreError::internal("stored SSO allow-list"))?,
        }))
    }

    async fn delete_sso_config(&self, org_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM sso_configs WHERE org_id = $1")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sso_domains WHERE org_id = $1")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn sso_org_for_domain(&self, domain: &str) -> StoreResult<Option<i64>> {
        if !storable(domain) {
            return Ok(None);
        }
        sqlx::query_scalar(
            "SELECT d.org_id FROM sso_domains d JOIN sso_configs c ON c.org_id = d.org_id \
             WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)
    }

    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT org_id FROM org_email_domains WHERE domain = $1 \
             UNION SELECT org_id FROM sso_domains WHERE domain = $1",
        )
        .bind(domain)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn sso_identity(
        &self,
        org_id: i64,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(
            "SELECT user_id FROM sso_identities WHERE org_id = $1 AND issuer = $2 AND subject = $3",
        )
        .bind(org_id)
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)
    }

    async fn link_sso_identity(
        &self,
        org_id: i64,
        identity: (&str, &str),
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_sso_identity(&mut tx, org_id, identity, user_id, now).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_sso_login(&self, l: &SsoLoginRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_logins (state, org_id, nonce, pkce_verifier, return_to, client, \
             created_at, expires_at, link_user_id, browser_binding) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&l.state)
        .bind(l.org_id)
        .bind(&l.nonce)
        .bind(&l.sealed_pkce_verifier)
        .bind(l.return_to.as_deref())
        .bind(l.client.as_deref())
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.link_user_id)
        .bind(l.browser_binding.as_deref())
        .execute(self.writes())
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn take_sso_login(&self, state: &str, now: i64) -> StoreResult<Option<SsoLoginRecord>> {
        if !storable(state) {
            return Ok(None);
        }
        // One conditional UPDATE: two callbacks with the same state (on any instances) queue on
        // the row lock, and the second re-reads `used_at` and takes nothing.
        let row: Option<SsoLoginRecord> = sqlx::query_as(
            "UPDATE sso_logins SET used_at = $1 WHERE state = $2 AND used_at IS NULL \
             RETURNING state, org_id, nonce, pkce_verifier, return_to, client, created_at, \
             expires_at, link_user_id, browser_binding",
        )
        .bind(now)
        .bind(state)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        Ok(row)
    }

    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM sso_logins WHERE used_at IS NOT NULL OR expires_at < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
}
