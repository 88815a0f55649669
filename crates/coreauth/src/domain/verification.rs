//! Proving an email address: a mailed link (single use, 24 hours, superseded by a newer one)
//! marks it verified. Accounts an admin creates get one; an invitation's link proves the
//! address by itself. An org may refuse logins until the address is proven (its policy's
//! `requireVerifiedEmail`); a new link is asked for by address, answered the same whether or
//! not there is an account to send it to.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::email::Email;
use super::error::{DomainError, DomainResult, LinkRefusal};
use super::mail::links::{self, OneTimeToken, in_words};
use super::mail::requests::{accept_request, claim_requests, origin_of};
use super::mail::settings::compose;
use super::mail::templates::{MailKind, MailVars};
use super::mail::{self};
use super::origin::RequestOrigin;
use super::secrets::SecretBox;
use super::throttle::Throttle;
use super::user::UserRecord;
use crate::store::Store;
use crate::store::records::{MailRequestRecord, NewEmailToken, TokenPurpose};

const REQUEST_KIND: &str = "email_verification";

pub const VERIFY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Where a verification link leads.
pub const VERIFY_PAGE: &str = "/user/email/verify";

pub struct EmailVerification {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    throttle: Arc<Throttle>,
    public_url: String,
}

impl EmailVerification {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<SecretBox>,
        throttle: Arc<Throttle>,
        public_url: String,
    ) -> Self {
        Self {
            store,
            secrets,
            throttle,
            public_url,
        }
    }

    /// Sends `user` a link proving their address, in the name of `org_id`.
    pub async fn send(
        &self,
        user: &UserRecord,
        org_id: Option<i64>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        self.send_for(user, org_id, (origin, None), now).await
    }

    /// `send`, carrying out accepted request `fulfils` when there is one.
    async fn send_for(
        &self,
        user: &UserRecord,
        org_id: Option<i64>,
        (origin, fulfils): (&RequestOrigin, Option<i64>),
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let email = Email::parse(&user.email)?;
        let key = email.key();
        let org_id = org_id.or(user.home_org_id);
        let org = match org_id {
            Some(id) => self.store.org(id).await?,
            None => None,
        };
        let token = OneTimeToken::generate()?;
        let vars = MailVars {
            org: org.map(|o| o.name).unwrap_or_else(|| "coreauth".into()),
            link: Some(links::link(&self.public_url, VERIFY_PAGE, &token)),
            email: user.email.clone(),
            name: user.first.clone(),
            expires: in_words(VERIFY_LIFETIME.as_secs()),
        };
        let now_ms = to_millis(now);
        let content = compose(&self.store, org_id, MailKind::EmailVerification, &vars).await?;
        let mail = mail::queued(
            &self.secrets,
            (org_id, MailKind::EmailVerification.as_str()),
            &user.email,
            &content,
            now_ms,
        )?;
        let stored = NewEmailToken {
            token_hash: token.hash,
            purpose: TokenPurpose::EmailVerification,
            user_id: Some(user.id),
            invitation_id: None,
            email_key: Some(key),
            created_at: now_ms,
            expires_at: now_ms + i64::try_from(VERIFY_LIFETIME.as_millis()).unwrap_or(i64::MAX),
        };
        let mut audit = NewAuditEvent::new("email.verification_sent", now)
            .from(origin)
            .subject_user(user.id);
        audit.org_id = org_id;
        Ok(self
            .store
            .create_email_token(&stored, &mail, fulfils, &audit)
            .await?)
    }

    /// Accepts a request for a new link, answered alike whether or not the address has an
    /// unproven account; `process_requests` carries it out.
    pub async fn resend(
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

    /// Sends the links asked for so far: to each address with an unproven account; nothing
    /// to the others.
    pub async fn process_requests(&self, now: OffsetDateTime) -> DomainResult<()> {
        for request in claim_requests(&self.store, REQUEST_KIND, now).await? {
            let id = request.id;
            if let Err(e) = self.carry_out(request, now).await {
                tracing::warn!(request = id, "a verification request failed: {e}");
            }
        }
        Ok(())
    }

    async fn carry_out(&self, request: MailRequestRecord, now: OffsetDateTime) -> DomainResult<()> {
        let email = Email::parse(&request.email)?;
        let origin = origin_of(&request);
        let user = self
            .store
            .user_by_email(&email.key())
            .await?
            .filter(|u| u.is_active && u.email_verified_at.is_none());
        match user {
            Some(user) => {
                self.send_for(&user, None, (&origin, Some(request.id)), now)
                    .await
            }
            None => {
                let audit = NewAuditEvent::new("email.verification_requested", now)
                    .from(&origin)
                    .details(serde_json::json!({ "email": email.as_str() }));
                Ok(self
                    .store
                    .record_mail_request(None, Some(request.id), &audit)
                    .await?)
            }
        }
    }

    /// Marks the address a link was sent to verified.
    pub async fn verify(
        &self,
        token: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let now_ms = to_millis(now);
        let hash = links::hash_token(token);
        let stored = self.store.email_token(&hash).await?;
        links::usable(stored.as_ref(), TokenPurpose::EmailVerification, now_ms)?;
        let (Some(user_id), Some(email_key)) =
            stored.map(|t| (t.user_id, t.email_key)).unwrap_or_default()
        else {
            return Err(DomainError::Link(LinkRefusal::Unknown));
        };
        let audit = NewAuditEvent::new("email.verified", now)
            .from(origin)
            .actor(user_id)
            .subject_user(user_id);
        Ok(self
            .store
            .verify_email(&hash, user_id, &email_key, now_ms, &audit)
            .await?)
    }
}
