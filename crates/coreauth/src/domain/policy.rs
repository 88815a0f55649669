//! Password policy: what a new password must satisfy in an org, and when one expires.
//!
//! Expiry is an org's opt-in (`maxAgeDays` 0, the default, never expires): NIST 800-63B and
//! OWASP ASVS advise against periodic rotation, but the customer's orgs may require it.

pub use crate::store::records::PasswordPolicy;

use std::collections::HashSet;
use std::sync::LazyLock;

use super::error::{DomainError, DomainResult};
use super::password::Password;
use crate::cache::{CachedReads, MemberProfile};
use crate::store::SsoConnectionRecord;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The 30,000 most common passwords (see `data/README.md` for source and licence), compiled
/// into the binary and indexed on first use. Immutable data, so a static is right here.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_age_days: 0,
            history_count: 0,
            reject_common: false,
            require_mfa: false,
            require_verified_email: false,
        }
    }
}

impl PasswordPolicy {
    /// What a new password must meet to satisfy both policies: the longer minimum, the longer
    /// history, common passwords refused if either refuses them. (Expiry and the second factor
    /// stay each org's own: they are read at login, per org.)
    pub fn and(self, other: &Self) -> Self {
        Self {
            min_length: self.min_length.max(other.min_length),
            history_count: self.history_count.max(other.history_count),
            reject_common: self.reject_common || other.reject_common,
            ..self
        }
    }

    pub const MIN_LENGTH_RANGE: (u32, u32) = (8, 128);
    pub const MAX_AGE_DAYS_LIMIT: u32 = 3650;
    pub const HISTORY_LIMIT: u32 = 24;

    /// A policy as an admin asked for it, checked against sane bounds.
    pub fn new(
        min_length: u32,
        max_age_days: u32,
        history_count: u32,
        reject_common: bool,
    ) -> DomainResult<Self> {
        let (lo, hi) = Self::MIN_LENGTH_RANGE;
        if !(lo..=hi).contains(&min_length) {
            return Err(DomainError::invalid(format!(
                "minLength must be between {lo} and {hi}"
            )));
        }
        if max_age_days > Self::MAX_AGE_DAYS_LIMIT {
            return Err(DomainError::invalid(format!(
                "maxAgeDays must be between 0 (never) and {}",
                Self::MAX_AGE_DAYS_LIMIT
            )));
        }
        if history_count > Self::HISTORY_LIMIT {
            return Err(DomainError::invalid(format!(
                "historyCount must be between 0 and {}",
                Self::HISTORY_LIMIT
            )));
        }
        Ok(Self {
            min_length,
            max_age_days,
            history_count,
            reject_common,
            require_mfa: false,
            require_verified_email: false,
        })
    }

    /// Checks a new password against the rules that need no history.
    pub fn check(&self, password: &Password) -> DomainResult<()> {
        let min = usize::try_from(self.min_length).unwrap_or(usize::MAX);
        if password.char_count() < min {
            return Err(DomainError::invalid(format!(
                "password must be at least {} characters",
                self.min_length
            )));
        }
        if self.reject_common && is_common(password) {
            return Err(DomainError::invalid(
                "this password is among the most commonly used ones; choose another",
            ));
        }
        Ok(())
    }

    /// When a password set at `set_at` (epoch ms) expires; `None` when it never does.
    pub fn expires_at(&self, set_at: Option<i64>) -> Option<i64> {
        if self.max_age_days == 0 {
            return None;
        }
        // A user with no password (SSO only) has nothing to expire.
        Some(set_at?.saturating_add(i64::from(self.max_age_days) * DAY_MS))
    }

    pub fn is_expired(&self, set_at: Option<i64>, now_ms: i64) -> bool {
        self.expires_at(set_at).is_some_and(|at| at <= now_ms)
    }
}

impl MemberProfile {
    /// When the member's password expires under the org's policy (epoch ms); `None`: never.
    pub fn password_expires_at(&self) -> Option<i64> {
        self.policy().expires_at(self.user().password_set_at)
    }
}

/// An org's policy, or the defaults when it has none.
pub async fn policy_of(reads: &CachedReads, org_id: i64) -> DomainResult<PasswordPolicy> {
    Ok(reads.password_policy(org_id).await?.unwrap_or_default())
}

fn is_common(password: &Password) -> bool {
    COMMON_PASSWORDS.contains(password.expose().to_lowercase().as_str())
}

/// Whether a password may open a session in an org with these SSO connections, for an email in
/// `email_domain`: the connection the domain signs in through decides; for an address in none
/// of them, passwords are allowed only if every connection allows them.
pub fn password_allowed(connections: &[SsoConnectionRecord], email_domain: &str) -> bool {
    match connections
        .iter()
        .find(|c| c.email_domains.iter().any(|d| d == email_domain))
    {
        Some(connection) => connection.allow_password,
        None => connections.iter().all(|c| c.allow_password),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn two_policies_together_take_the_stricter_of_each_rule() {
        let strict = PasswordPolicy::new(20, 90, 5, false).unwrap();
        let common = PasswordPolicy::new(10, 0, 8, true).unwrap();
        let both = strict.and(&common);
        assert_eq!(both.min_length, 20);
        assert_eq!(both.history_count, 8);
        assert!(both.reject_common);
        assert_eq!(both.max_age_days, 90, "expiry stays the first policy's");
    }

    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse(s.into()).unwrap()
    }

    #[test]
    fn default_policy_wants_twelve_characters_and_never_expires() {
        let policy = PasswordPolicy::default();
        assert!(policy.check(&pw("elevenchars")).is_err());
        assert!(policy.check(&pw("twelve chars")).is_ok());
        // characters, not bytes
        assert!(policy.check(&pw("ééééééééééé")).is_err());
        assert_eq!(policy.expires_at(Some(1_000)), None);
        assert!(!policy.is_expired(Some(0), i64::MAX));
    }

    #[test]
    fn the_common_list_is_shipped_and_checked_case_insensitively() {
        assert!(COMMON_PASSWORDS.len() >= 10_000);
        let policy = PasswordPolicy::new(8, 0, 0, true).unwrap();
        assert!(policy.check(&pw("password")).is_err());
        assert!(policy.check(&pw("PassWord")).is_err());
        assert!(policy.check(&pw("baseball")).is_err());
        assert!(policy.check(&pw("qwertyuiop")).is_err());
        assert!(policy.check(&pw("violet-lantern-42")).is_ok());
        let lenient = PasswordPolicy::new(8, 0, 0, false).unwrap();
        assert!(lenient.check(&pw("password")).is_ok());
    }

    #[test]
    fn passwords_expire_max_age_days_after_they_were_set() {
        let policy = PasswordPolicy::new(12, 90, 0, false).unwrap();
        let set_at = 1_000_000;
        let expiry = set_at + 90 * DAY_MS;
        assert_eq!(policy.expires_at(Some(set_at)), Some(expiry));
        assert!(!policy.is_expired(Some(set_at), expiry - 1));
        assert!(policy.is_expired(Some(set_at), expiry));
    }

    #[test]
    fn out_of_range_policies_are_refused() {
        assert!(PasswordPolicy::new(7, 0, 0, false).is_err());
        assert!(PasswordPolicy::new(129, 0, 0, false).is_err());
        assert!(PasswordPolicy::new(12, 3651, 0, false).is_err());
        assert!(PasswordPolicy::new(12, 0, 25, false).is_err());
        assert!(PasswordPolicy::new(8, 3650, 24, true).is_ok());
    }
}
