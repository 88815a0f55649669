//! `Email`: checked once at the edge, then trusted. Uniqueness is case-insensitive, so every
//! email also has a `key` (fully lower-cased) that lookups and the unique index use.

use std::fmt;

use super::error::DomainError;

const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email {
    /// As the user typed it, trimmed, with the domain lower-cased.
    display: String,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        let invalid = || DomainError::invalid("email must look like name@example.com");
        if trimmed.is_empty() || trimmed.len() > MAX_LEN {
            return Err(invalid());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || local.len() > MAX_LOCAL_LEN
            || local.contains('@')
            || local.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let domain = EmailDomain::parse(domain).map_err(|_| invalid())?;
        Ok(Self {
            display: format!("{local}@{}", domain.as_str()),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-insensitive identity of this address.
    pub fn key(&self) -> String {
        self.display.to_lowercase()
    }

    pub fn domain(&self) -> EmailDomain {
        let domain = self.display.rsplit_once('@').map_or("", |(_, d)| d);
        EmailDomain(domain.to_owned())
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A DNS name an org claims for its users' emails, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailDomain(String);

impl EmailDomain {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let domain = input.trim().trim_end_matches('.').to_ascii_lowercase();
        let invalid =
            || DomainError::invalid(format!("'{}' is not a valid email domain", input.trim()));
        if domain.is_empty() || domain.len() > 253 || !domain.contains('.') {
            return Err(invalid());
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !domain.split('.').all(label_ok) {
            return Err(invalid());
        }
        Ok(Self(domain))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases_the_domain_only() {
        let email = Email::parse("  John.Doe@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "John.Doe@example.com");
        assert_eq!(email.key(), "john.doe@example.com");
        assert_eq!(email.domain().as_str(), "example.com");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@-bad.com",
            "a@bad..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(260));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn domains_are_normalised() {
        assert_eq!(
            EmailDomain::parse("Corp.Example.ORG.").unwrap().as_str(),
            "corp.example.org"
        );
        assert!(EmailDomain::parse("under_score.com").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever comes in, parsing never panics, and what it accepts is stable: the shown
        /// form parses to itself and the key is its lower-case form.
        #[test]
        fn parsing_is_total_and_idempotent(input in "\\PC{0,80}|[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,10}\\.[a-zA-Z]{2,5}") {
            if let Ok(email) = Email::parse(&input) {
                let again = Email::parse(email.as_str()).unwrap();
                proptest::prop_assert_eq!(again.as_str(), email.as_str());
                proptest::prop_assert_eq!(email.key(), email.as_str().to_lowercase());
                proptest::prop_assert_eq!(email.as_str().trim(), email.as_str());
                proptest::prop_assert!(email.as_str().len() <= 254);
            }
        }
    }
}
