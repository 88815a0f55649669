//! Sessions and the authenticated caller. A session starts at login, is bound to one org, can be
//! renewed up to an absolute cap, and ends at logout or revocation.

pub use crate::store::records::{Renewal, SessionContext, SessionRecord};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::clock::{from_millis, to_millis};
use super::org::Role;
use super::origin::RequestOrigin;
use super::scopes::Scopes;
pub use crate::cache::MemberProfile;
pub use crate::cache::token_memo::VerifiedToken;
pub use crate::store::records::MemberRecord;

/// Renewals counted in memory and written in batches (`Auth::flush_renewals`, every second and
/// before anything reads or ends a session through this instance). A renewal is on every
/// client's path every few minutes; a database write for each made the one SQLite writer the
/// limit of renewals (bench/README.md has the figures). Nothing is decided on
/// what waits here: whether a session may be used is its `revoked_at` and `expires_at`, which
/// are written at once. A crash loses what is pending: a second of renewal counts, or more while
/// the database refuses the writes.
#[derive(Debug, Default)]
pub struct PendingRenewals {
    pending: Mutex<HashMap<String, Renewal>>,
}

impl PendingRenewals {
    pub fn note(&self, session_id: &str, token_expires_at: i64, renewed_at: i64) {
        self.merge(session_id, 1, token_expires_at, renewed_at);
    }

    /// Everything noted so far, leaving nothing behind.
    pub fn take(&self) -> Vec<Renewal> {
        match self.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(_, r)| r).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Puts back a batch whose write failed, so its counts are written with the next one.
    pub fn restore(&self, batch: Vec<Renewal>) {
        for r in batch {
            self.merge(&r.session_id, r.count, r.token_expires_at, r.renewed_at);
        }
    }

    /// Adds to the session's pending renewal; the id is copied only for a session not pending
    /// yet (a renewal is on the request path).
    fn merge(&self, session_id: &str, count: i64, token_expires_at: i64, renewed_at: i64) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        match pending.get_mut(session_id) {
            Some(known) => {
                known.count += count;
                known.token_expires_at = known.token_expires_at.max(token_expires_at);
                known.renewed_at = known.renewed_at.max(renewed_at);
            }
            None => {
                pending.insert(
                    session_id.to_owned(),
                    Renewal {
                        session_id: session_id.to_owned(),
                        count,
                        token_expires_at,
                        renewed_at,
                    },
                );
            }
        }
    }
}

/// A session's restriction: enrol in TOTP before anything else.
pub const MFA_ENROLLMENT: &str = "mfa_enrollment";
/// A session's restriction: answer the account's second factor before anything else (a
/// single sign-on of an account that has one: the provider's word does not replace it).
pub const MFA_CHALLENGE: &str = "mfa_challenge";

impl SessionRecord {
    /// Whether a platform admin holds their platform power in this session: only when it was
    /// opened with their own password (and second factor, when they have one). A session an
    /// org's SSO connection opened is a session in that org alone, whoever it names: an org
    /// admin controls their connection's identity provider and could assert any address.
    pub fn grants_platform_power(&self) -> bool {
        self.opened_with_password()
    }

    /// Opened by the account's own password (with its second factor, when it has one).
    pub fn opened_with_password(&self) -> bool {
        self.method == "password"
    }

    /// Whether a token of this session may still be honoured at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && to_millis(now) < self.expires_at
    }

    /// The expiry of a token issued at `now`: `ttl` later, never past the session's end,
    /// in whole seconds (a JWT `exp` has no milliseconds).
    pub fn token_expiry(&self, now: OffsetDateTime, ttl: std::time::Duration) -> OffsetDateTime {
        let wanted =
            to_millis(now).saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let capped = wanted.min(self.expires_at);
        from_millis(capped - capped.rem_euclid(1000))
    }

    /// A live password session of `user_id` in `org_id`, opened at `created_at` (epoch ms) and
    /// ending at `expires_at`, with nothing else set: the fixture of tests across the crate.
    #[cfg(test)]
    pub fn for_tests(
        id: &str,
        user_id: i64,
        org_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            id: id.into(),
            user_id,
            org_id,
            method: "password".into(),
            client: None,
            address: None,
            user_agent: None,
            created_at,
            expires_at,
            token_expires_at: created_at,
            last_renewed_at: None,
            renew_count: 0,
            revoked_at: None,
            restriction: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    ApiKey,
    /// An OAuth client's access token (client credentials, `POST /oauth/token`): a session of
    /// a service account that cannot be renewed and carries the scopes it was granted.
    Client,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::ApiKey => "api_key",
            Self::Client => "client_credentials",
        }
    }

    /// A person's session: the one way of calling that scopes do not narrow.
    pub fn is_person(self) -> bool {
        self == Self::Session
    }
}

/// Who is calling, checked against the database for this request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user_uuid: Arc<str>,
    pub org_id: i64,
    /// The current role in `org_id` (read now, not copied from the token).
    pub role: Role,
    pub is_platform_admin: bool,
    pub method: AuthMethod,
    /// The session behind a session token; `None` for an API key.
    pub session: Option<Arc<SessionRecord>>,
    /// What an API key may do (`http::scopes` checks each route); every scope for a session.
    pub scopes: Scopes,
    /// When the API key used ends (Unix epoch ms), if it was made to expire.
    pub key_expires_at: Option<i64>,
    /// Where this request came from, for the audit trail.
    pub origin: RequestOrigin,
    /// The session token used, as the token memo keeps it: its claims, and what this request
    /// finds for it (the member's profile) is remembered there for the next.
    pub token: Option<Arc<VerifiedToken>>,
}

impl Principal {
    /// A session that may only enrol the second factor its org requires.
    pub fn must_enroll_mfa(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.restriction.as_deref() == Some(MFA_ENROLLMENT))
    }

    /// Refuses an API key where only a person in a session may act: minting keys (a leaked key
    /// must not be able to outlive its own deletion through a child, nor outlast its own
    /// expiry) and the account's security settings (password, second factor, sessions).
    pub fn require_session(&self, what: &str) -> Result<(), super::error::DomainError> {
        if !self.method.is_person() {
            return Err(super::error::DomainError::ForbiddenBecause(format!(
                "an API key or client token cannot {what}; use a session token"
            )));
        }
        Ok(())
    }

    /// A session that is good for nothing but answering its second factor.
    pub fn awaits_second_factor(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.restriction.as_deref() == Some(MFA_CHALLENGE))
    }
}

impl Principal {
    /// Admin of `org_id`, through this token's org, or a platform admin.
    pub fn administers_org(&self, org_id: i64) -> bool {
        self.is_platform_admin || (self.org_id == org_id && self.role.is_admin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(created: i64, cap: i64) -> SessionRecord {
        SessionRecord::for_tests("s", 1, 1, created, cap)
    }

    #[test]
    fn token_expiry_is_ttl_later_in_whole_seconds() {
        let s = session(0, 12 * 3600 * 1000);
        let exp = s.token_expiry(from_millis(1_234), Duration::from_secs(900));
        assert_eq!(to_millis(exp), 901_000);
    }

    #[test]
    fn token_expiry_never_passes_the_session_cap() {
        let cap = 3_600_000;
        let s = session(0, cap);
        let exp = s.token_expiry(from_millis(cap - 60_000), Duration::from_secs(900));
        assert_eq!(to_millis(exp), cap);
    }

    #[test]
    fn revoked_or_capped_sessions_are_not_live() {
        let mut s = session(0, 10_000);
        assert!(s.is_live(from_millis(9_999)));
        assert!(!s.is_live(from_millis(10_000)));
        s.revoked_at = Some(5);
        assert!(!s.is_live(from_millis(1)));
    }

    #[test]
    fn pending_renewals_add_up_per_session_and_keep_the_newest_expiry() {
        let pending = PendingRenewals::default();
        pending.note("a", 900, 10);
        pending.note("a", 1800, 20);
        pending.note("b", 600, 15);
        let mut batch = pending.take();
        batch.sort_by(|x, y| x.session_id.cmp(&y.session_id));
        assert_eq!(
            batch,
            [
                Renewal {
                    session_id: "a".into(),
                    count: 2,
                    token_expires_at: 1800,
                    renewed_at: 20
                },
                Renewal {
                    session_id: "b".into(),
                    count: 1,
                    token_expires_at: 600,
                    renewed_at: 15
                },
            ]
        );
        assert!(pending.take().is_empty(), "taken means gone");
    }

    #[test]
    fn a_batch_put_back_joins_what_came_since() {
        let pending = PendingRenewals::default();
        pending.note("a", 900, 10);
        let failed = pending.take();
        pending.note("a", 700, 30);
        pending.restore(failed);
        assert_eq!(
            pending.take(),
            [Renewal {
                session_id: "a".into(),
                count: 2,
                token_expires_at: 900,
                renewed_at: 30
            }]
        );
    }
}
