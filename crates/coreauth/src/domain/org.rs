//! Orgs and memberships: names, roles, and the records the store hands back.

pub use crate::store::records::{MembershipPatch, MembershipRecord, OrgRecord, Role};

use super::error::{DomainError, DomainResult};

pub const MAX_NAME_CHARS: usize = 200;

impl Role {
    pub fn parse(input: &str) -> DomainResult<Self> {
        Self::from_stored(&input.trim().to_ascii_lowercase())
            .ok_or_else(|| DomainError::invalid("role must be 'admin' or 'member'"))
    }

    pub fn is_admin(self) -> bool {
        self == Self::Admin
    }
}

/// A display name (org name, first or last name): trimmed, no control characters, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, input: &str, allow_empty: bool) -> DomainResult<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() && !allow_empty {
            return Err(DomainError::invalid(format!("{field} must not be empty")));
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(DomainError::invalid(format!(
                "{field} must be at most {MAX_NAME_CHARS} characters"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid(format!(
                "{field} must not contain control characters"
            )));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively_and_nothing_else() {
        assert_eq!(Role::parse(" Admin ").unwrap(), Role::Admin);
        assert_eq!(Role::parse("member").unwrap(), Role::Member);
        assert!(Role::parse("owner").is_err());
        assert!(Role::parse("").is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            Name::parse("name", "  Acme ", false).unwrap().as_str(),
            "Acme"
        );
        assert!(Name::parse("name", "   ", false).is_err());
        assert!(Name::parse("last", "", true).is_ok());
        assert!(Name::parse("name", &"x".repeat(201), false).is_err());
        assert!(Name::parse("name", "a\u{0}b", false).is_err());
    }
}
