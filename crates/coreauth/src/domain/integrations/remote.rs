//! Remote integrations: the portal mints its own tokens (Qrvey's composer tokens come from a
//! server-side call with the customer's API key), so coreauth keeps the endpoint and the sealed
//! key, and on a user's request POSTs that user's claims there and returns the token it answers.

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::super::error::{DomainError, DomainResult};
use crate::oidc_client::NetworkPolicy;
use crate::store::records::RemoteEndpoint;

pub const DEFAULT_HEADER: &str = "x-api-key";
pub const DEFAULT_TIMEOUT_SECS: u32 = 5;
pub const MAX_TIMEOUT_SECS: u32 = 30;
pub const DEFAULT_TOKEN_FIELD: &str = "token";
pub const DEFAULT_EXPIRES_AT_FIELD: &str = "expiresAt";
const MAX_URL_LENGTH: usize = 2000;
const MAX_API_KEY_BYTES: usize = 4096;
/// Headers the request itself sets, or that would change where or how it goes.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "expect",
];

/// What an admin sends to configure a remote integration.
#[derive(Debug)]
pub struct RemoteRequest {
    pub url: String,
    pub api_key: SecretString,
    pub api_key_header: Option<String>,
    pub timeout_secs: Option<u32>,
    pub token_field: Option<String>,
    pub expires_at_field: Option<String>,
}

/// The endpoint an admin asked for, checked: `https` (plain `http` only to a loopback address
/// the operator allowed), on a network coreauth may reach, with a usable header name and API
/// key. Returns it and the API key to seal.
pub async fn parse(
    request: RemoteRequest,
    policy: &NetworkPolicy,
) -> DomainResult<(RemoteEndpoint, SecretString)> {
    let url = check_url(request.url.trim(), policy).await?;
    let api_key_header = request
        .api_key_header
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_else(|| DEFAULT_HEADER.to_owned());
    if HeaderName::from_bytes(api_key_header.as_bytes()).is_err()
        || RESERVED_HEADERS.contains(&api_key_header.as_str())
    {
        return Err(DomainError::invalid(format!(
            "apiKeyHeader '{api_key_header}' is not a header coreauth can send a key in"
        )));
    }
    let key = request.api_key.expose_secret();
    if key.is_empty() || key.len() > MAX_API_KEY_BYTES || HeaderValue::from_str(key).is_err() {
        return Err(DomainError::invalid(format!(
            "apiKey must be 1-{MAX_API_KEY_BYTES} visible characters"
        )));
    }
    let timeout_secs = request.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > MAX_TIMEOUT_SECS {
        return Err(DomainError::invalid(format!(
            "timeoutSeconds must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    let field = |given: Option<String>, default: &str, what: &str| {
        let path = given.unwrap_or_else(|| default.to_owned());
        let valid = path.len() <= 200
            && path.split('.').count() <= 8
            && path.split('.').all(|segment| !segment.is_empty());
        if valid {
            Ok(path)
        } else {
            Err(DomainError::invalid(format!(
                "{what} must be a field name or a dotted path to one (data.token)"
            )))
        }
    };
    let endpoint = RemoteEndpoint {
        url: url.to_string(),
        api_key_header,
        timeout_secs,
        token_field: field(request.token_field, DEFAULT_TOKEN_FIELD, "tokenField")?,
        expires_at_field: field(
            request.expires_at_field,
            DEFAULT_EXPIRES_AT_FIELD,
            "expiresAtField",
        )?,
    };
    Ok((endpoint, request.api_key))
}

async fn check_url(text: &str, policy: &NetworkPolicy) -> DomainResult<Url> {
    let url = Url::parse(text)
        .ok()
        .filter(|u| text.len() <= MAX_URL_LENGTH && u.host_str().is_some())
        .ok_or_else(|| DomainError::invalid("remote.url must be an absolute https URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allows_plain_http(&url) => {}
        _ => {
            return Err(DomainError::invalid(
                "remote.url must be https: the API key must not cross the network in clear",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(DomainError::invalid(
            "remote.url may not carry credentials or a fragment: give the key as apiKey",
        ));
    }
    policy
        .check_destination(&url, "remote.url")
        .await
        .map_err(DomainError::invalid)?;
    Ok(url)
}

/// The endpoint as the audit trail shows it: without its query, which some portals would
/// have an admin put a key in.
pub fn audited(endpoint: &RemoteEndpoint) -> Value {
    let mut url = Url::parse(&endpoint.url).ok();
    if let Some(url) = url.as_mut() {
        url.set_query(None);
    }
    json!({
        "url": url.map(String::from),
        "apiKeyHeader": endpoint.api_key_header,
        "timeoutSeconds": endpoint.timeout_secs,
    })
}
