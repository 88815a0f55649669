//! Password policy: what a new password must satisfy in an org.

use super::error::{DomainError, DomainResult};
use super::password::Password;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: u32,
    /// 0: passwords never expire (the default; NIST and ASVS advise against rotation).
    pub max_age_days: u32,
    pub history_count: u32,
    pub reject_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_age_days: 0,
            history_count: 0,
            reject_common: false,
        }
    }
}

impl PasswordPolicy {
    /// Checks a new password against the rules that need no history.
    pub fn check(&self, password: &Password) -> DomainResult<()> {
        let min = usize::try_from(self.min_length).unwrap_or(usize::MAX);
        if password.char_count() < min {
            return Err(DomainError::invalid(format!(
                "password must be at least {} characters",
                self.min_length
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_wants_twelve_characters() {
        let policy = PasswordPolicy::default();
        assert!(
            policy
                .check(&Password::parse("elevenchars".into()).unwrap())
                .is_err()
        );
        assert!(
            policy
                .check(&Password::parse("twelve chars".into()).unwrap())
                .is_ok()
        );
        // characters, not bytes
        assert!(
            policy
                .check(&Password::parse("ééééééééééé".into()).unwrap())
                .is_err()
        );
    }
}
