//! The second factor of a sign-on that did not ask for it itself: a single sign-on opens a
//! session that can only answer the account's TOTP (or only enrol one, when the org requires
//! it), and answering it makes the session whole.

use time::OffsetDateTime;

use super::{Auth, IssuedToken, Opening, RequestOrigin};
use crate::domain::audit::NewAuditEvent;
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::org::Role;
use crate::domain::policy::policy_of;
use crate::domain::session::{MFA_CHALLENGE, MFA_ENROLLMENT, Principal, SessionRecord};
use crate::domain::throttle::Subject;
use crate::domain::user::UserRecord;

/// Whom an identity provider vouched for, as which member, and whether with several factors.
pub(crate) struct Vouched {
    pub user: UserRecord,
    pub org_id: i64,
    pub role: Role,
    /// The provider's `amr` held `mfa`.
    pub multi_factor: bool,
}

impl Auth {
    /// A session for a user whose identity provider vouched for them (the SSO callback). An
    /// account with a second factor gets a session that can only answer it (`answer_challenge`),
    /// and one whose org requires a second factor it lacks a session that can only enrol, as a
    /// password login would; unless the provider asserted a multi-factor sign-in.
    pub(crate) async fn open_sso_session(
        &self,
        vouched: Vouched,
        client: Option<String>,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let Vouched {
            user,
            org_id,
            role,
            multi_factor,
        } = vouched;
        let restriction = if multi_factor {
            // The provider asserted it authenticated with more than one factor: asking for
            // coreauth's TOTP as well would only add a step.
            None
        } else if self.mfa.is_enabled(user.id).await? {
            Some(MFA_CHALLENGE.to_owned())
        } else {
            let policy = policy_of(&self.reads, org_id).await?;
            policy.require_mfa.then(|| MFA_ENROLLMENT.to_owned())
        };
        let opening = Opening {
            method: "sso",
            client,
            origin,
            restriction,
            settles: Default::default(),
            grant: None,
        };
        self.open_session(user, org_id, role, opening, now).await
    }

    /// Answers the second factor a session is waiting for (`MFA_CHALLENGE`): with a current
    /// TOTP code or an unused recovery code the session becomes a full one, and a new token for
    /// it is issued. Wrong codes count against the account's login throttle, as at login.
    pub async fn answer_challenge(
        &self,
        caller: &Principal,
        code: &str,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let session = caller
            .session
            .as_ref()
            .filter(|_| caller.awaits_second_factor())
            .ok_or_else(|| {
                DomainError::invalid("this session is not waiting for a second factor")
            })?;
        let profile = self.profile_of(caller).await?;
        let email_key = Email::parse(&profile.user().email)?.key();
        let guess = self
            .throttle
            .guess(Some(Subject::Account(&email_key)), &caller.origin, now)
            .await?;
        self.mfa
            .check_login(caller.user_id, Some(code), &caller.origin, now)
            .await?;
        self.throttle.settle(&guess.proved()).await?;
        let audit = NewAuditEvent::new("mfa.verified", now)
            .by(caller)
            .subject_user(caller.user_id)
            .subject(format!("session:{}", session.id));
        if !self
            .store
            .lift_session_restriction(&session.id, MFA_CHALLENGE, &audit)
            .await?
        {
            return Err(DomainError::Unauthenticated);
        }
        let mut lifted = SessionRecord::clone(session);
        lifted.restriction = None;
        let expiry = lifted.token_expiry(now, self.policy.token_ttl);
        let user = UserRecord::clone(profile.user());
        let mut issued = self.issue(user, &lifted, caller.role, (now, expiry), None)?;
        issued.password_expires_at = profile.password_expires_at();
        Ok(issued)
    }
}
