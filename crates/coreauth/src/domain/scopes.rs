//! API key scopes: what a key may do, on top of what its owner's role allows. A key acts as its
//! owner (a person or a service account) and never beyond that role; its scopes narrow it to
//! areas of the API. Sessions are not scoped: a person signed in may do what the role allows.
//!
//! The set is small and maps onto the API's areas (which route needs which is
//! `http::scopes::needed`, one table): `keys` (the caller's keys, the org's keys, service
//! accounts), `users` (profiles, members, users, sessions), `org` (the org's settings: password
//! policy, SSO, domains, integrations), `audit`, token introspection and minting integration
//! tokens. A write scope includes its area's read; `read` is every read at once (what
//! `readOnly` used to mean).

use super::error::{DomainError, DomainResult};

/// One scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    KeysRead,
    KeysWrite,
    UsersRead,
    UsersWrite,
    OrgRead,
    OrgWrite,
    AuditRead,
    TokensIntrospect,
    IntegrationsMint,
}

/// Every scope, with its name and what it grants (the API's description of them).
pub const SCOPES: [(Scope, &str, &str); 10] = [
    (
        Scope::Read,
        "read",
        "every read below: what readOnly keys were",
    ),
    (
        Scope::KeysRead,
        "keys:read",
        "list API keys and service accounts",
    ),
    (
        Scope::KeysWrite,
        "keys:write",
        "create, rotate and delete API keys and service accounts",
    ),
    (
        Scope::UsersRead,
        "users:read",
        "read profiles, members, users and sessions",
    ),
    (
        Scope::UsersWrite,
        "users:write",
        "create and change users and members, end sessions",
    ),
    (
        Scope::OrgRead,
        "org:read",
        "read the org's settings: policy, SSO, domains, integrations",
    ),
    (Scope::OrgWrite, "org:write", "change the org's settings"),
    (Scope::AuditRead, "audit:read", "read the audit trail"),
    (
        Scope::TokensIntrospect,
        "tokens:introspect",
        "introspect tokens (POST /token/introspect)",
    ),
    (
        Scope::IntegrationsMint,
        "integrations:mint",
        "mint integration tokens (POST /user/authenticate/{name})",
    ),
];

impl Scope {
    pub fn name(self) -> &'static str {
        SCOPES[self.index()].1
    }

    fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u16 {
        1 << self.index()
    }

    pub fn parse(name: &str) -> DomainResult<Self> {
        SCOPES
            .iter()
            .find(|(_, known, _)| *known == name)
            .map(|(scope, _, _)| *scope)
            .ok_or_else(|| {
                let names: Vec<&str> = SCOPES.iter().map(|(_, n, _)| *n).collect();
                DomainError::invalid(format!(
                    "unknown scope '{}'; the scopes are {}",
                    name.chars().take(40).collect::<String>(),
                    names.join(", ")
                ))
            })
    }

    /// The write scope's read, for scopes that have one.
    fn read_of(self) -> Option<Self> {
        match self {
            Self::KeysWrite => Some(Self::KeysRead),
            Self::UsersWrite => Some(Self::UsersRead),
            Self::OrgWrite => Some(Self::OrgRead),
            _ => None,
        }
    }

    fn is_read(self) -> bool {
        matches!(
            self,
            Self::Read
                | Self::KeysRead
                | Self::UsersRead
                | Self::OrgRead
                | Self::AuditRead
                | Self::TokensIntrospect
        )
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u16);

impl Scopes {
    /// Every scope: a session's, and a key's made without naming any.
    pub const ALL: Self = Self((1 << SCOPES.len()) - 1);
    /// What `readOnly: true` asks for.
    pub const READ: Self = Self(1 << Scope::Read as usize);

    /// Scopes by name, as a caller gives them; none at all is refused (a key that can do
    /// nothing is a mistake, not a request).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> DomainResult<Self> {
        if names.is_empty() {
            return Err(DomainError::invalid("scopes must name at least one scope"));
        }
        let mut set = 0;
        for name in names {
            set |= Scope::parse(name.as_ref().trim())?.bit();
        }
        Ok(Self(set))
    }

    /// As the store keeps them: names separated by spaces (OAuth's form). Names it does not
    /// know (from a newer version) grant nothing.
    pub fn from_stored(stored: &str) -> Self {
        Self(
            stored
                .split_whitespace()
                .filter_map(|name| Scope::parse(name).ok())
                .fold(0, |set, scope| set | scope.bit()),
        )
    }

    pub fn to_stored(self) -> String {
        self.names().join(" ")
    }

    pub fn names(self) -> Vec<&'static str> {
        SCOPES
            .iter()
            .filter(|(scope, _, _)| self.0 & scope.bit() != 0)
            .map(|(_, name, _)| *name)
            .collect()
    }

    fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether a caller holding these scopes may do what `need` names.
    pub fn allow(self, need: Scope) -> bool {
        self.has(need)
            || (need.is_read() && need != Scope::Read && self.has(Scope::Read))
            || SCOPES
                .iter()
                .any(|(held, _, _)| self.has(*held) && held.read_of() == Some(need))
    }

    /// Whether every scope here is one `holder` allows: a key makes keys only within its own.
    pub fn within(self, holder: Self) -> bool {
        SCOPES
            .iter()
            .filter(|(scope, _, _)| self.has(*scope))
            .all(|(scope, _, _)| holder.allow(*scope))
    }

    /// Whether these scopes change nothing: shown as `readOnly`.
    pub fn read_only(self) -> bool {
        SCOPES
            .iter()
            .all(|(scope, _, _)| !self.has(*scope) || scope.is_read())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order() {
        for (index, (scope, _, _)) in SCOPES.iter().enumerate() {
            assert_eq!(scope.index(), index);
        }
    }

    #[test]
    fn stored_scopes_read_back_the_same() {
        let scopes = Scopes::parse(&["users:read", "keys:write"]).unwrap();
        assert_eq!(scopes.to_stored(), "keys:write users:read");
        assert_eq!(Scopes::from_stored(&scopes.to_stored()), scopes);
        assert_eq!(Scopes::from_stored(&Scopes::ALL.to_stored()), Scopes::ALL);
        assert_eq!(Scopes::from_stored("read future:scope"), Scopes::READ);
    }

    #[test]
    fn read_allows_every_read_and_no_write() {
        let read = Scopes::READ;
        for (scope, _, _) in SCOPES {
            assert_eq!(read.allow(scope), scope.is_read(), "{scope:?}");
        }
        assert!(read.read_only());
    }

    #[test]
    fn a_write_scope_includes_its_own_read_only() {
        let keys = Scopes::parse(&["keys:write"]).unwrap();
        assert!(keys.allow(Scope::KeysRead));
        assert!(keys.allow(Scope::KeysWrite));
        assert!(!keys.allow(Scope::UsersRead));
        assert!(!keys.allow(Scope::Read));
        assert!(!keys.read_only());
    }

    #[test]
    fn a_key_makes_keys_only_within_its_own_scopes() {
        let holder = Scopes::parse(&["read", "keys:write"]).unwrap();
        assert!(Scopes::parse(&["users:read"]).unwrap().within(holder));
        assert!(
            Scopes::parse(&["keys:write", "read"])
                .unwrap()
                .within(holder)
        );
        assert!(!Scopes::parse(&["users:write"]).unwrap().within(holder));
        assert!(!Scopes::ALL.within(holder));
        assert!(!Scopes::READ.within(Scopes::parse(&["users:read"]).unwrap()));
    }

    #[test]
    fn unknown_and_empty_scope_lists_are_refused() {
        assert!(Scopes::parse(&["admin"]).is_err());
        assert!(Scopes::parse::<&str>(&[]).is_err());
    }
}
