//! Asking a remote integration's endpoint for a token (SPEC §10): some portals (Qrvey's
//! composer) mint their own tokens from a server-side call with the customer's API key, so
//! coreauth POSTs the user's claims there and hands back what it answers.
//!
//! The endpoint is an org admin's choice, called on a user's request: it is fenced by the same
//! network policy as the identity providers (`COREAUTH_SSO_ALLOWED_NETWORKS`), resolved by the
//! same policed resolver, follows no redirect, and its answer is capped. A failure is one of a
//! few reasons that say what went wrong without repeating the answer or the API key.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use crate::oidc_client::{NetworkPolicy, policed_client};
use crate::store::records::RemoteEndpoint;

/// The largest answer read: a token and a few fields, with room to spare.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the endpoint answered.
pub struct RemoteToken {
    pub token: String,
    /// Unix epoch milliseconds, when the answer says.
    pub expires_at: Option<i64>,
}

/// Why no token came back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteFailure {
    #[error("the endpoint is on a network coreauth may not reach")]
    Refused,
    #[error("the endpoint did not answer within {0} s")]
    Timeout(u32),
    #[error("the endpoint could not be reached")]
    Connect,
    #[error("the request to the endpoint failed")]
    Request,
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the endpoint's answer is larger than {} KiB", MAX_ANSWER_BYTES / 1024)]
    TooLarge,
    #[error("the endpoint's answer is not JSON")]
    NotJson,
    #[error("the endpoint's answer has no token at '{0}'")]
    NoToken(String),
}

impl RemoteFailure {
    /// The audit trail's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused => "refused_network",
            Self::Timeout(_) => "timeout",
            Self::Connect => "connect_failed",
            Self::Request => "request_failed",
            Self::Status(_) => "bad_status",
            Self::TooLarge => "answer_too_large",
            Self::NotJson => "answer_not_json",
            Self::NoToken(_) => "no_token",
        }
    }
}

/// The client for remote integrations' endpoints.
pub struct RemoteTokens {
    http: reqwest::Client,
    policy: Arc<NetworkPolicy>,
}

impl RemoteTokens {
    pub fn new(policy: NetworkPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        Ok(Self {
            http: policed_client(&policy).build()?,
            policy,
        })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// POSTs `body` with the API key in the endpoint's header; the whole exchange, answer
    /// included, has the endpoint's timeout.
    pub async fn fetch(
        &self,
        endpoint: &RemoteEndpoint,
        api_key: &[u8],
        body: &Value,
    ) -> Result<RemoteToken, RemoteFailure> {
        let url = Url::parse(&endpoint.url).map_err(|_| RemoteFailure::Request)?;
        self.policy
            .check_url(&url)
            .map_err(|_| RemoteFailure::Refused)?;
        let header = HeaderName::from_bytes(endpoint.api_key_header.as_bytes())
            .map_err(|_| RemoteFailure::Request)?;
        let mut key = HeaderValue::from_bytes(api_key).map_err(|_| RemoteFailure::Request)?;
        key.set_sensitive(true);
        let request = self.http.post(url).header(header, key).json(body);
        let limit = Duration::from_secs(u64::from(endpoint.timeout_secs));
        let answer = tokio::time::timeout(limit, async {
            let mut response = request.send().await.map_err(|e| sent(&e, endpoint))?;
            if !response.status().is_success() {
                return Err(RemoteFailure::Status(response.status().as_u16()));
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
            {
                return Err(RemoteFailure::TooLarge);
            }
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| sent(&e, endpoint))? {
                if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(RemoteFailure::TooLarge);
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(answer)
        })
        .await
        .map_err(|_| RemoteFailure::Timeout(endpoint.timeout_secs))??;
        read_answer(&answer, endpoint)
    }
}

fn sent(error: &reqwest::Error, endpoint: &RemoteEndpoint) -> RemoteFailure {
    if error.is_timeout() {
        RemoteFailure::Timeout(endpoint.timeout_secs)
    } else if error.is_connect() {
        RemoteFailure::Connect
    } else {
        RemoteFailure::Request
    }
}

/// The token and expiry in a JSON answer.
fn read_answer(answer: &[u8], endpoint: &RemoteEndpoint) -> Result<RemoteToken, RemoteFailure> {
    let answer: Value = serde_json::from_slice(answer).map_err(|_| RemoteFailure::NotJson)?;
    let token = at(&answer, &endpoint.token_field)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RemoteFailure::NoToken(endpoint.token_field.clone()))?;
    Ok(RemoteToken {
        token: token.to_owned(),
        expires_at: at(&answer, &endpoint.expires_at_field).and_then(millis),
    })
}

/// The value at a dotted path (`data.token`).
fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// An expiry as portals write it: epoch seconds or milliseconds (a number or digits), or an
/// RFC 3339 time.
fn millis(value: &Value) -> Option<i64> {
    // Seconds until the year 5138; anything larger is already milliseconds.
    const SECONDS_BELOW: i64 = 100_000_000_000;
    let epoch = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let at = OffsetDateTime::parse(s, &Rfc3339).ok()?;
                return i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok();
            }
        },
        _ => None,
    }?;
    (epoch > 0).then(|| {
        if epoch < SECONDS_BELOW {
            epoch.saturating_mul(1000)
        } else {
            epoch
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint() -> RemoteEndpoint {
        RemoteEndpoint {
            url: "https://portal.example/token".into(),
            api_key_header: "x-api-key".into(),
            timeout_secs: 5,
            token_field: "data.token".into(),
            expires_at_field: "expiresAt".into(),
        }
    }

    #[test]
    fn answers_are_read_at_their_paths() {
        let read = |v: Value| read_answer(v.to_string().as_bytes(), &endpoint());
        let token = read(json!({"data": {"token": "t"}, "expiresAt": 1_700_000_000})).unwrap();
        assert_eq!(token.token, "t");
        assert_eq!(token.expires_at, Some(1_700_000_000_000));
        let token =
            read(json!({"data": {"token": "t"}, "expiresAt": "2023-11-14T22:13:20Z"})).unwrap();
        assert_eq!(token.expires_at, Some(1_700_000_000_000));
        let token =
            read(json!({"data": {"token": "t"}, "expiresAt": 1_700_000_000_123_i64})).unwrap();
        assert_eq!(token.expires_at, Some(1_700_000_000_123));
        assert_eq!(
            read(json!({"data": {"token": "t"}})).unwrap().expires_at,
            None
        );
        for missing in [
            json!({"token": "t"}),
            json!({"data": {"token": ""}}),
            json!({"data": {"token": 1}}),
        ] {
            assert_eq!(
                read(missing).err(),
                Some(RemoteFailure::NoToken("data.token".into()))
            );
        }
        assert_eq!(
            read_answer(b"<html>", &endpoint()).err(),
            Some(RemoteFailure::NotJson)
        );
    }
}
