//! The parts of SAML that need xmlsec, through samael (built with the `saml` feature): the
//! AuthnRequest, and verifying a response's signatures and conditions. What samael leaves
//! open is closed around it: `document` refuses wrapping and DTDs first, the certificates are
//! only the connection's (samael skips signature checks when it is given none), the signature
//! algorithms are the SHA-2 ones, and `mod.rs` checks times on coreauth's clock, requires an
//! Audience and keeps the replay cache.

use roxmltree::{Document, ParsingOptions};
use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoProvider, ReduceMode};
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{Error as SamlError, ServiceProviderBuilder};
use serde_json::{Map, Value};

pub use super::decrypt::decrypt;
pub use super::document::inspect;
use super::document::{DSIG, child, named, without_whitespace};
use super::metadata::escape_xml;
use super::{AuthnRequestSpec, Expected, IdpDescriptor, Signatures, Verified};
use crate::domain::error::SamlRefusal;

const METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

/// Reads an IdP's `EntityDescriptor` (or the first IdP of an `EntitiesDescriptor`): its entity
/// id, redirect endpoint and the certificates of its keys for signing (those with no `use`
/// included, as the metadata schema says).
pub fn read_idp_metadata(xml: &str) -> Result<IdpDescriptor, String> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 50_000,
    };
    let document = Document::parse_with_options(xml, options)
        .map_err(|e| format!("the IdP metadata is not well-formed XML without a DTD: {e}"))?;
    let entity = document
        .descendants()
        .filter(|n| named(*n, METADATA, "EntityDescriptor"))
        .find(|n| child(*n, METADATA, "IDPSSODescriptor").is_some())
        .ok_or("the metadata describes no identity provider (IDPSSODescriptor)")?;
    let entity_id = entity
        .attribute("entityID")
        .ok_or("the metadata's EntityDescriptor has no entityID")?
        .to_owned();
    let idp = child(entity, METADATA, "IDPSSODescriptor")
        .ok_or("the metadata describes no identity provider (IDPSSODescriptor)")?;
    let sso_url = idp
        .children()
        .filter(|c| named(*c, METADATA, "SingleSignOnService"))
        .find(|c| c.attribute("Binding") == Some(REDIRECT_BINDING))
        .and_then(|c| c.attribute("Location"))
        .ok_or("the identity provider offers no HTTP-Redirect SingleSignOnService")?
        .to_owned();
    let certificates = idp
        .children()
        .filter(|c| named(*c, METADATA, "KeyDescriptor"))
        .filter(|k| k.attribute("use").is_none_or(|u| u == "signing"))
        .flat_map(|k| {
            k.descendants()
                .filter(|n| named(*n, DSIG, "X509Certificate"))
        })
        .filter_map(|n| n.text())
        .map(without_whitespace)
        .collect();
    Ok(IdpDescriptor {
        entity_id,
        sso_url,
        certificates,
    })
}

/// Whether `text` is a base64 X.509 certificate.
pub fn certificate_is_valid(text: &str) -> bool {
    samael::crypto::decode_x509_cert(text)
        .ok()
        .is_some_and(|der| openssl::x509::X509::from_der(der.der_data()).is_ok())
}

/// The URL that sends the browser to the IdP with an AuthnRequest (HTTP-Redirect binding).
pub fn authn_request_url(spec: &AuthnRequestSpec<'_>) -> Result<String, String> {
    let sp = ServiceProviderBuilder::default()
        .entity_id(spec.sp_entity_id.to_owned())
        .acs_url(spec.acs_url.to_owned())
        .authn_name_id_format(spec.name_id_format.map(str::to_owned))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = sp
        .make_authentication_request(spec.sso_url)
        .map_err(|e| e.to_string())?;
    // samael's own ids hold 32 random bits; the request id is the single-use key here.
    request.id = spec.request_id.to_owned();
    request
        // RelayState is the request id too: the ACS finds the browser's cookie by it.
        .redirect(spec.request_id)
        .map_err(|e| e.to_string())?
        .map(|url| url.to_string())
        .ok_or_else(|| "the AuthnRequest has no destination".to_owned())
}

/// An IdP descriptor holding exactly these certificates, as samael wants it.
fn idp_entity(entity_id: &str, certificates: &[String]) -> Result<EntityDescriptor, SamlRefusal> {
    let keys: String = certificates
        .iter()
        .map(|c| {
            format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
            )
        })
        .collect();
    let xml = format!(
        r#"<md:EntityDescriptor xmlns:md="{METADATA}" xmlns:ds="{DSIG}" entityID="{}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}<md:SingleSignOnService Binding="{REDIRECT_BINDING}" Location="https://idp.invalid/"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
        escape_xml(entity_id)
    );
    xml.parse()
        .map_err(|e| SamlRefusal::Invalid(format!("the connection's IdP settings: {e}")))
}

/// The signature algorithms accepted: SHA-2 only.
const ALGORITHMS: [AllowedSignatureAlgorithm; 4] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
];

fn ders(certificates: &[String]) -> Result<Vec<samael::crypto::CertificateDer>, SamlRefusal> {
    certificates
        .iter()
        .map(|c| samael::crypto::decode_x509_cert(c))
        .collect::<Result<_, _>>()
        .map_err(|_| SamlRefusal::Invalid("a stored certificate is not base64".into()))
}

/// Verifies every signature of `xml` against `certificates`, and nothing else (an encrypted
/// response's signature, over its ciphertext).
pub fn verify_signatures(xml: &str, certificates: &[String]) -> Result<(), SamlRefusal> {
    if certificates.is_empty() {
        return Err(SamlRefusal::Invalid(
            "the connection has no certificate".into(),
        ));
    }
    Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &ders(certificates)?,
        ReduceMode::default(),
        Some(&ALGORITHMS),
    )
    .map(|_| ())
    .map_err(|_| SamlRefusal::BadSignature)
}

/// A new RSA key for IdPs to encrypt assertions to, and its self-signed certificate: the
/// certificate as base64 DER, the key as PKCS#8 PEM.
pub fn new_sp_key() -> Result<(String, Vec<u8>), String> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let made = || -> Result<(String, Vec<u8>), openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", "coreauth SAML service provider")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
        builder.set_not_before(&from)?;
        builder.set_not_after(&until)?;
        builder.sign(&key, MessageDigest::sha256())?;
        let certificate = builder.build().to_der()?;
        Ok((
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, certificate),
            key.private_key_to_pem_pkcs8()?,
        ))
    };
    made().map_err(|e| e.to_string())
}

/// Verifies `xml` (already through `document::inspect`) against the connection's certificates
/// and the request, and reads the assertion.
pub fn verify(xml: &str, expected: &Expected<'_>) -> Result<Verified, SamlRefusal> {
    // samael checks no signature when it knows no certificate: only for a decrypted assertion
    // whose response signature was verified over the ciphertext.
    let certificates: &[String] = match expected.signatures {
        Signatures::Check([]) => {
            return Err(SamlRefusal::Invalid(
                "the connection has no certificate".into(),
            ));
        }
        Signatures::Check(certificates) => certificates,
        Signatures::VerifiedOverCiphertext => &[],
    };
    let skew = chrono::Duration::from_std(expected.clock_skew)
        .map_err(|e| SamlRefusal::Invalid(e.to_string()))?;
    let sp = ServiceProviderBuilder::default()
        .entity_id(expected.sp_entity_id.to_owned())
        .acs_url(expected.acs_url.to_owned())
        .idp_metadata(idp_entity(expected.idp_entity_id, certificates)?)
        .max_clock_skew(skew)
        .allow_idp_initiated(expected.request_id.is_none())
        .allowed_signature_algorithms(Some(ALGORITHMS.to_vec()))
        .build()
        .map_err(|e| SamlRefusal::Invalid(e.to_string()))?;
    let request_ids: Vec<&str> = expected.request_id.into_iter().collect();
    let assertion = sp
        .parse_xml_response(xml, Some(&request_ids))
        .map_err(refusal_of)?;
    Ok(read(&assertion))
}

fn refusal_of(error: SamlError) -> SamlRefusal {
    match error {
        SamlError::FailedToValidateSignature => SamlRefusal::BadSignature,
        SamlError::AssertionConditionAudienceRestrictionFailed { .. } => SamlRefusal::WrongAudience,
        SamlError::AssertionExpired { .. }
        | SamlError::ResponseExpired { .. }
        | SamlError::AssertionConditionExpired { .. }
        | SamlError::AssertionConditionExpiredBefore { .. }
        | SamlError::AssertionSubjectConfirmationExpired { .. }
        | SamlError::AssertionSubjectConfirmationExpiredBefore { .. } => SamlRefusal::Expired,
        SamlError::DestinationValidationError { .. }
        | SamlError::AssertionRecipientMismatch { .. } => SamlRefusal::WrongDestination,
        SamlError::ResponseInResponseToInvalid { .. }
        | SamlError::AssertionInResponseToInvalid { .. } => SamlRefusal::UnknownRequest,
        SamlError::AssertionIssuerMismatch { .. } | SamlError::ResponseIssuerMismatch { .. } => {
            SamlRefusal::WrongIssuer
        }
        SamlError::ResponseBadStatusCode { code } => SamlRefusal::IdpStatus(code),
        other => SamlRefusal::Invalid(other.to_string()),
    }
}

fn millis(time: chrono::DateTime<chrono::Utc>) -> i64 {
    time.timestamp_millis()
}

fn read(assertion: &Assertion) -> Verified {
    let subject = assertion.subject.as_ref();
    let name_id = subject
        .and_then(|s| s.name_id.as_ref())
        .map(|n| n.value.trim().to_owned())
        .unwrap_or_default();
    let mut attributes = Map::new();
    for attribute in assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
    {
        let values: Vec<Value> = attribute
            .values
            .iter()
            .filter_map(|v| v.value.as_deref())
            .map(|v| Value::String(v.trim().to_owned()))
            .collect();
        let value = match values.len() {
            1 => values.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(values),
        };
        for name in [&attribute.name, &attribute.friendly_name]
            .into_iter()
            .flatten()
        {
            attributes
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let conditions = assertion.conditions.as_ref();
    let confirmation_end = subject
        .and_then(|s| s.subject_confirmations.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.subject_confirmation_data.as_ref()?.not_on_or_after)
        .map(millis)
        .min();
    let conditions_end = conditions.and_then(|c| c.not_on_or_after).map(millis);
    let not_on_or_after = match (conditions_end, confirmation_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Verified {
        name_id,
        attributes,
        not_before: conditions.and_then(|c| c.not_before).map(millis),
        not_on_or_after,
        audiences: conditions
            .and_then(|c| c.audience_restrictions.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|r| r.audience.iter().cloned())
            .collect(),
        authn_context: assertion
            .authn_statements
            .iter()
            .flatten()
            .filter_map(|s| s.authn_context.as_ref()?.value.as_ref()?.value.clone())
            .next(),
    }
}

/// Whether this build speaks SAML.
pub const BUILT: bool = true;
