//! SAML 2.0 connections (Web Browser SSO: the AuthnRequest by HTTP-Redirect, the response by
//! HTTP-POST to one ACS for all connections), beside OpenID Connect ones and sharing with them
//! the sign-in's record, browser binding, domains, claim mapping and accounts (`super`).
//!
//! The request's id is the sign-in's single-use key: a response must answer one coreauth sent
//! and stored, and is refused once taken. Each assertion's id is then consumed in the database
//! until it expires, so a replay to any instance is refused too. `document` checks a response's
//! shape before anything verifies it, `engine` verifies it (samael over xmlsec, with the `saml`
//! feature; `unsupported` answers without it), and this module applies the connection's
//! requirements and coreauth's clock.

use time::OffsetDateTime;

use super::token::Assertion;
use super::{Refusal, Sso, SsoOutcome};
use crate::domain::clock::to_millis;
use crate::domain::error::{DomainError, DomainResult, SamlRefusal, SsoFailure};
use crate::domain::origin::RequestOrigin;
use crate::domain::throttle::Subject;
use crate::store::records::SamlSettings;
use crate::store::{SsoConnectionRecord, SsoLoginRecord};

mod check;
#[cfg(feature = "saml")]
mod decrypt;
#[cfg(feature = "saml")]
mod document;
#[cfg(feature = "saml")]
mod engine;
#[cfg(feature = "saml")]
use engine as backend;
mod metadata;
mod settings;
#[cfg(not(feature = "saml"))]
mod unsupported;
#[cfg(not(feature = "saml"))]
use unsupported as backend;

use check::Check;
pub use settings::SamlRequest;

/// Where the IdP posts its responses.
pub const ACS_PATH: &str = "/user/authenticate/saml/acs";

/// Authentication context classes that mean more than one factor (ADFS and Entra, REFEDS).
const MULTI_FACTOR_CONTEXTS: &[&str] = &[
    "http://schemas.microsoft.com/claims/multipleauthn",
    "https://refeds.org/profile/mfa",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
];

/// What an IdP's metadata says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpDescriptor {
    pub entity_id: String,
    /// Its HTTP-Redirect single sign-on endpoint.
    pub sso_url: String,
    /// Its signing certificates (base64 DER).
    pub certificates: Vec<String>,
}

/// A response's parts that decide how it is verified, read before it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The request it answers; `None` when the IdP sent it unasked.
    pub in_response_to: Option<String>,
    /// The assertion's issuer, as claimed (verified later); the response's while the
    /// assertion is encrypted.
    pub issuer: String,
    /// Empty while the assertion is encrypted.
    pub assertion_id: String,
    pub encrypted: bool,
    pub response_signed: bool,
    pub assertion_signed: bool,
    /// The certificates the signatures' `KeyInfo` names: never trusted, only compared with the
    /// connection's to tell an unknown signer from a broken signature.
    pub named_certificates: Vec<String>,
}

/// An AuthnRequest to send the browser with.
// Read by `engine` only: a build without the `saml` feature has none.
#[cfg_attr(not(feature = "saml"), allow(dead_code))]
pub struct AuthnRequestSpec<'a> {
    pub sso_url: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// Also sent as the RelayState.
    pub request_id: &'a str,
    pub name_id_format: Option<&'a str>,
}

/// Which signatures `verify` checks.
#[cfg_attr(not(feature = "saml"), allow(dead_code))]
pub enum Signatures<'a> {
    /// Every signature in the document, against these certificates only.
    Check(&'a [String]),
    /// None: the document is a decrypted one whose response signature, over the ciphertext,
    /// was verified before decrypting, and its assertion carries none.
    VerifiedOverCiphertext,
}

/// What a response must match.
#[cfg_attr(not(feature = "saml"), allow(dead_code))]
pub struct Expected<'a> {
    pub idp_entity_id: &'a str,
    pub signatures: Signatures<'a>,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The request it answers; `None` for an IdP-initiated response the connection allows.
    pub request_id: Option<&'a str>,
    pub clock_skew: std::time::Duration,
}

/// A verified assertion, read.
#[derive(Debug, Clone)]
pub struct Verified {
    pub name_id: String,
    /// Every attribute under its `Name` (and its `FriendlyName`): one value as a string,
    /// several as an array.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Milliseconds since the epoch.
    pub not_before: Option<i64>,
    pub not_on_or_after: Option<i64>,
    pub audiences: Vec<String>,
    pub authn_context: Option<String>,
}

/// The IdP's answer at the ACS.
#[derive(Debug, Default)]
pub struct SamlPost {
    /// `SAMLResponse`, base64.
    pub response: String,
    pub relay_state: Option<String>,
    /// The secret the starting browser was given, from its cookie.
    pub browser_secret: Option<String>,
}

fn refused(refusal: SamlRefusal) -> DomainError {
    DomainError::Sso(SsoFailure::Saml(refusal))
}

/// A request id: 128 random bits, an XML NCName (it must not start with a digit).
fn request_id() -> DomainResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(DomainError::internal)?;
    Ok(format!(
        "id-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

impl Sso {
    /// The ACS URL to register at the IdP.
    pub fn saml_acs_url(&self) -> String {
        format!("{}{ACS_PATH}", self.public_url)
    }

    /// The SP entity id of a connection: its metadata URL, as is customary.
    pub fn saml_entity_id(&self, connection_id: i64) -> String {
        format!(
            "{}/user/authenticate/saml/{connection_id}/metadata",
            self.public_url
        )
    }

    /// A new sign-on's request id and the IdP URL that carries its AuthnRequest.
    pub(super) fn saml_redirect(
        &self,
        connection: &SsoConnectionRecord,
        settings: &SamlSettings,
    ) -> DomainResult<(String, String)> {
        let id = request_id()?;
        let url = backend::authn_request_url(&AuthnRequestSpec {
            sso_url: &settings.sso_url,
            sp_entity_id: &self.saml_entity_id(connection.id),
            acs_url: &self.saml_acs_url(),
            request_id: &id,
            name_id_format: settings.name_id_format.as_deref(),
        })
        .map_err(|detail| refused(SamlRefusal::Unsupported(detail)))?;
        Ok((url, id))
    }

    /// Finishes a SAML sign-on at the ACS. Every failure is audited with its reason.
    pub async fn acs(
        &self,
        post: SamlPost,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoOutcome> {
        // Anonymous, and it parses what it is sent: counted against the caller's address.
        self.count_anonymous(&origin, Subject::Traffic, now).await?;
        let inspected = match read_response(&post.response) {
            Ok(read) => read,
            Err(refusal) => return self.refuse_unattributed(refusal, None, &origin, now).await,
        };
        let (xml, inspected) = inspected;
        let Some(request_id) = inspected.in_response_to.clone() else {
            return self
                .idp_initiated(xml, inspected, post.relay_state, &origin, now)
                .await;
        };
        let Some(login) = self
            .store
            .take_sso_login(&request_id, to_millis(now))
            .await?
        else {
            let seen = self
                .store
                .saml_assertion_seen(&inspected.issuer, &inspected.assertion_id)
                .await?;
            let refusal = if seen {
                SamlRefusal::Replayed
            } else {
                SamlRefusal::UnknownRequest
            };
            return self
                .refuse_unattributed(refusal, Some(&inspected), &origin, now)
                .await;
        };
        let outcome = match self.check_login(&login, post.browser_secret.as_deref(), now) {
            Ok(()) => {
                self.finish_saml(&login, xml, &inspected, Some(request_id), &origin, now)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        self.concluded(Some(&login), outcome, &origin, now).await
    }

    /// A response the IdP sent unasked: nothing binds it to a browser (an attacker can have
    /// anyone's browser post theirs: login CSRF), so it is refused unless the one SAML
    /// connection of that IdP which accepts such sign-ins says otherwise; its `RelayState`
    /// may then name where to go, on the connection's allow-list.
    async fn idp_initiated(
        &self,
        xml: String,
        inspected: Inspected,
        relay_state: Option<String>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoOutcome> {
        let accepting: Vec<SsoConnectionRecord> = self
            .store
            .saml_connections_of_issuer(&inspected.issuer)
            .await?
            .into_iter()
            .filter(|c| c.saml.as_ref().is_some_and(|s| s.allow_idp_initiated))
            .collect();
        let [connection] = accepting.as_slice() else {
            return self
                .refuse_unattributed(SamlRefusal::IdpInitiated, Some(&inspected), origin, now)
                .await;
        };
        let created_at = to_millis(now);
        let login = SsoLoginRecord {
            state: String::new(),
            org_id: connection.org_id,
            connection_id: connection.id,
            nonce: String::new(),
            sealed_pkce_verifier: String::new(),
            return_to: relay_state
                .filter(|target| super::allowed_return(target, &connection.redirect_allow_list)),
            client: Some("saml-idp-initiated".into()),
            created_at,
            expires_at: created_at,
            link_user_id: None,
            browser_binding: None,
            hand_off: None,
        };
        let outcome = self
            .finish_saml(&login, xml, &inspected, None, origin, now)
            .await;
        self.concluded(Some(&login), outcome, origin, now).await
    }

    /// Audits a refusal that no sign-on in flight can be tied to.
    async fn refuse_unattributed(
        &self,
        refusal: SamlRefusal,
        inspected: Option<&Inspected>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoOutcome> {
        let error = refused(refusal);
        let outcome = Err(Refusal {
            details: details_of(None, inspected, &error),
            error,
        });
        self.concluded(None, outcome, origin, now).await
    }

    /// Verifies a response to `request_id` (`None`: unasked) and signs its identity in.
    async fn finish_saml(
        &self,
        login: &SsoLoginRecord,
        xml: String,
        inspected: &Inspected,
        request_id: Option<String>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> Result<SsoOutcome, Refusal> {
        let connection = self
            .connection_of(login.org_id, Some(login.connection_id))
            .await?;
        let refusal = |refusal: SamlRefusal| {
            let error = refused(refusal);
            Refusal {
                details: details_of(Some(connection.id), Some(inspected), &error),
                error,
            }
        };
        let Some(settings) = connection.saml.clone() else {
            return Err(refusal(SamlRefusal::UnknownRequest));
        };
        let key = match (inspected.encrypted, &settings.sealed_sp_key) {
            (true, Some(sealed)) => Some(
                self.secrets
                    .open(sealed, &sp_key_binding(connection.org_id))?
                    .plaintext,
            ),
            (true, None) => return Err(refusal(SamlRefusal::Invalid("no SP key".into()))),
            (false, _) => None,
        };
        let sp_entity_id = self.saml_entity_id(connection.id);
        let check = Check {
            xml,
            seen: inspected.clone(),
            key,
            settings: settings.clone(),
            idp_entity_id: connection.issuer.clone(),
            sp_entity_id: sp_entity_id.clone(),
            acs_url: self.saml_acs_url(),
            request_id,
        };
        // Decrypting and checking signatures cost a millisecond or two of CPU each: off the
        // async workers.
        let checked = tokio::task::spawn_blocking(move || check.run())
            .await
            .map_err(DomainError::internal)?;
        let (verified, inspected) = match checked {
            Ok(checked) => checked,
            Err(rejected) => {
                let error = refused(rejected.refusal);
                return Err(Refusal {
                    details: details_of(Some(connection.id), Some(&rejected.seen), &error),
                    error,
                });
            }
        };
        let inspected = &inspected;
        // samael checks the audience only when there is one, and times on the wall clock.
        if !verified.audiences.iter().any(|a| a == &sp_entity_id) {
            return Err(refusal(SamlRefusal::WrongAudience));
        }
        let at = to_millis(now);
        let skew_ms = i64::from(settings.clock_skew_seconds) * 1000;
        let Some(not_on_or_after) = verified.not_on_or_after else {
            return Err(refusal(SamlRefusal::Expired));
        };
        if verified.not_before.is_some_and(|t| at + skew_ms < t) || at >= not_on_or_after + skew_ms
        {
            return Err(refusal(SamlRefusal::Expired));
        }
        let fresh = self
            .store
            .consume_saml_assertion(
                &connection.issuer,
                &inspected.assertion_id,
                not_on_or_after + skew_ms,
            )
            .await?;
        if !fresh {
            return Err(refusal(SamlRefusal::Replayed));
        }
        let assertion = assertion_of(verified, &settings);
        self.sign_in(&connection, login, assertion, origin, now)
            .await
    }
}

/// The binding of a connection's sealed SP key.
pub(super) fn sp_key_binding(org_id: i64) -> String {
    format!("saml-sp:{org_id}")
}

/// Decodes and inspects a posted response.
/// (The HTTP layer's 64 KiB body limit bounds it: real ones are a few kilobytes.)
fn read_response(encoded: &str) -> Result<(String, Inspected), SamlRefusal> {
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, compact)
        .map_err(|_| SamlRefusal::Malformed("SAMLResponse is not base64".into()))?;
    let xml = String::from_utf8(bytes)
        .map_err(|_| SamlRefusal::Malformed("SAMLResponse is not UTF-8 XML".into()))?;
    let inspected = backend::inspect(&xml)?;
    Ok((xml, inspected))
}

/// What the audit trail keeps of a refused response.
fn details_of(
    connection_id: Option<i64>,
    inspected: Option<&Inspected>,
    error: &DomainError,
) -> serde_json::Value {
    let detail = match error {
        DomainError::Sso(SsoFailure::Saml(SamlRefusal::Invalid(detail))) => Some(detail.clone()),
        _ => None,
    };
    serde_json::json!({
        "protocol": "saml",
        "connectionId": connection_id,
        "issuer": inspected.map(|i| i.issuer.clone()),
        "assertionId": inspected.map(|i| i.assertion_id.clone()),
        "inResponseTo": inspected.and_then(|i| i.in_response_to.clone()),
        "detail": detail,
    })
}

/// The verified assertion in the terms the claim mapping reads: its attributes, and the
/// NameID as `nameid`.
fn assertion_of(verified: Verified, settings: &SamlSettings) -> Assertion {
    let mut claims = verified.attributes;
    claims
        .entry("nameid".to_owned())
        .or_insert_with(|| serde_json::Value::String(verified.name_id.clone()));
    let text = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| claims.get(n))
            .and_then(|v| v.as_str())
            .map(|v| v.chars().take(100).collect::<String>())
    };
    let given_name = text(&settings.first_name_attribute);
    let family_name = text(&settings.last_name_attribute);
    Assertion {
        subject: verified.name_id,
        multi_factor: verified
            .authn_context
            .as_deref()
            .is_some_and(|c| MULTI_FACTOR_CONTEXTS.contains(&c)),
        claims,
        given_name,
        family_name,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_ncnames_of_128_bits() {
        let id = request_id().unwrap();
        assert!(id.starts_with("id-") && id.len() == 35, "{id}");
        assert_ne!(id, request_id().unwrap());
    }
}
