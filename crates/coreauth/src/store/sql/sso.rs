//! Single sign-on: connections, claims to email domains, linked identities, sign-ons in flight.

use super::*;

/// A device sign-in's columns.
macro_rules! device_columns {
    () => {
        "id, user_code, org_id, connection_id, client, created_at, expires_at, sealed_session, \
         refusal, taken_at"
    };
}

macro_rules! select_device {
    ($filter:literal) => {
        concat!("SELECT ", device_columns!(), " FROM sso_devices ", $filter)
    };
}

/// A connection's row, before its domains and mapping are read.
#[derive(sqlx::FromRow)]
struct ConnectionRow {
    id: i64,
    org_id: i64,
    name: String,
    preset: String,
    issuer: String,
    client_id: String,
    client_secret: String,
    claim_mapping: String,
    allow_jit: bool,
    allow_password: bool,
    redirect_allow_list: String,
    saml: Option<String>,
}

macro_rules! select_connection {
    ($filter:literal) => {
        concat!(
            "SELECT id, org_id, name, preset, issuer, client_id, client_secret, claim_mapping, \
             allow_jit, allow_password, redirect_allow_list, saml FROM sso_connections ",
            $filter
        )
    };
}

impl ConnectionRow {
    fn into_record(self, email_domains: Vec<String>) -> StoreResult<SsoConnectionRecord> {
        Ok(SsoConnectionRecord {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            preset: self.preset,
            issuer: self.issuer,
            client_id: self.client_id,
            sealed_client_secret: self.client_secret,
            claims: serde_json::from_str::<ClaimMapping>(&self.claim_mapping)
                .map_err(|_| StoreError::internal("stored SSO claim mapping"))?,
            email_domains,
            allow_jit: self.allow_jit,
            allow_password: self.allow_password,
            redirect_allow_list: serde_json::from_str(&self.redirect_allow_list)
                .map_err(|_| StoreError::internal("stored SSO allow-list"))?,
            saml: self
                .saml
                .map(|text| serde_json::from_str::<SamlSettings>(&text))
                .transpose()
                .map_err(|_| StoreError::internal("stored SAML settings"))?,
        })
    }
}

fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(StoreError::internal)
}

/// A verified claim of another org's stands in the way (the partial unique index).
fn domain_taken(domain: &str) -> StoreError {
    StoreError::Conflict(format!("the domain {domain} is verified by another org"))
}

/// Adds the org's claim to a domain or, when `claim` is verified, verifies its pending one.
async fn upsert_domain_claim(tx: &mut Tx, claim: &DomainClaimRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO domain_claims (org_id, domain, token, created_at, verified_at, verified_by) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id, domain) DO UPDATE SET \
         verified_at = COALESCE(domain_claims.verified_at, excluded.verified_at), \
         verified_by = COALESCE(domain_claims.verified_by, excluded.verified_by)",
    )
    .bind(claim.org_id)
    .bind(&claim.domain)
    .bind(&claim.token)
    .bind(claim.created_at)
    .bind(claim.verified_at)
    .bind(claim.verified_by.as_deref())
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(|e| {
        if is_unique_violation(&e) {
            domain_taken(&claim.domain)
        } else {
            db_error(e)
        }
    })
}

#[async_trait]
impl SsoStore for Backend {
    async fn save_sso_connection(
        &self,
        c: &SsoConnectionRecord,
        claims: &[DomainClaimRecord],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<i64> {
        let _changed = self.changes.on_return(Change::Org(c.org_id));
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, c.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        let named = |e: sqlx::Error| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the org has a connection named {}", c.name))
            } else {
                db_error(e)
            }
        };
        let mapping = json_text(&c.claims)?;
        let allow_list = json_text(&c.redirect_allow_list)?;
        let saml = c.saml.as_ref().map(json_text).transpose()?;
        // Saves of one connection queue on its row (the update locks it), so the delete and
        // re-insert of its domains below never interleave with another save's.
        let id = if c.id == 0 {
            sqlx::query_scalar(
                "INSERT INTO sso_connections (org_id, name, preset, issuer, client_id, \
                 client_secret, claim_mapping, allow_jit, allow_password, redirect_allow_list, \
                 saml, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
            )
            .bind(c.org_id)
            .bind(&c.name)
            .bind(&c.preset)
            .bind(&c.issuer)
            .bind(&c.client_id)
            .bind(&c.sealed_client_secret)
            .bind(&mapping)
            .bind(c.allow_jit)
            .bind(c.allow_password)
            .bind(&allow_list)
            .bind(saml.as_deref())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(named)?
        } else {
            let updated: Option<i64> = sqlx::query_scalar(
                "UPDATE sso_connections SET name = $1, preset = $2, issuer = $3, \
                 client_id = $4, client_secret = $5, claim_mapping = $6, allow_jit = $7, \
                 allow_password = $8, redirect_allow_list = $9, saml = $10, updated_at = $11 \
                 WHERE id = $12 AND org_id = $13 RETURNING id",
            )
            .bind(&c.name)
            .bind(&c.preset)
            .bind(&c.issuer)
            .bind(&c.client_id)
            .bind(&c.sealed_client_secret)
            .bind(&mapping)
            .bind(c.allow_jit)
            .bind(c.allow_password)
            .bind(&allow_list)
            .bind(saml.as_deref())
            .bind(now)
            .bind(c.id)
            .bind(c.org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(named)?;
            updated.ok_or(StoreError::NotFound("SSO connection"))?
        };
        sqlx::query("DELETE FROM sso_connection_domains WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for domain in &c.email_domains {
            sqlx::query(
                "INSERT INTO sso_connection_domains (connection_id, org_id, domain) \
                 VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(c.org_id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "the domain {domain} signs in through another of the org's connections"
                    ))
                } else {
                    db_error(e)
                }
            })?;
        }
        for claim in claims {
            upsert_domain_claim(&mut tx, claim).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(id)
    }

    async fn sso_connections(&self, org_id: i64) -> StoreResult<Vec<SsoConnectionRecord>> {
        let rows: Vec<ConnectionRow> =
            sqlx::query_as(select_connection!("WHERE org_id = $1 ORDER BY id"))
                .bind(org_id)
                .fetch_all(self.reads())
                .await
                .map_err(db_error)?;
        let domains: Vec<(i64, String)> = sqlx::query_as(concat!(
            "SELECT connection_id, domain FROM sso_connection_domains WHERE org_id = $1 \
             ORDER BY domain",
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let mine = domains
                    .iter()
                    .filter(|(id, _)| *id == row.id)
                    .map(|(_, d)| d.clone())
                    .collect();
                row.into_record(mine)
            })
            .collect()
    }

    async fn sso_connection(&self, connection_id: i64) -> StoreResult<Option<SsoConnectionRecord>> {
        let row: Option<ConnectionRow> = sqlx::query_as(select_connection!("WHERE id = $1"))
            .bind(connection_id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let domains = sqlx::query_scalar(concat!(
            "SELECT domain FROM sso_connection_domains WHERE connection_id = $1 ORDER BY domain",
            byte_order!()
        ))
        .bind(connection_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        row.into_record(domains).map(Some)
    }

    async fn delete_sso_connections(
        &self,
        org_id: i64,
        connection_id: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        // The domains go with their connection (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM sso_connections WHERE org_id = $1 AND ($2 IS NULL OR id = $2)",
        )
        .bind(org_id)
        .bind(connection_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }

    async fn sso_connection_for_domain(&self, domain: &str) -> StoreResult<Option<(i64, i64)>> {
        if !storable(domain) {
            return Ok(None);
        }
        sqlx::query_as(
            "SELECT d.org_id, d.connection_id FROM sso_connection_domains d \
             JOIN domain_claims c ON c.org_id = d.org_id AND c.domain = d.domain \
             WHERE d.domain = $1 AND c.verified_at IS NOT NULL",
        )
        .bind(domain)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)
    }

    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT org_id FROM org_email_domains WHERE domain = $1 \
             UNION SELECT org_id FROM domain_claims WHERE domain = $1 AND verified_at IS NOT NULL",
        )
        .bind(domain)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn domain_claims(&self, org_id: i64) -> StoreResult<Vec<DomainClaimRecord>> {
        sqlx::query_as(concat!(
            "SELECT org_id, domain, token, created_at, verified_at, verified_by \
             FROM domain_claims WHERE org_id = $1 ORDER BY domain",
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn save_domain_claim(
        &self,
        claim: &DomainClaimRecord,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::Org(claim.org_id));
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, claim.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        upsert_domain_claim(&mut tx, claim).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_domain_claim(
        &self,
        org_id: i64,
        domain: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM domain_claims WHERE org_id = $1 AND domain = $2")
            .bind(org_id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sso_connection_domains WHERE org_id = $1 AND domain = $2")
            .bind(org_id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
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

    async fn sso_identities_of(&self, user_id: i64) -> StoreResult<Vec<SsoIdentityRecord>> {
        sqlx::query_as(
            "SELECT org_id, issuer, subject, user_id, created_at FROM sso_identities \
             WHERE user_id = $1 ORDER BY org_id, created_at",
        )
        .bind(user_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn unlink_sso_identity(
        &self,
        user_id: i64,
        org_id: i64,
        (issuer, subject): (&str, &str),
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "DELETE FROM sso_identities WHERE user_id = $1 AND org_id = $2 AND issuer = $3 \
             AND subject = $4",
        )
        .bind(user_id)
        .bind(org_id)
        .bind(issuer)
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        commit_if_changed(tx, done.rows_affected(), audit).await
    }

    async fn create_sso_login(&self, l: &SsoLoginRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_logins (state, org_id, nonce, pkce_verifier, return_to, client, \
             created_at, expires_at, link_user_id, browser_binding, connection_id, hand_off) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(l.connection_id)
        .bind(l.hand_off.as_deref())
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
             expires_at, link_user_id, browser_binding, connection_id, hand_off",
        )
        .bind(now)
        .bind(state)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        Ok(row)
    }

    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64> {
        let logins =
            sqlx::query("DELETE FROM sso_logins WHERE used_at IS NOT NULL OR expires_at < $1")
                .bind(before)
                .execute(self.writes())
                .await
                .map_err(db_error)?;
        let devices =
            sqlx::query("DELETE FROM sso_devices WHERE taken_at IS NOT NULL OR expires_at < $1")
                .bind(before)
                .execute(self.writes())
                .await
                .map_err(db_error)?;
        let assertions = sqlx::query("DELETE FROM saml_assertions_seen WHERE expires_at < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map_err(db_error)?;
        Ok(logins.rows_affected() + devices.rows_affected() + assertions.rows_affected())
    }

    async fn consume_saml_assertion(
        &self,
        issuer: &str,
        assertion_id: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        // The primary key decides between two instances consuming the same assertion at once.
        let done = sqlx::query(
            "INSERT INTO saml_assertions_seen (issuer, assertion_id, expires_at) \
             VALUES ($1, $2, $3) ON CONFLICT (issuer, assertion_id) DO NOTHING",
        )
        .bind(issuer)
        .bind(assertion_id)
        .bind(expires_at)
        .execute(self.writes())
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn saml_connections_of_issuer(
        &self,
        issuer: &str,
    ) -> StoreResult<Vec<SsoConnectionRecord>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM sso_connections WHERE issuer = $1 AND saml IS NOT NULL ORDER BY id",
        )
        .bind(issuer)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.sso_connection(id).await?);
        }
        Ok(found)
    }

    async fn saml_assertion_seen(&self, issuer: &str, assertion_id: &str) -> StoreResult<bool> {
        // From the writers: a replay may follow the first use within milliseconds.
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT expires_at FROM saml_assertions_seen WHERE issuer = $1 AND assertion_id = $2",
        )
        .bind(issuer)
        .bind(assertion_id)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        Ok(seen.is_some())
    }

    async fn create_sso_device(&self, d: &SsoDeviceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_devices (id, user_code, org_id, connection_id, client, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&d.id)
        .bind(&d.user_code)
        .bind(d.org_id)
        .bind(d.connection_id)
        .bind(d.client.as_deref())
        .bind(d.created_at)
        .bind(d.expires_at)
        .execute(self.writes())
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn sso_device_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<SsoDeviceRecord>> {
        if !storable(user_code) {
            return Ok(None);
        }
        sqlx::query_as(select_device!("WHERE user_code = $1"))
            .bind(user_code)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)
    }

    async fn complete_sso_device(
        &self,
        id: &str,
        sealed_session: Option<&str>,
        refusal: Option<&str>,
    ) -> StoreResult<bool> {
        sqlx::query(
            "UPDATE sso_devices SET sealed_session = $1, refusal = $2 \
             WHERE id = $3 AND sealed_session IS NULL AND refusal IS NULL",
        )
        .bind(sealed_session)
        .bind(refusal)
        .bind(id)
        .execute(self.writes())
        .await
        .map(|done| done.rows_affected() == 1)
        .map_err(db_error)
    }

    async fn take_sso_device(
        &self,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<(SsoDeviceRecord, bool)>> {
        if !storable(id) {
            return Ok(None);
        }
        // One conditional UPDATE, as for sign-ons in flight: two polls racing take it once.
        let taken: Option<SsoDeviceRecord> = sqlx::query_as(concat!(
            "UPDATE sso_devices SET taken_at = $1 WHERE id = $2 AND taken_at IS NULL \
             AND sealed_session IS NOT NULL RETURNING ",
            device_columns!()
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        if let Some(device) = taken {
            return Ok(Some((device, true)));
        }
        let device: Option<SsoDeviceRecord> = sqlx::query_as(select_device!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.writes())
            .await
            .map_err(db_error)?;
        Ok(device.map(|d| (d, false)))
    }
}
