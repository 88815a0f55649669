//! Self-service password reset. `forgot` answers the same, in the same time, whether or not
//! the address has an account: it parses, counts the request against the address and writes
//! the request as it is; a worker (`process_requests`) then reads the account and writes, in
//! the transaction that deletes the request, an audit event and for an account a token and its
//! message, so a request accepted before a crash is carried out, once, after it. `reset` takes
//! the token (single use, 30 minutes, dead once a newer one is sent
//! or the password changes), checks the org's policy and history, and ends every session.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::credentials::Credentials;
use super::email::Email;
use super::error::{DomainError, DomainResult, LinkRefusal};
use super::mail::links::{self, OneTimeToken, in_words};
use super::mail::requests::{accept_request, claim_requests, origin_of};
use super::mail::settings::compose;
use super::mail::templates::{MailKind, MailVars};
use super::mail::{self, MailContent};
use super::origin::RequestOrigin;
use super::password::Password;
use super::policy::{password_allowed, policy_of};
use super::secrets::SecretBox;
use super::throttle::Throttle;
use super::user::UserRecord;
use crate::cache::CachedReads;
use crate::store::records::{MailRequestRecord, NewEmailToken, TokenPurpose};
use crate::store::{PasswordChange, Store};

pub const RESET_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Where a reset link leads: a page of coreauth's that reads the token from the fragment.
pub const RESET_PAGE: &str = "/user/password/reset";

pub struct PasswordRecovery {
    store: Arc<dyn Store>,
    reads: Arc<CachedReads>,
    credentials: Arc<Credentials>,
    secrets: Arc<SecretBox>,
    throttle: Arc<Throttle>,
    public_url: String,
}

impl PasswordRecovery {
    pub fn new(
        reads: Arc<CachedReads>,
        credentials: Arc<Credentials>,
        secrets: Arc<SecretBox>,
        throttle: Arc<Throttle>,
        public_url: String,
    ) -> Self {
        Self {
            store: reads.store().clone(),
            reads,
            credentials,
            secrets,
            throttle,
            public_url,
        }
    }

    /// Accepts a request for a reset link: parsed, throttled per address, and written as it
    /// is, the same one insert whatever the address; `process_requests` carries it out.
    pub async fn forgot(
        &self,
        email: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        accept_request(
            &self.store,
            &self.throttle,
            (REQUEST_KIND, email),
            origin,
            now,
        )
        .await
    }

    /// Carries out the requests accepted so far, on any instance (each is taken once).
    pub async fn process_requests(&self, now: OffsetDateTime) -> DomainResult<()> {
        for request in claim_requests(&self.store, REQUEST_KIND, now).await? {
            let id = request.id;
            if let Err(e) = self.carry_out(request, now).await {
                // Left for the lease to run out, and tried again.
                tracing::warn!(request = id, "a password-reset request failed: {e}");
            }
        }
        Ok(())
    }

    /// Sends a reset link to the account at the request's address, if there is one that signs
    /// in with a password; a person whose org signs them in through SSO is told so instead; an
    /// unknown or inactive address gets nothing.
    async fn carry_out(&self, request: MailRequestRecord, now: OffsetDateTime) -> DomainResult<()> {
        let email = Email::parse(&request.email)?;
        let key = email.key();
        let origin = origin_of(&request);
        let fulfils = Some(request.id);
        let audit = NewAuditEvent::new("password.reset_requested", now)
            .from(&origin)
            .details(serde_json::json!({ "email": email.as_str() }));
        let user = self
            .store
            .user_by_email(&key)
            .await?
            .filter(|u| u.is_active && !u.is_service);
        let Some(user) = user else {
            return Ok(self
                .store
                .record_mail_request(None, fulfils, &audit)
                .await?);
        };
        let org_id = home_org(&self.store, &user).await?;
        let mut audit = audit.subject_user(user.id);
        audit.org_id = org_id;
        let org = match org_id {
            Some(id) => self.store.org(id).await?,
            None => None,
        };
        let org_name = org.map(|o| o.name).unwrap_or_else(|| "coreauth".into());
        let signs_in_with_password = user.password_hash.is_some()
            && match org_id {
                Some(id) => password_allowed(
                    &self.reads.sso_connections(id).await?,
                    email.domain().as_str(),
                ),
                None => true,
            };
        let now_ms = to_millis(now);
        let mut vars = MailVars {
            org: org_name,
            link: None,
            email: user.email.clone(),
            name: user.first.clone(),
            expires: in_words(RESET_LIFETIME.as_secs()),
        };
        if !signs_in_with_password {
            let content = self
                .compose(org_id, MailKind::PasswordResetSso, &vars)
                .await?;
            let mail = mail::queued(
                &self.secrets,
                (org_id, MailKind::PasswordResetSso.as_str()),
                &user.email,
                &content,
                now_ms,
            )?;
            return Ok(self
                .store
                .record_mail_request(Some(&mail), fulfils, &audit)
                .await?);
        }
        let token = OneTimeToken::generate()?;
        vars.link = Some(links::link(&self.public_url, RESET_PAGE, &token));
        let content = self.compose(org_id, MailKind::PasswordReset, &vars).await?;
        let mail = mail::queued(
            &self.secrets,
            (org_id, MailKind::PasswordReset.as_str()),
            &user.email,
            &content,
            now_ms,
        )?;
        let stored = NewEmailToken {
            token_hash: token.hash,
            purpose: TokenPurpose::PasswordReset,
            user_id: Some(user.id),
            invitation_id: None,
            email_key: None,
            created_at: now_ms,
            expires_at: now_ms + millis(RESET_LIFETIME),
        };
        Ok(self
            .store
            .create_email_token(&stored, &mail, fulfils, &audit)
            .await?)
    }

    /// Sets a new password with a reset link's token; every session of the user ends.
    pub async fn reset(
        &self,
        token: &str,
        new_password: Password,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let now_ms = to_millis(now);
        let hash = links::hash_token(token);
        let stored = self.store.email_token(&hash).await?;
        links::usable(stored.as_ref(), TokenPurpose::PasswordReset, now_ms)?;
        let stored = stored.ok_or(DomainError::Link(LinkRefusal::Unknown))?;
        let user = match stored.user_id {
            Some(id) => self.store.user_by_id(id).await?,
            None => None,
        }
        .filter(|u| u.is_active)
        .ok_or(DomainError::Link(LinkRefusal::Unknown))?;
        let org_id = home_org(&self.store, &user).await?;
        let policy = match org_id {
            Some(id) => policy_of(&self.reads, id).await?,
            None => Default::default(),
        };
        let new_hash = self.credentials.vet(&user, policy, &new_password).await?;
        let mut audit = NewAuditEvent::new("password.reset", now)
            .from(origin)
            .actor(user.id)
            .subject_user(user.id);
        audit.org_id = org_id;
        self.store
            .set_password(
                &PasswordChange {
                    user_id: user.id,
                    new_hash,
                    expected_hash: user.password_hash.clone(),
                    must_change: false,
                    now: now_ms,
                    keep_session: None,
                    delete_api_keys: false,
                    consumes_token: Some(hash),
                },
                &audit,
            )
            .await?;
        Ok(())
    }

    /// The org's template of `kind`, or the built-in one, rendered with `vars`.
    async fn compose(
        &self,
        org_id: Option<i64>,
        kind: MailKind,
        vars: &MailVars,
    ) -> DomainResult<MailContent> {
        compose(&self.store, org_id, kind, vars).await
    }
}

/// The org whose name and templates a message to `user` carries: the home org.
async fn home_org(store: &Arc<dyn Store>, user: &UserRecord) -> DomainResult<Option<i64>> {
    if user.home_org_id.is_some() {
        return Ok(user.home_org_id);
    }
    Ok(store
        .memberships_of(user.id)
        .await?
        .first()
        .map(|m| m.org_id))
}

const REQUEST_KIND: &str = "password_reset";

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
