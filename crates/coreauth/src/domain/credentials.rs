//! The password lifecycle: org policies, changing one's own password (with a token, or without
//! one when it expired), and the checks every new password passes: the org's policy and the
//! user's recent history.

use std::sync::Arc;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::email::Email;
use super::error::{DomainError, DomainResult};
use super::membership::choose_membership;
use super::mfa::Mfa;
use super::origin::RequestOrigin;
use super::password::{Password, PasswordHashing};
use super::policy::{PasswordPolicy, policy_of};
use super::session::Principal;
use super::throttle::{Subject, Throttle};
use super::user::UserRecord;
use crate::cache::CachedReads;
use crate::store::{PasswordChange, Store};

pub struct Credentials {
    store: Arc<dyn Store>,
    reads: Arc<CachedReads>,
    hashing: Arc<PasswordHashing>,
    mfa: Arc<Mfa>,
    throttle: Arc<Throttle>,
}

/// An expired-password change as the user sent it (no token).
#[derive(Debug)]
pub struct ExpiredChange {
    pub email: String,
    pub password: Password,
    pub new_password: Password,
    pub selected_org: Option<i64>,
    pub mfa_code: Option<String>,
    pub origin: RequestOrigin,
}

impl Credentials {
    pub fn new(
        store: Arc<dyn Store>,
        reads: Arc<CachedReads>,
        hashing: Arc<PasswordHashing>,
        mfa: Arc<Mfa>,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            store,
            reads,
            hashing,
            mfa,
            throttle,
        }
    }

    /// The policy of an org (its admins and platform admins).
    pub async fn policy(&self, caller: &Principal, org_id: i64) -> DomainResult<PasswordPolicy> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        if self.store.org(org_id).await?.is_none() {
            return Err(DomainError::NotFound("org"));
        }
        policy_of(&self.reads, org_id).await
    }

    pub async fn set_policy(
        &self,
        caller: &Principal,
        org_id: i64,
        policy: PasswordPolicy,
        now: OffsetDateTime,
    ) -> DomainResult<PasswordPolicy> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("policy.updated", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({
                "minLength": policy.min_length,
                "maxAgeDays": policy.max_age_days,
                "historyCount": policy.history_count,
                "rejectCommon": policy.reject_common,
                "requireMfa": policy.require_mfa,
                "requireVerifiedEmail": policy.require_verified_email,
            }));
        self.store
            .set_password_policy(org_id, &policy, to_millis(now), &audit)
            .await?;
        Ok(policy)
    }

    /// The caller changes their own password, proving the current one. Their other sessions
    /// end; the one making the call stays.
    pub async fn change_own(
        &self,
        caller: &Principal,
        current: Password,
        new: Password,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        caller.require_session("change the password")?;
        let user = self
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let hash = user.password_hash.clone();
        let email_key = user.email.to_lowercase();
        let guess = self
            .throttle
            .guess(Some(Subject::Account(&email_key)), &caller.origin, now)
            .await?;
        if !self.hashing.verify(&current, hash.as_deref()).await? {
            let audit = NewAuditEvent::new("password.changed", now)
                .by(caller)
                .subject_user(user.id)
                .failed("invalid_credentials");
            self.store.record_audit(&audit).await?;
            return Err(DomainError::InvalidCredentials);
        }
        let policy = policy_of(&self.reads, caller.org_id).await?;
        let new_hash = self.vet(&user, policy, &new).await?;
        let audit = NewAuditEvent::new("password.changed", now)
            .by(caller)
            .subject_user(user.id);
        self.store
            .set_password(
                &PasswordChange {
                    user_id: user.id,
                    new_hash,
                    expected_hash: hash,
                    must_change: false,
                    now: to_millis(now),
                    keep_session: caller.session.as_ref().map(|s| s.id.clone()),
                    delete_api_keys: false,
                    consumes_token: None,
                },
                &audit,
            )
            .await?;
        self.throttle.settle(&guess.proved()).await
    }

    /// A user whose password expired sets a new one without a token. The same checks as a
    /// login come first, in the same order and with the same answers, so this is no way around
    /// them and no way to learn whether an account exists.
    pub async fn change_expired(
        &self,
        change: ExpiredChange,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let email = Email::parse(&change.email)?;
        let email_key = email.key();
        let guess = self
            .throttle
            .guess(Some(Subject::Account(&email_key)), &change.origin, now)
            .await?;
        let user = self.store.user_by_email(&email_key).await?;
        let hash = user
            .as_ref()
            .filter(|u| u.is_active)
            .and_then(|u| u.password_hash.clone());
        let verified = self
            .hashing
            .verify(&change.password, hash.as_deref())
            .await?;
        let failed = |reason: &str, user_id: Option<i64>| {
            let mut audit = NewAuditEvent::new("password.expired_change", now)
                .from(&change.origin)
                .failed(reason)
                .details(serde_json::json!({ "email": change.email.trim() }));
            audit.subject_user_id = user_id;
            audit
        };
        let Some(user) = user.filter(|_| verified) else {
            let user_id = None;
            self.store
                .record_audit(&failed("invalid_credentials", user_id))
                .await?;
            return Err(DomainError::InvalidCredentials);
        };
        let memberships = self.store.memberships_of(user.id).await?;
        let membership = choose_membership(&memberships, change.selected_org, &user)?;
        self.mfa
            .check_login(user.id, change.mfa_code.as_deref(), &change.origin, now)
            .await?;
        let policy = policy_of(&self.reads, membership.org_id).await?;
        let expired =
            user.must_change_password || policy.is_expired(user.password_set_at, to_millis(now));
        if !expired {
            return Err(DomainError::invalid(
                "the password has not expired; change it with POST /user/password",
            ));
        }
        let new_hash = self.vet(&user, policy, &change.new_password).await?;
        let audit = NewAuditEvent::new("password.expired_change", now)
            .from(&change.origin)
            .org(membership.org_id)
            .actor(user.id)
            .subject_user(user.id);
        self.store
            .set_password(
                &PasswordChange {
                    user_id: user.id,
                    new_hash,
                    expected_hash: hash,
                    must_change: false,
                    now: to_millis(now),
                    keep_session: None,
                    delete_api_keys: false,
                    consumes_token: None,
                },
                &audit,
            )
            .await?;
        self.throttle.settle(&guess.proved()).await
    }

    /// Checks a new password against `policy` together with the policy of every org the user
    /// belongs to (one password opens them all, so it must satisfy the strictest), and against
    /// the user's recent passwords (the current one included), then hashes it.
    pub async fn vet(
        &self,
        user: &UserRecord,
        policy: PasswordPolicy,
        new: &Password,
    ) -> DomainResult<String> {
        let mut policy = policy;
        for membership in self.store.memberships_of(user.id).await? {
            policy = policy.and(&policy_of(&self.reads, membership.org_id).await?);
        }
        policy.check(new)?;
        if policy.history_count > 0 {
            let mut recent: Vec<String> = user.password_hash.iter().cloned().collect();
            let older = i64::from(policy.history_count.saturating_sub(1));
            if older > 0 {
                recent.extend(self.store.password_history(user.id, older).await?);
            }
            for hash in &recent {
                if self.hashing.verify(new, Some(hash)).await? {
                    return Err(DomainError::invalid(format!(
                        "the new password must differ from your last {} passwords",
                        policy.history_count
                    )));
                }
            }
        }
        self.hashing.hash(new).await
    }
}
