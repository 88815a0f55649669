//! A password login: the throttle first, then one argon2 verification, then whatever the org
//! asks of its members before a session is opened.

use time::OffsetDateTime;

use super::{Auth, IssuedToken, MAX_CLIENT_CHARS, NOT_AN_EMAIL, Opening, bounded_text};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::membership::choose_membership;
use crate::domain::origin::RequestOrigin;
use crate::domain::password::Password;
use crate::domain::policy::{password_allowed, policy_of};
use crate::domain::session::MFA_ENROLLMENT;
use crate::domain::throttle::{Guess, Subject};
use crate::domain::user::{UserRecord, Username};

/// A password login as the user sent it.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The email, or a username (anything without an `@`).
    pub email: String,
    pub password: Password,
    /// 0 or `None`: the first active membership.
    pub selected_org: Option<i64>,
    pub client: Option<String>,
    /// A TOTP code or a recovery code, for users with a second factor.
    pub mfa_code: Option<String>,
    pub origin: RequestOrigin,
    /// Open a session only for an admin of the org (or a platform admin): anyone else is
    /// `Forbidden` after the password verified, and no session is made for them.
    pub admins_only: bool,
}

impl Auth {
    /// Checks the password, picks the org, and opens a session. Every way of failing before the
    /// password is verified answers `InvalidCredentials` after one argon2 verification, so
    /// neither the answer nor its timing tells whether the account exists.
    pub async fn login(
        &self,
        attempt: LoginAttempt,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let client = bounded_text(attempt.client.clone(), MAX_CLIENT_CHARS);
        let mut known_user = None;
        let result = self
            .try_login(attempt.clone(), client.clone(), &mut known_user, now)
            .await;
        if let Err(error) = &result {
            if matches!(
                error,
                DomainError::Overloaded { .. }
                    | DomainError::Unavailable
                    | DomainError::Internal(_)
            ) {
                return result;
            }
            // Only an address is kept: what is typed into the email field may be a password,
            // and anything longer than an address is junk that would grow the trail.
            let email = Email::parse(&attempt.email)
                .map(|e| serde_json::Value::from(e.as_str()))
                .unwrap_or_else(|_| serde_json::Value::from(NOT_AN_EMAIL));
            let mut event = NewAuditEvent::new("login.failed", now)
                .from(&attempt.origin)
                .failed(error.code())
                .client(client.as_deref())
                .details(serde_json::json!({ "email": email }));
            if let Some(user_id) = known_user {
                event = event.subject_user(user_id);
            }
            self.store.record_audit(&event).await?;
        }
        result
    }

    async fn try_login(
        &self,
        attempt: LoginAttempt,
        client: Option<String>,
        known_user: &mut Option<i64>,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let (account_key, user) = match self.named_account(&attempt.email).await {
            Ok(named) => named,
            Err(error) => {
                // A malformed attempt counts against the address like any failed guess.
                let _failed = self.throttle.guess(None, &attempt.origin, now).await?;
                return Err(error);
            }
        };
        // Counted before any hashing, for known and unknown accounts alike, and against the
        // account whichever of its names was typed.
        let guess = self
            .throttle
            .guess(Some(Subject::Account(&account_key)), &attempt.origin, now)
            .await?;
        *known_user = user.as_ref().map(|u| u.id);
        let hash = user
            .as_ref()
            .filter(|u| u.is_active)
            .and_then(|u| u.password_hash.as_deref());
        let verified = self.hashing.verify(&attempt.password, hash).await?;
        let Some(user) = user.filter(|_| verified) else {
            // A failed guess: it stays counted.
            return Err(DomainError::InvalidCredentials);
        };
        let email = Email::parse(&user.email)?;
        let refund = guess.clone().password_proved();
        match self
            .open_verified(user, &email, attempt, client, guess, now)
            .await
        {
            Err(error) if stopped_short(&error) => {
                if let Err(e) = self.throttle.settle(&refund).await {
                    // It costs the address one guess of its budget: not worth failing the answer.
                    tracing::warn!("could not give a right password's guess back: {e}");
                }
                Err(error)
            }
            done => done,
        }
    }

    /// The account a login names, by email or (without an `@`) by username, and the key its
    /// guesses are counted under: its email's when it exists, so that both names share one
    /// budget. An unknown username counts under itself.
    async fn named_account(&self, login: &str) -> DomainResult<(String, Option<UserRecord>)> {
        if login.contains('@') {
            let key = Email::parse(login)?.key();
            let user = self.store.user_by_email(&key).await?;
            return Ok((key, user));
        }
        let username = Username::parse(login)
            .map_err(|_| DomainError::invalid("give an email address or a username"))?;
        let user = self.store.user_by_username(&username.key()).await?;
        let key = match &user {
            Some(user) => Email::parse(&user.email)?.key(),
            None => format!("username:{}", username.key()),
        };
        Ok((key, user))
    }

    /// The rest of a login whose password verified: only now may the answer say more than
    /// "invalid".
    async fn open_verified(
        &self,
        user: UserRecord,
        email: &Email,
        attempt: LoginAttempt,
        client: Option<String>,
        guess: Guess,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let memberships = self.store.memberships_of(user.id).await?;
        let membership = choose_membership(&memberships, attempt.selected_org, &user)?;
        let connections = self.reads.sso_connections(membership.org_id).await?;
        if !password_allowed(&connections, email.domain().as_str()) {
            return Err(DomainError::Sso(SsoFailure::SsoRequired));
        }
        self.mfa
            .check_login(user.id, attempt.mfa_code.as_deref(), &attempt.origin, now)
            .await?;
        let policy = policy_of(&self.reads, membership.org_id).await?;
        if user.must_change_password || policy.is_expired(user.password_set_at, to_millis(now)) {
            return Err(DomainError::PasswordExpired);
        }
        if policy.require_verified_email && user.email_verified_at.is_none() {
            return Err(DomainError::EmailUnverified);
        }
        if attempt.admins_only && !(membership.role.is_admin() || user.is_platform_admin) {
            return Err(DomainError::Forbidden);
        }
        self.upgrade_hash(&user, &attempt.password).await;
        let restriction = (policy.require_mfa && !self.mfa.is_enabled(user.id).await?)
            .then(|| MFA_ENROLLMENT.to_owned());
        let (org_id, role) = (membership.org_id, membership.role);
        let opening = Opening {
            method: "password",
            client,
            origin: attempt.origin,
            restriction,
            // The account's failures are forgotten and the address gets its guess back, in
            // the session's own commit.
            settles: guess.proved(),
            grant: None,
        };
        let mut issued = self.open_session(user, org_id, role, opening, now).await?;
        issued.password_expires_at = policy.expires_at(issued.user.password_set_at);
        Ok(issued)
    }

    /// Re-hashes a password verified against a hash made with weaker parameters than today's.
    /// A failure here must not fail the login: it is logged and retried at the next one.
    async fn upgrade_hash(&self, user: &UserRecord, password: &Password) {
        let Some(old) = user.password_hash.as_deref() else {
            return;
        };
        if !self.hashing.needs_rehash(old) {
            return;
        }
        let upgraded = match self.hashing.hash(password).await {
            Ok(new) => self
                .store
                .upgrade_password_hash(user.id, old, &new)
                .await
                .map_err(DomainError::from),
            Err(e) => Err(e),
        };
        match upgraded {
            Ok(_) => tracing::info!(user_id = user.id, "upgraded a password hash"),
            Err(e) => tracing::warn!(user_id = user.id, "could not upgrade a password hash: {e}"),
        }
    }
}

/// Whether a login whose password verified was stopped by something other than a wrong guess
/// (a second factor still to answer, an expired password, SSO required, not an admin): no
/// failed guess, so its address gets the guess back. A wrong second-factor code is a guess,
/// and a failure of coreauth's own settles nothing.
fn stopped_short(error: &DomainError) -> bool {
    !matches!(
        error,
        DomainError::MfaInvalid
            | DomainError::Overloaded { .. }
            | DomainError::Unavailable
            | DomainError::Internal(_)
    )
}
