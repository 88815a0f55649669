//! What a provider's claims mean for one connection: which claim is the email, whether it is
//! believed without `email_verified`, and which role the groups give. Entra ID (v2) never sends
//! `email_verified` and often no `email` (its `preferred_username` is the sign-in name); ADFS
//! sends `upn` and `unique_name`, and an email only through a claim rule. The presets hold
//! those habits, so that an admin picks a provider rather than learning its claims.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::org::Role;
use crate::store::records::ClaimMapping;

/// Where a connection's defaults come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Entra,
    Adfs,
    Generic,
}

impl Preset {
    pub fn parse(input: &str) -> DomainResult<Self> {
        match input {
            "entra" => Ok(Self::Entra),
            "adfs" => Ok(Self::Adfs),
            "generic" => Ok(Self::Generic),
            _ => Err(DomainError::invalid(
                "preset must be entra, adfs or generic",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entra => "entra",
            Self::Adfs => "adfs",
            Self::Generic => "generic",
        }
    }

    /// The mapping a connection of this kind starts from. Entra and ADFS are trusted for the
    /// email without `email_verified` (they never send it); what they assert still has to be in
    /// one of the connection's verified domains.
    pub fn mapping(self) -> ClaimMapping {
        let names = |list: &[&str]| list.iter().map(|&n| n.to_owned()).collect();
        let (email_claims, trust, groups) = match self {
            Self::Entra => (
                names(&["email", "preferred_username", "upn"]),
                true,
                "groups",
            ),
            // ADFS names the group claim type `http://schemas.xmlsoap.org/claims/Group` `group`.
            Self::Adfs => (names(&["email", "upn", "unique_name"]), true, "group"),
            Self::Generic => (names(&["email"]), false, "groups"),
        };
        ClaimMapping {
            email_claims,
            trust_unverified_email: trust,
            groups_claim: Some(groups.to_owned()),
            role_mapping: BTreeMap::new(),
            default_role: Some(Role::Member.as_str().to_owned()),
        }
    }
}

impl Preset {
    /// The mapping a SAML connection of this kind starts from: the claim types ADFS and Entra
    /// send as attribute names, and the common names (or the NameID) otherwise. The email is
    /// believed as asserted: SAML has no `email_verified`, and it must still be in one of the
    /// connection's verified domains.
    pub fn saml_mapping(self) -> ClaimMapping {
        const CLAIMS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
        let (email_claims, groups) = match self {
            Self::Entra => (
                vec![format!("{CLAIMS}/emailaddress"), format!("{CLAIMS}/name")],
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups".to_owned(),
            ),
            Self::Adfs => (
                vec![format!("{CLAIMS}/emailaddress"), format!("{CLAIMS}/upn")],
                "http://schemas.xmlsoap.org/claims/Group".to_owned(),
            ),
            Self::Generic => (
                [
                    "email",
                    "mail",
                    "urn:oid:0.9.2342.19200300.100.1.3",
                    "nameid",
                ]
                .map(str::to_owned)
                .to_vec(),
                "groups".to_owned(),
            ),
        };
        ClaimMapping {
            email_claims,
            trust_unverified_email: true,
            groups_claim: Some(groups),
            role_mapping: BTreeMap::new(),
            default_role: Some(Role::Member.as_str().to_owned()),
        }
    }
}

/// What an admin may change of a preset's mapping; what is absent keeps the preset's value.
#[derive(Debug, Default, Clone)]
pub struct MappingRequest {
    pub email_claims: Option<Vec<String>>,
    pub trust_unverified_email: Option<bool>,
    pub groups_claim: Option<String>,
    pub role_mapping: Option<BTreeMap<String, String>>,
    /// `admin`, `member`, or `none` (refuse people no group maps).
    pub default_role: Option<String>,
}

const MAX_EMAIL_CLAIMS: usize = 8;
const MAX_GROUPS: usize = 200;

/// A claim's name: what providers use, never markup or control characters (it is shown back).
fn claim_name(field: &str, name: &str) -> DomainResult<String> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(DomainError::invalid(format!(
            "{field}: claim names are 1-200 of A-Z a-z 0-9 _ - . : /"
        )))
    }
}

fn role_name(field: &str, role: &str) -> DomainResult<String> {
    Role::parse(role)
        .map(|r| r.as_str().to_owned())
        .map_err(|_| DomainError::invalid(format!("{field} must be admin or member")))
}

impl MappingRequest {
    /// The preset's mapping with the request's changes, checked.
    pub fn apply_to(self, preset: Preset) -> DomainResult<ClaimMapping> {
        self.apply(preset.mapping())
    }

    /// The preset's SAML mapping with the request's changes, checked.
    pub fn apply_to_saml(self, preset: Preset) -> DomainResult<ClaimMapping> {
        self.apply(preset.saml_mapping())
    }

    fn apply(self, mut mapping: ClaimMapping) -> DomainResult<ClaimMapping> {
        if let Some(claims) = self.email_claims {
            if claims.is_empty() || claims.len() > MAX_EMAIL_CLAIMS {
                return Err(DomainError::invalid(format!(
                    "emailClaims: give 1-{MAX_EMAIL_CLAIMS} claim names"
                )));
            }
            mapping.email_claims = claims
                .iter()
                .map(|c| claim_name("emailClaims", c))
                .collect::<DomainResult<_>>()?;
        }
        if let Some(trust) = self.trust_unverified_email {
            mapping.trust_unverified_email = trust;
        }
        if let Some(claim) = self.groups_claim {
            mapping.groups_claim = Some(claim_name("groupsClaim", &claim)?);
        }
        if let Some(groups) = self.role_mapping {
            if groups.len() > MAX_GROUPS {
                return Err(DomainError::invalid(format!(
                    "roleMapping holds at most {MAX_GROUPS} groups"
                )));
            }
            mapping.role_mapping = groups
                .into_iter()
                .map(|(group, role)| {
                    if group.is_empty() || group.len() > 256 || group.chars().any(char::is_control)
                    {
                        return Err(DomainError::invalid(
                            "roleMapping: group names are 1-256 characters",
                        ));
                    }
                    Ok((group, role_name("roleMapping's roles", &role)?))
                })
                .collect::<DomainResult<_>>()?;
        }
        if let Some(role) = self.default_role {
            mapping.default_role = match role.as_str() {
                "none" => None,
                other => Some(role_name("defaultRole (or none)", other)?),
            };
        }
        Ok(mapping)
    }
}

/// The email a provider asserts, under a connection's mapping: the first of its email claims
/// that holds an address. An `email` with `email_verified: true` is taken; one the provider
/// says is unverified never is; any other only when the connection trusts the provider.
pub fn asserted_email(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
) -> Result<Email, SsoFailure> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(flag)) => Some(*flag),
        // Some providers send it as a string.
        Some(Value::String(flag)) => Some(flag == "true"),
        _ => None,
    };
    let (name, email) = mapping
        .email_claims
        .iter()
        .find_map(|name| {
            let value = claims.get(name)?.as_str()?;
            Email::parse(value).ok().map(|email| (name.as_str(), email))
        })
        .ok_or(SsoFailure::EmailMissing)?;
    let believed = match (name, verified) {
        ("email", Some(flag)) => flag,
        _ => mapping.trust_unverified_email,
    };
    if believed {
        Ok(email)
    } else {
        Err(SsoFailure::EmailUnverified)
    }
}

/// The role the provider's groups give, under a connection's mapping: `None` when the mapping
/// names no groups (the account keeps its role; a new one gets the default). With groups
/// mapped, the highest role matched, or the default, or a refusal when there is none.
pub fn asserted_role(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
) -> Result<Option<Role>, SsoFailure> {
    if mapping.role_mapping.is_empty() {
        return Ok(None);
    }
    let groups: Vec<&str> = match mapping.groups_claim.as_ref().and_then(|c| claims.get(c)) {
        Some(Value::String(group)) => vec![group.as_str()],
        Some(Value::Array(groups)) => groups.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let matched = groups
        .iter()
        .filter_map(|group| mapping.role_mapping.get(*group))
        .filter_map(|role| Role::from_stored(role));
    let best = matched.fold(None, |best: Option<Role>, role| match best {
        Some(Role::Admin) => best,
        _ => Some(role),
    });
    match best.or_else(|| default_role(mapping)) {
        Some(role) => Ok(Some(role)),
        None => Err(SsoFailure::NoRole),
    }
}

/// The role of an account the connection creates when its groups say nothing.
pub fn default_role(mapping: &ClaimMapping) -> Option<Role> {
    mapping.default_role.as_deref().and_then(Role::from_stored)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn entra_signs_in_by_preferred_username_without_email_verified() {
        let entra = Preset::Entra.mapping();
        let token = claims(json!({"preferred_username": "Alice@Acme.example", "oid": "x"}));
        assert_eq!(
            asserted_email(&entra, &token).unwrap().key(),
            "alice@acme.example"
        );
        let generic = Preset::Generic.mapping();
        assert_eq!(
            asserted_email(&generic, &token),
            Err(SsoFailure::EmailMissing)
        );
        let unverified = claims(json!({"email": "alice@acme.example"}));
        assert_eq!(
            asserted_email(&generic, &unverified),
            Err(SsoFailure::EmailUnverified)
        );
    }

    #[test]
    fn adfs_falls_back_to_upn_then_unique_name() {
        let adfs = Preset::Adfs.mapping();
        let upn = claims(json!({"upn": "bob@corp.example", "unique_name": "CORP\\bob"}));
        assert_eq!(
            asserted_email(&adfs, &upn).unwrap().as_str(),
            "bob@corp.example"
        );
        let only_name = claims(json!({"upn": "CORP\\bob", "unique_name": "bob@corp.example"}));
        assert_eq!(
            asserted_email(&adfs, &only_name).unwrap().as_str(),
            "bob@corp.example",
            "a claim that holds no address is skipped"
        );
    }

    #[test]
    fn an_email_the_provider_calls_unverified_is_never_taken() {
        let entra = Preset::Entra.mapping();
        let token = claims(json!({"email": "a@acme.example", "email_verified": false,
            "preferred_username": "a@acme.example"}));
        assert_eq!(
            asserted_email(&entra, &token),
            Err(SsoFailure::EmailUnverified)
        );
        let stringly = claims(json!({"email": "a@acme.example", "email_verified": "true"}));
        assert!(asserted_email(&Preset::Generic.mapping(), &stringly).is_ok());
    }

    #[test]
    fn groups_give_the_highest_role_matched_or_the_default_or_nothing() {
        let request = MappingRequest {
            role_mapping: Some(BTreeMap::from([
                ("g-admins".to_owned(), "admin".to_owned()),
                ("g-staff".to_owned(), "member".to_owned()),
            ])),
            ..MappingRequest::default()
        };
        let mapping = request.clone().apply_to(Preset::Entra).unwrap();
        let both = claims(json!({"groups": ["g-staff", "g-admins", "other"]}));
        assert_eq!(asserted_role(&mapping, &both), Ok(Some(Role::Admin)));
        let staff = claims(json!({"groups": "g-staff"}));
        assert_eq!(asserted_role(&mapping, &staff), Ok(Some(Role::Member)));
        let none = claims(json!({"groups": ["other"]}));
        assert_eq!(asserted_role(&mapping, &none), Ok(Some(Role::Member)));
        let strict = MappingRequest {
            default_role: Some("none".into()),
            ..request
        }
        .apply_to(Preset::Entra)
        .unwrap();
        assert_eq!(asserted_role(&strict, &none), Err(SsoFailure::NoRole));
        assert_eq!(
            asserted_role(&strict, &claims(json!({}))),
            Err(SsoFailure::NoRole)
        );
        let unmapped = Preset::Adfs.mapping();
        assert_eq!(asserted_role(&unmapped, &both), Ok(None));
    }

    #[test]
    fn bad_mappings_are_refused() {
        let bad = [
            MappingRequest {
                email_claims: Some(vec![]),
                ..MappingRequest::default()
            },
            MappingRequest {
                email_claims: Some(vec!["<script>".into()]),
                ..MappingRequest::default()
            },
            MappingRequest {
                role_mapping: Some(BTreeMap::from([("g".to_owned(), "owner".to_owned())])),
                ..MappingRequest::default()
            },
            MappingRequest {
                default_role: Some("root".into()),
                ..MappingRequest::default()
            },
        ];
        for request in bad {
            assert!(request.apply_to(Preset::Generic).is_err());
        }
    }
}
