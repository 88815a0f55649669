//! Users: the records are the store's (`store::records`); this is how the domain makes them
//! from validated parts.

pub use crate::store::records::{NewUser, UserPatch, UserRecord};

use super::email::Email;
use super::error::{DomainError, DomainResult};
use super::org::Name;
use crate::store::records::Role;

impl NewUser {
    /// A new person from validated parts, with a fresh uuid: no password, no platform power,
    /// no membership and no SSO identity until the caller sets them.
    pub fn person(email: &Email, first: Name, last: Name, created_at: i64) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            email_key: email.key(),
            first: first.into_string(),
            last: last.into_string(),
            password_hash: None,
            is_platform_admin: false,
            created_at,
            membership: None,
            sso_identity: None,
            username: None,
            is_service: false,
        }
    }

    /// A person without an address yet (a directory gave none the org may use): no login,
    /// mail or SSO finds the account by address until one is set. Its `email_key` is
    /// `unaddressed:` and its uuid, which no address parses to.
    pub fn person_without_email(first: Name, last: Name, created_at: i64) -> Self {
        let uuid = uuid::Uuid::new_v4().to_string();
        Self {
            email: String::new(),
            email_key: unaddressed_key(&uuid),
            uuid,
            first: first.into_string(),
            last: last.into_string(),
            password_hash: None,
            is_platform_admin: false,
            created_at,
            membership: None,
            sso_identity: None,
            username: None,
            is_service: false,
        }
    }

    /// A service account of `org_id`: a user with no email or password that acts only
    /// through its API keys, as `role` in its one org.
    pub fn service_account(name: Name, org_id: i64, role: Role, created_at: i64) -> Self {
        let uuid = uuid::Uuid::new_v4().to_string();
        Self {
            email: String::new(),
            // No address parses to this, so no login, SSO or invitation can find the account.
            email_key: format!("service:{uuid}"),
            uuid,
            first: name.into_string(),
            last: String::new(),
            password_hash: None,
            is_platform_admin: false,
            created_at,
            membership: Some((org_id, role)),
            sso_identity: None,
            username: None,
            is_service: true,
        }
    }
}

/// The lookup key of an account without an address (`NewUser::person_without_email`).
pub fn unaddressed_key(uuid: &str) -> String {
    format!("unaddressed:{uuid}")
}

/// A username: the optional login name besides the email (seed 004's `john.doe`). 1-64 ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit; never an `@`, so what a
/// person types at login is either an email or a username, never both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> DomainResult<Self> {
        let text = text.trim();
        let valid = !text.is_empty()
            && text.len() <= Self::MAX_CHARS
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(DomainError::invalid(format!(
                "a username is 1-{} letters, digits, '.', '_' or '-', starting with a letter or \
                 digit",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// What uniqueness and look-ups use: usernames differ by more than case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As the store takes it: the name and its key.
    pub fn stored(&self) -> (String, String) {
        (self.0.clone(), self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_names_not_addresses() {
        assert_eq!(
            Username::parse(" John.Doe ").map(|u| u.key()).ok(),
            Some("john.doe".into())
        );
        for bad in ["", "john@doe", ".john", "jo hn", "jöhn", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }
}
