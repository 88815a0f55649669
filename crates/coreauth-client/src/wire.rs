//! Turning coreauth's HTTP answers into values or `Error::Api`. A body that does not match is
//! reported by position only: serde's messages can quote values, and a value here can be a token.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The body of a successful answer as `T` (an empty body reads as JSON `null`, so `()` and
/// `Option<_>` fit a `204`); an error status becomes `Error::Api`.
pub(crate) async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    serde_json::from_slice(body).map_err(|e| {
        Error::Protocol(format!(
            "the {status} answer does not match the API (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// `ErrorBody`, read leniently: some answers (a device sign-in's `authorization_pending`) are
/// just `{"error": code}`, and `error_description` is OAuth's name for the message.
#[derive(Deserialize)]
struct LenientErrorBody {
    error: String,
    #[serde(default, alias = "error_description")]
    message: String,
}

/// coreauth's error body, or a stand-in when something in between answered.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<LenientErrorBody>(body) {
        Ok(body) => Error::Api {
            status: status.as_u16(),
            code: body.error,
            message: body.message,
        },
        Err(_) => Error::Api {
            status: status.as_u16(),
            code: "http_error".into(),
            message: format!("HTTP {status} without coreauth's error body"),
        },
    }
}

/// The `Retry-After` of an answer, in seconds (coreauth sends it with `429` and `503`; the
/// HTTP-date form is not used by coreauth and is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The HTTP client a builder makes when it is given none.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("coreauth-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// `base` without a trailing slash, checked to be an http(s) URL this build can reach.
pub(crate) fn server_url(base: &str) -> Result<String> {
    let url = reqwest::Url::parse(base.trim())
        .map_err(|e| Error::Config(format!("server URL {base:?}: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "rustls") => {}
        "https" => {
            return Err(Error::Config(
                "this build has no TLS support: build with the `rustls` feature of \
                 coreauth-client (the coreauth binary: `--features tls`) to reach an https server"
                    .into(),
            ));
        }
        other => {
            return Err(Error::Config(format!(
                "server URL {base:?}: the scheme must be http or https, not {other}"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(Error::Config(format!(
            "server URL {base:?}: no credentials or query string, please"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_lose_their_trailing_slash_and_must_be_http() {
        assert_eq!(
            server_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            server_url("http://auth.example/base/").unwrap(),
            "http://auth.example/base"
        );
        assert!(server_url("ftp://x").is_err());
        assert!(server_url("not a url").is_err());
        assert!(server_url("http://user:pw@host").is_err());
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":"unauthenticated","message":"no"}"#,
        );
        assert!(e.is_unauthenticated());
        assert_eq!(e.code(), Some("unauthenticated"));
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(matches!(e, Error::Api { status: 502, .. }));
        assert_eq!(e.code(), Some("http_error"));
    }

    #[test]
    fn an_error_body_without_a_message_keeps_its_code() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"authorization_pending"}"#,
        );
        assert!(matches!(&e, Error::Api { status: 400, message, .. } if message.is_empty()));
        assert_eq!(e.code(), Some("authorization_pending"));
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"slow_down","error_description":"poll less often"}"#,
        );
        assert!(matches!(&e, Error::Api { message, .. } if message == "poll less often"));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
