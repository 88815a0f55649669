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
use url::Url;

use super::claims::Preset;
use super::token::Assertion;
use super::{Refusal, Sso, SsoOutcome};
use crate::domain::clock::to_millis;
use crate::domain::error::{DomainError, DomainResult, SamlRefusal, SsoFailure};
use crate::domain::origin::RequestOrigin;
use crate::store::records::SamlSettings;
use crate::store::{SsoConnectionRecord, SsoLoginRecord};

#[cfg(feature = "saml")]
mod decrypt;
#[cfg(feature = "saml")]
mod document;
#[cfg(feature = "saml")]
mod engine;
#[cfg(feature = "saml")]
use engine as backend;
#[cfg(not(feature = "saml"))]
mod unsupported;
#[cfg(not(feature = "saml"))]
use unsupported as backend;

/// Where the IdP posts its responses.
pub const ACS_PATH: &str = "/user/authenticate/saml/acs";

/// A base64 response larger than this is refused unread (real ones are a few kilobytes).
const MAX_RESPONSE: usize = 256 * 1024;
const DEFAULT_SKEW_SECONDS: u32 = 120;
const MAX_SKEW_SECONDS: u32 = 600;
const MAX_CERTIFICATES: usize = 5;
const MAX_METADATA: usize = 1024 * 1024;

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
    pub request_id: &'a str,
    pub name_id_format: Option<&'a str>,
    pub relay_state: &'a str,
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
#[derive(Debug, Clone, Default)]
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

/// A SAML connection as an admin sends it: the IdP by metadata (pasted, or a URL coreauth
/// reads once at saving) or field by field; fields given override the metadata's.
#[derive(Debug, Default, Clone)]
pub struct SamlRequest {
    pub metadata_xml: Option<String>,
    pub metadata_url: Option<String>,
    pub entity_id: Option<String>,
    pub sso_url: Option<String>,
    pub certificates: Option<Vec<String>>,
    pub name_id_format: Option<String>,
    pub want_assertions_signed: Option<bool>,
    pub want_response_signed: Option<bool>,
    pub clock_skew_seconds: Option<u32>,
    pub allow_idp_initiated: bool,
    pub first_name_attribute: Option<String>,
    pub last_name_attribute: Option<String>,
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

/// Escapes text for an XML attribute or element.
pub fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
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

/// The first and last name attributes a preset reads.
fn name_attributes(preset: Preset) -> (&'static str, &'static str) {
    match preset {
        Preset::Entra | Preset::Adfs => (
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        ),
        Preset::Generic => ("firstName", "lastName"),
    }
}

fn https_or_http(field: &str, text: &str) -> DomainResult<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| DomainError::invalid(format!("{field} must be an http(s) URL")))
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

    /// The IdP entity id and settings of a SAML connection being saved.
    pub(super) async fn saml_settings(
        &self,
        request: SamlRequest,
        preset: Preset,
        org_id: i64,
        existing: Option<&SamlSettings>,
    ) -> DomainResult<(String, SamlSettings)> {
        if !backend::BUILT {
            return Err(DomainError::invalid(
                "this build of coreauth has no SAML: build it with `--features saml` (see the README)",
            ));
        }
        let metadata = match (&request.metadata_xml, &request.metadata_url) {
            (Some(_), Some(_)) => {
                return Err(DomainError::invalid(
                    "give the IdP metadata as metadataXml or metadataUrl, not both",
                ));
            }
            (Some(xml), None) => Some(xml.clone()),
            (None, Some(url)) => Some(self.fetch_metadata(url).await?),
            (None, None) => None,
        };
        let described = match metadata {
            Some(xml) => {
                if xml.len() > MAX_METADATA {
                    return Err(DomainError::invalid("the IdP metadata is over 1 MiB"));
                }
                Some(backend::read_idp_metadata(&xml).map_err(DomainError::Invalid)?)
            }
            None => None,
        };
        let entity_id = request
            .entity_id
            .or_else(|| described.as_ref().map(|d| d.entity_id.clone()))
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty() && e.len() <= 1024 && !e.chars().any(char::is_control))
            .ok_or_else(|| {
                DomainError::invalid("the IdP's entity id: give entityId or its metadata")
            })?;
        let sso_url = request
            .sso_url
            .or_else(|| described.as_ref().map(|d| d.sso_url.clone()))
            .ok_or_else(|| DomainError::invalid("the IdP's ssoUrl: give it or its metadata"))?;
        let sso_url = https_or_http("ssoUrl", &sso_url)?;
        let certificates: Vec<String> = request
            .certificates
            .map(|list| list.iter().map(|c| pem_body(c)).collect())
            .or_else(|| described.map(|d| d.certificates))
            .unwrap_or_default();
        if certificates.is_empty() || certificates.len() > MAX_CERTIFICATES {
            return Err(DomainError::invalid(format!(
                "give 1-{MAX_CERTIFICATES} IdP signing certificates (certificates, or in its metadata): without one nothing could be verified"
            )));
        }
        if let Some(bad) = certificates
            .iter()
            .position(|c| !backend::certificate_is_valid(c))
        {
            return Err(DomainError::invalid(format!(
                "certificates[{bad}] is not a base64 (or PEM) X.509 certificate"
            )));
        }
        let want_assertions_signed = request.want_assertions_signed.unwrap_or(true);
        let want_response_signed = request.want_response_signed.unwrap_or(false);
        let clock_skew_seconds = request.clock_skew_seconds.unwrap_or(DEFAULT_SKEW_SECONDS);
        if clock_skew_seconds > MAX_SKEW_SECONDS {
            return Err(DomainError::invalid(format!(
                "clockSkewSeconds must be at most {MAX_SKEW_SECONDS}"
            )));
        }
        let (first, last) = name_attributes(preset);
        let attribute = |field: &str, given: Option<String>, default: &str| {
            let name = given.unwrap_or_else(|| default.to_owned());
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                Err(DomainError::invalid(format!(
                    "{field} must be 1-200 characters"
                )))
            } else {
                Ok(Some(name))
            }
        };
        // The key IdPs encrypt assertions to: made once, kept when the connection changes.
        let (sp_certificate, sealed_sp_key) = match existing {
            Some(SamlSettings {
                sp_certificate: Some(certificate),
                sealed_sp_key: Some(sealed),
                ..
            }) => (certificate.clone(), sealed.clone()),
            _ => {
                let (certificate, key) = tokio::task::spawn_blocking(backend::new_sp_key)
                    .await
                    .map_err(DomainError::internal)?
                    .map_err(DomainError::internal)?;
                (
                    certificate,
                    self.secrets.seal(&key, &sp_key_binding(org_id))?,
                )
            }
        };
        let settings = SamlSettings {
            sp_certificate: Some(sp_certificate),
            sealed_sp_key: Some(sealed_sp_key),
            sso_url: sso_url.to_string(),
            certificates,
            name_id_format: request.name_id_format.filter(|f| !f.is_empty()),
            want_assertions_signed,
            want_response_signed,
            clock_skew_seconds,
            allow_idp_initiated: request.allow_idp_initiated,
            first_name_attribute: attribute(
                "firstNameAttribute",
                request.first_name_attribute,
                first,
            )?,
            last_name_attribute: attribute("lastNameAttribute", request.last_name_attribute, last)?,
            metadata_url: request.metadata_url,
        };
        Ok((entity_id, settings))
    }

    async fn fetch_metadata(&self, url: &str) -> DomainResult<String> {
        let url = https_or_http("metadataUrl", url)?;
        self.providers
            .policy()
            .check_issuer(&url)
            .await
            .map_err(DomainError::Invalid)?;
        self.providers
            .fetch_document(&url, MAX_METADATA)
            .await
            .map_err(|detail| {
                DomainError::invalid(format!("the IdP metadata could not be read: {detail}"))
            })
    }

    /// The SP metadata of one of the SAML connections, for its IdP's admin.
    pub async fn saml_metadata(&self, connection_id: i64) -> DomainResult<String> {
        let connection = self
            .store
            .sso_connection(connection_id)
            .await?
            .filter(|c| c.saml.is_some())
            .ok_or(DomainError::NotFound("SAML connection"))?;
        let settings = connection
            .saml
            .as_ref()
            .ok_or(DomainError::NotFound("SAML connection"))?;
        let name_id_format = settings
            .name_id_format
            .as_deref()
            .map_or(String::new(), |f| {
                format!("\n    <md:NameIDFormat>{}</md:NameIDFormat>", escape_xml(f))
            });
        let encryption = settings
            .sp_certificate
            .as_deref()
            .map_or(String::new(), encryption_key_descriptor);
        Ok(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="{want}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{encryption}{name_id_format}
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
            entity = escape_xml(&self.saml_entity_id(connection.id)),
            want = settings.want_assertions_signed,
            acs = escape_xml(&self.saml_acs_url()),
        ))
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
            relay_state: &id,
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
        let inspected = match read_response(&post.response) {
            Ok(read) => read,
            Err(refusal) => return self.refuse_unattributed(refusal, None, &origin, now).await,
        };
        let (xml, inspected) = inspected;
        let Some(request_id) = inspected.in_response_to.clone() else {
            // Nothing binds an unasked response to a browser (login CSRF): refused until a
            // connection may allow it, which this version does not offer yet.
            return self
                .refuse_unattributed(SamlRefusal::IdpInitiated, Some(&inspected), &origin, now)
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
        let outcome = self
            .finish_saml(&login, xml, &inspected, post.browser_secret, &origin, now)
            .await;
        self.concluded(Some(&login), outcome, &origin, now).await
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

    async fn finish_saml(
        &self,
        login: &SsoLoginRecord,
        xml: String,
        inspected: &Inspected,
        browser_secret: Option<String>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> Result<SsoOutcome, Refusal> {
        self.check_login(login, browser_secret.as_deref(), now)?;
        let connection = self
            .store
            .sso_connection(login.connection_id)
            .await?
            .filter(|c| c.org_id == login.org_id)
            .ok_or(DomainError::NotFound("SSO connection"))?;
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
            request_id: login.state.clone(),
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

/// The SP metadata's key for encryption, with the algorithms `decrypt` reads.
fn encryption_key_descriptor(certificate: &str) -> String {
    let methods: String = [
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    ]
    .iter()
    .map(|m| format!("\n      <md:EncryptionMethod Algorithm=\"{m}\"/>"))
    .collect();
    format!(
        "\n    <md:KeyDescriptor use=\"encryption\">\n      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}\n    </md:KeyDescriptor>",
        escape_xml(certificate)
    )
}

/// The binding of a connection's sealed SP key.
fn sp_key_binding(org_id: i64) -> String {
    format!("saml-sp:{org_id}")
}

/// A refusal, and what was seen of the response by then (for the audit trail).
struct Rejected {
    refusal: SamlRefusal,
    seen: Inspected,
}

fn rejected(refusal: SamlRefusal, seen: &Inspected) -> Box<Rejected> {
    Box::new(Rejected {
        refusal,
        seen: seen.clone(),
    })
}

/// A response to check against its connection, in one blocking call.
struct Check {
    xml: String,
    seen: Inspected,
    /// The SP key, for an encrypted assertion.
    key: Option<zeroize::Zeroizing<Vec<u8>>>,
    settings: SamlSettings,
    idp_entity_id: String,
    sp_entity_id: String,
    acs_url: String,
    request_id: String,
}

impl Check {
    /// Decrypts (when encrypted), applies the connection's signature requirements and has
    /// `engine` verify signatures and conditions; answers the assertion, and what was seen of
    /// the response in the clear.
    fn run(self) -> Result<(Verified, Inspected), Box<Rejected>> {
        let (xml, seen) = match &self.key {
            Some(key) => self.decrypted(key)?,
            None => (self.xml.clone(), self.seen.clone()),
        };
        // A signed response counts for an encrypted assertion once its signature over the
        // ciphertext held (`decrypted`).
        let unsigned = (!seen.assertion_signed
            && (self.settings.want_assertions_signed || !seen.response_signed))
            || (self.settings.want_response_signed && !seen.response_signed);
        if unsigned {
            return Err(rejected(SamlRefusal::Unsigned, &seen));
        }
        if seen.issuer != self.idp_entity_id {
            return Err(rejected(SamlRefusal::WrongIssuer, &seen));
        }
        let signatures = if seen.encrypted && !seen.assertion_signed {
            Signatures::VerifiedOverCiphertext
        } else {
            Signatures::Check(&self.settings.certificates)
        };
        let verified = backend::verify(
            &xml,
            &Expected {
                idp_entity_id: &self.idp_entity_id,
                signatures,
                sp_entity_id: &self.sp_entity_id,
                acs_url: &self.acs_url,
                request_id: Some(&self.request_id),
                clock_skew: std::time::Duration::from_secs(u64::from(
                    self.settings.clock_skew_seconds,
                )),
            },
        );
        match verified {
            Ok(verified) => Ok((verified, seen)),
            Err(refusal) => Err(rejected(self.named(refusal, &seen), &seen)),
        }
    }

    /// A signature failure named for what the signatures claim: a stranger's certificate.
    fn named(&self, refusal: SamlRefusal, seen: &Inspected) -> SamlRefusal {
        match refusal {
            SamlRefusal::BadSignature if signed_by_stranger(seen, &self.settings) => {
                SamlRefusal::UntrustedCertificate
            }
            other => other,
        }
    }

    /// The response decrypted and inspected again, its own signature (over the ciphertext)
    /// verified first.
    fn decrypted(&self, key: &[u8]) -> Result<(String, Inspected), Box<Rejected>> {
        let fail = |refusal: SamlRefusal| rejected(refusal, &self.seen);
        if self.seen.response_signed {
            backend::verify_signatures(&self.xml, &self.settings.certificates)
                .map_err(|e| fail(self.named(e, &self.seen)))?;
        }
        let plain = backend::decrypt(&self.xml, key).map_err(fail)?;
        let mut again = backend::inspect(&plain).map_err(fail)?;
        if again.encrypted {
            return Err(fail(SamlRefusal::Wrapping));
        }
        again.encrypted = true;
        again.response_signed = self.seen.response_signed;
        again
            .named_certificates
            .extend(self.seen.named_certificates.iter().cloned());
        Ok((plain, again))
    }
}

/// Decodes and inspects a posted response.
fn read_response(encoded: &str) -> Result<(String, Inspected), SamlRefusal> {
    if encoded.len() > MAX_RESPONSE {
        return Err(SamlRefusal::Malformed(
            "the response is over 256 KiB".into(),
        ));
    }
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, compact)
        .map_err(|_| SamlRefusal::Malformed("SAMLResponse is not base64".into()))?;
    let xml = String::from_utf8(bytes)
        .map_err(|_| SamlRefusal::Malformed("SAMLResponse is not UTF-8 XML".into()))?;
    let inspected = backend::inspect(&xml)?;
    Ok((xml, inspected))
}

/// Whether the signatures name only certificates the connection does not hold (the message's
/// own `KeyInfo` is never trusted; this only names the reason of a failure).
fn signed_by_stranger(inspected: &Inspected, settings: &SamlSettings) -> bool {
    !inspected.named_certificates.is_empty()
        && inspected
            .named_certificates
            .iter()
            .all(|c| !settings.certificates.contains(c))
}

/// A certificate as pasted: PEM or bare base64, without its armour and whitespace.
fn pem_body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
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

    #[test]
    fn certificates_are_taken_as_pem_or_base64() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_body(pem), "MIIBAAAA");
        assert_eq!(pem_body(" MIIB AAAA "), "MIIBAAAA");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(escape_xml(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }

    #[test]
    fn a_stranger_is_one_only_the_message_names() {
        let settings = SamlSettings {
            sp_certificate: None,
            sealed_sp_key: None,
            sso_url: String::new(),
            certificates: vec!["known".into()],
            name_id_format: None,
            want_assertions_signed: true,
            want_response_signed: false,
            clock_skew_seconds: 0,
            allow_idp_initiated: false,
            first_name_attribute: None,
            last_name_attribute: None,
            metadata_url: None,
        };
        let mut inspected = Inspected {
            in_response_to: None,
            issuer: String::new(),
            assertion_id: String::new(),
            encrypted: false,
            response_signed: false,
            assertion_signed: true,
            named_certificates: vec!["other".into()],
        };
        assert!(signed_by_stranger(&inspected, &settings));
        inspected.named_certificates.push("known".into());
        assert!(!signed_by_stranger(&inspected, &settings));
        inspected.named_certificates.clear();
        assert!(!signed_by_stranger(&inspected, &settings));
    }
}
