//! Logging in, checking a caller on every request, renewing and ending sessions.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::apikey::{ApiKeys, looks_like_key};
use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::mfa::Mfa;
use super::org::{MembershipRecord, Role};
pub use super::origin::RequestOrigin;
use super::password::PasswordHashing;
use super::scopes::Scopes;
use super::session::{
    AuthMethod, MFA_CHALLENGE, MFA_ENROLLMENT, PendingRenewals, Principal, SessionRecord,
};
use super::throttle::Throttle;
use super::tokens::{SESSION_AUDIENCE, SessionClaims, TokenSigner};
use super::user::UserRecord;
use crate::cache::{CachedReads, MemberProfile};
use crate::store::{Store, ThrottleSettlement};

mod client_credentials;
mod login;
mod second_factor;

pub use client_credentials::{ClientToken, ClientTokenError, ClientTokenRequest, OAuthRefusal};
pub use login::LoginAttempt;
pub(crate) use second_factor::Vouched;

/// How long tokens and sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Lifetime of one token (`COREAUTH_TOKEN_TTL`, 15 minutes).
    pub token_ttl: Duration,
    /// Absolute lifetime of a session from its login (`COREAUTH_SESSION_MAX`, 12 hours).
    pub session_max: Duration,
}

/// How a session is being opened.
struct Opening {
    method: &'static str,
    client: Option<String>,
    origin: RequestOrigin,
    restriction: Option<String>,
    /// What a password login settles in the throttle, with the session's own commit.
    settles: ThrottleSettlement,
    /// For an OAuth client's session: the grant its one token carries.
    grant: Option<ClientGrant>,
}

/// What an OAuth client's token was granted: the client and the scopes.
#[derive(Debug, Clone)]
struct ClientGrant {
    client_id: String,
    scopes: Scopes,
}

/// The session method of an OAuth client's session.
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// A token and who it is for.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Unix epoch milliseconds.
    pub expires_at: i64,
    pub user: UserRecord,
    pub org_id: i64,
    pub role: Role,
    /// When the user's password expires under this org's policy (epoch ms); `None`: never.
    pub password_expires_at: Option<i64>,
    /// The org requires a second factor the user has not enrolled: this token can only enrol.
    pub mfa_enrollment_required: bool,
    /// The account's second factor is still to be answered: this token can only answer it.
    pub mfa_required: bool,
}

pub struct Auth {
    store: Arc<dyn Store>,
    /// What every request reads, through the session cache.
    reads: Arc<CachedReads>,
    keys: Arc<ApiKeys>,
    mfa: Arc<Mfa>,
    throttle: Arc<Throttle>,
    hashing: Arc<PasswordHashing>,
    signer: Arc<TokenSigner>,
    policy: SessionPolicy,
    renewals: Arc<PendingRenewals>,
    /// Held by the flush writing a batch, so that a flush before a logout or a session list
    /// waits for one already in flight instead of finding the map empty and going on.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

const MAX_CLIENT_CHARS: usize = 100;
/// What the audit trail keeps for an email field that holds no address.
pub const NOT_AN_EMAIL: &str = "(not an email address)";
const MAX_USER_AGENT_CHARS: usize = 300;

impl Auth {
    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> DomainResult<()> {
        Ok(self.store.ping().await?)
    }

    /// `reads` brings the store along (`CachedReads::store`).
    pub fn new(
        reads: Arc<CachedReads>,
        keys: Arc<ApiKeys>,
        mfa: Arc<Mfa>,
        throttle: Arc<Throttle>,
        hashing: Arc<PasswordHashing>,
        signer: Arc<TokenSigner>,
        policy: SessionPolicy,
    ) -> Self {
        Self {
            store: reads.store().clone(),
            reads,
            keys,
            mfa,
            throttle,
            hashing,
            signer,
            policy,
            renewals: Arc::default(),
            flushing: Arc::default(),
        }
    }

    async fn open_session(
        &self,
        user: UserRecord,
        org_id: i64,
        role: Role,
        opening: Opening,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let Opening {
            method,
            client,
            origin,
            restriction,
            settles,
            grant,
        } = opening;
        let created_at = to_millis(now);
        // A client's session is its one token: it ends when the token does.
        let life = match grant {
            Some(_) => self.policy.token_ttl,
            None => self.policy.session_max,
        };
        let max = i64::try_from(life.as_millis()).unwrap_or(i64::MAX);
        let mut session = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id,
            org_id,
            method: method.to_owned(),
            client,
            address: origin.address_text(),
            user_agent: bounded_text(origin.user_agent.clone(), MAX_USER_AGENT_CHARS),
            created_at,
            expires_at: created_at.saturating_add(max),
            token_expires_at: created_at,
            last_renewed_at: None,
            renew_count: 0,
            revoked_at: None,
            restriction,
        };
        let expiry = session.token_expiry(now, self.policy.token_ttl);
        session.token_expires_at = to_millis(expiry);
        let audit = NewAuditEvent::new("login.succeeded", now)
            .from(&origin)
            .org(org_id)
            .subject_user(user.id)
            .subject(format!("session:{}", session.id))
            .client(session.client.as_deref())
            .details(serde_json::json!({ "method": method }));
        self.store
            .create_session(&session, &audit, &settles)
            .await?;
        self.issue(user, &session, role, (now, expiry), grant.as_ref())
    }

    fn issue(
        &self,
        user: UserRecord,
        session: &SessionRecord,
        role: Role,
        (now, expiry): (OffsetDateTime, OffsetDateTime),
        grant: Option<&ClientGrant>,
    ) -> DomainResult<IssuedToken> {
        let claims = SessionClaims {
            iss: self.signer.issuer().to_owned(),
            aud: SESSION_AUDIENCE.to_owned(),
            sub: user.uuid.clone(),
            uid: user.id,
            org: session.org_id,
            role: role.as_str().to_owned(),
            sid: session.id.clone(),
            iat: now.unix_timestamp(),
            exp: expiry.unix_timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            scope: grant.map(|g| g.scopes.to_stored()),
            client_id: grant.map(|g| g.client_id.clone()),
        };
        Ok(IssuedToken {
            token: self.signer.sign(&claims)?,
            expires_at: to_millis(expiry),
            user,
            org_id: session.org_id,
            role,
            password_expires_at: None,
            mfa_enrollment_required: session.restriction.as_deref() == Some(MFA_ENROLLMENT),
            mfa_required: session.restriction.as_deref() == Some(MFA_CHALLENGE),
        })
    }

    /// Who is calling: the token's signature, then the session, user and membership behind it
    /// as they are now. Anything wrong is `Unauthenticated`.
    pub async fn authenticate(
        &self,
        credential: &str,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Principal> {
        self.authenticate_credential(credential, origin, now).await
    }

    /// What a credential is worth now, for token introspection: the principal (with, for a
    /// session token, its claims); `None` for anything `authenticate` refuses. Other failures
    /// (the database) are errors: they say nothing about the credential.
    pub async fn introspect(
        &self,
        credential: &str,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Option<Principal>> {
        match self.authenticate_credential(credential, origin, now).await {
            Ok(found) => Ok(Some(found)),
            Err(DomainError::Unauthenticated) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn authenticate_credential(
        &self,
        credential: &str,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Principal> {
        if looks_like_key(credential) {
            return self.keys.authenticate(credential, origin, now).await;
        }
        let token = self.signer.verify(credential, now)?;
        let claims = token.claims();
        // The session found for this token last time, while the cache would still serve it;
        // every check below is made on it all the same.
        let ctx = match token.session(|lease| self.reads.holds(lease)) {
            Some(ctx) => ctx,
            None => {
                let (ctx, lease) = self.reads.session_context(&claims.sid).await?;
                let ctx = ctx.ok_or(DomainError::Unauthenticated)?;
                token.found_session(&ctx, lease);
                ctx
            }
        };
        let session = &ctx.session;
        if session.user_id != claims.uid
            || session.org_id != claims.org
            || !session.is_live(now)
            || !ctx.user_active
            || !ctx.membership_active
        {
            return Err(DomainError::Unauthenticated);
        }
        // An OAuth client's token holds what it was granted, under the signature; a person's
        // session is not scoped.
        let (method, scopes) = if session.method == CLIENT_CREDENTIALS {
            let granted = claims.scope.as_deref().unwrap_or_default();
            (AuthMethod::Client, Scopes::from_stored(granted))
        } else {
            (AuthMethod::Session, Scopes::ALL)
        };
        let principal = Principal {
            user_id: session.user_id,
            user_uuid: ctx.user_uuid,
            org_id: session.org_id,
            role: ctx.role,
            is_platform_admin: ctx.is_platform_admin && session.grants_platform_power(),
            method,
            session: Some(ctx.session),
            scopes,
            key_expires_at: None,
            origin,
            token: Some(token),
        };
        Ok(principal)
    }

    /// A new token for the caller's session, `token_ttl` long but never past the session's cap.
    /// Earlier tokens stay valid until their own expiry.
    pub async fn renew(
        &self,
        caller: &Principal,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let session = caller
            .session
            .as_ref()
            .filter(|_| caller.method.is_person())
            .ok_or_else(|| {
                DomainError::invalid(
                    "API keys do not expire and client tokens are not renewed: ask for a new one",
                )
            })?;
        let expiry = session.token_expiry(now, self.policy.token_ttl);
        if expiry <= now {
            return Err(DomainError::Unauthenticated);
        }
        // `authenticate` found the session live just now; the count and the new expiry are
        // bookkeeping, written with the next batch (`flush_renewals`).
        self.renewals
            .note(&session.id, to_millis(expiry), to_millis(now));
        let profile = self.profile_of(caller).await?;
        let user = UserRecord::clone(profile.user());
        let mut issued = self.issue(user, session, caller.role, (now, expiry), None)?;
        issued.password_expires_at = profile.password_expires_at();
        Ok(issued)
    }

    /// Writes the renewals counted so far, after any batch already being written; a failed
    /// write keeps them for the next.
    pub async fn flush_renewals(&self) -> DomainResult<()> {
        let turn = self.flushing.clone().lock_owned().await;
        let batch = self.renewals.take();
        if batch.is_empty() {
            return Ok(());
        }
        let (store, pending) = (self.store.clone(), self.renewals.clone());
        // A task of its own, holding the turn until the batch is written or put back: a caller
        // that goes away mid-write (a client hanging up on its logout, the request deadline,
        // shutdown stopping the background task) cannot drop the batch.
        let write = tokio::spawn(async move {
            let _turn = turn;
            let written = store.record_renewals(&batch).await;
            if written.is_err() {
                pending.restore(batch);
            }
            written
        });
        Ok(write
            .await
            .map_err(|e| DomainError::internal(format!("writing renewals: {e}")))??)
    }

    /// `flush_renewals` before something that reads renewal counts. A failure is logged, not
    /// passed on: ending or listing sessions must not depend on this bookkeeping (the counts
    /// stay pending and are written with the next batch).
    async fn flush_renewals_before(&self, what: &str) {
        if let Err(e) = self.flush_renewals().await {
            tracing::warn!("writing renewals before {what}: {e}");
        }
    }

    /// Ends the caller's session: every token issued for it fails from now on.
    pub async fn logout(&self, caller: &Principal, now: OffsetDateTime) -> DomainResult<()> {
        let session = caller.session.as_ref().ok_or_else(|| {
            DomainError::invalid("an API key has no session to log out of; delete the key instead")
        })?;
        let audit = NewAuditEvent::new("logout", now)
            .by(caller)
            .subject_user(caller.user_id)
            .subject(format!("session:{}", session.id));
        // The audit event counts the session's renewals: the pending ones too.
        self.flush_renewals_before("a logout").await;
        self.store
            .revoke_session(&session.id, Some(caller.user_id), to_millis(now), &audit)
            .await?;
        Ok(())
    }

    /// What `/user/me` answers besides the principal: the caller's user record, the org of this
    /// token, when the password expires there, and whether the user has a second factor.
    pub async fn whoami(&self, caller: &Principal) -> DomainResult<Arc<MemberProfile>> {
        self.profile_of(caller).await
    }

    /// The caller's member profile: the one found for their session token last time, while
    /// the cache would still serve it, else the store's (remembered with the token).
    async fn profile_of(&self, caller: &Principal) -> DomainResult<Arc<MemberProfile>> {
        let (user_id, org_id) = (caller.user_id, caller.org_id);
        let token = caller.token.as_deref();
        let remembered = token.and_then(|t| t.profile((user_id, org_id), |l| self.reads.holds(l)));
        if let Some(profile) = remembered {
            return Ok(profile);
        }
        let (profile, lease) = self.reads.member_profile(user_id, org_id).await?;
        let profile = profile.ok_or(DomainError::Unauthenticated)?;
        if let Some(token) = token {
            token.found_profile(&profile, lease);
        }
        Ok(profile)
    }

    pub async fn orgs_of(&self, caller: &Principal) -> DomainResult<Vec<MembershipRecord>> {
        Ok(self.store.memberships_of(caller.user_id).await?)
    }

    pub async fn sessions_of(
        &self,
        caller: &Principal,
        now: OffsetDateTime,
    ) -> DomainResult<Vec<SessionRecord>> {
        caller.require_session("list or end sessions")?;
        // A session whose newest token is only in the pending renewals would look expired.
        self.flush_renewals_before("listing sessions").await;
        Ok(self
            .store
            .live_sessions_of(caller.user_id, to_millis(now))
            .await?)
    }

    /// Ends one of the caller's own sessions; someone else's is "not found".
    pub async fn end_session(
        &self,
        caller: &Principal,
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        caller.require_session("list or end sessions")?;
        let audit = NewAuditEvent::new("session.revoked", now)
            .by(caller)
            .subject_user(caller.user_id)
            .subject(format!("session:{id}"));
        self.flush_renewals_before("ending a session").await;
        let revoked = self
            .store
            .revoke_session(id, Some(caller.user_id), to_millis(now), &audit)
            .await?;
        if revoked {
            Ok(())
        } else {
            Err(DomainError::NotFound("session"))
        }
    }
}

/// Free text from a client, trimmed and cut to `max` characters; empty becomes `None`.
fn bounded_text(text: Option<String>, max: usize) -> Option<String> {
    let text = text?;
    let trimmed: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_trimmed_bounded_and_cleaned() {
        assert_eq!(
            bounded_text(Some("  core-client ".into()), 100).as_deref(),
            Some("core-client")
        );
        assert_eq!(bounded_text(Some("   ".into()), 100), None);
        assert_eq!(
            bounded_text(Some("a\nb".into()), 100).as_deref(),
            Some("ab")
        );
        assert_eq!(bounded_text(Some("x".repeat(500)), 100).unwrap().len(), 100);
    }
}
