//! A SAML connection's settings as an admin gives them: the IdP from its metadata (pasted, or
//! read once from a URL) or field by field, checked, with the SP key it encrypts to.

use url::Url;

use super::{backend, sp_key_binding};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sso::Sso;
use crate::domain::sso::claims::Preset;
use crate::store::records::SamlSettings;

const DEFAULT_SKEW_SECONDS: u32 = 120;
const MAX_SKEW_SECONDS: u32 = 600;
const MAX_CERTIFICATES: usize = 5;
const MAX_METADATA: usize = 1024 * 1024;

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
    /// The IdP entity id and settings of a SAML connection being saved.
    pub(in crate::domain::sso) async fn saml_settings(
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
}

/// A certificate as pasted: PEM or bare base64, without its armour and whitespace.
fn pem_body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_taken_as_pem_or_base64() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_body(pem), "MIIBAAAA");
        assert_eq!(pem_body(" MIIB AAAA "), "MIIBAAAA");
    }
}
