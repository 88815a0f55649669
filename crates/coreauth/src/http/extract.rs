//! Extractors: `Caller` (the authenticated principal of a request) and `Origin` (address and
//! user agent, recorded with sessions).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::auth::RequestOrigin;
use crate::domain::error::DomainError;
use crate::domain::session::Principal;

/// The caller, authenticated by `Authorization: Bearer <token>` or a bare `Authorization:
/// <token>`. A missing, malformed, expired or revoked credential answers `403 unauthenticated`.
/// This one also admits a session that may only enrol a second factor: use it for the calls
/// such a session needs (enrolment, `/user/me`, renewal, logout) and `Caller` everywhere else.
pub struct EnrollingCaller(pub Principal);

impl FromRequestParts<AppState> for EnrollingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(credential_from_header)
            .ok_or(DomainError::Unauthenticated)?;
        let principal = state
            .auth
            .authenticate(credential, origin_of(parts), state.now())
            .await?;
        // A read-only API key may only read.
        if principal.read_only && !parts.method.is_safe() {
            return Err(DomainError::Forbidden.into());
        }
        Ok(EnrollingCaller(principal))
    }
}

/// The caller of a call that needs a session with full rights: a session that must first enrol
/// the second factor its org requires is refused with `mfa_enrollment_required`.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let EnrollingCaller(principal) = EnrollingCaller::from_request_parts(parts, state).await?;
        if principal.must_enroll_mfa() {
            return Err(DomainError::MfaEnrollmentRequired.into());
        }
        Ok(Caller(principal))
    }
}

/// The credential in an `Authorization` value: after `Bearer ` (any case), or the whole value
/// when it has no scheme. Other schemes (`Basic …`) are not ours.
pub fn credential_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let credential = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!credential.is_empty()).then_some(credential)
}

/// Where the request came from: the peer address and the `User-Agent` header.
pub struct Origin(pub RequestOrigin);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(origin_of(parts)))
    }
}

/// The peer address, `User-Agent` and request id of a request.
pub fn origin_of(parts: &Parts) -> RequestOrigin {
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestOrigin {
        address: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
        user_agent: header_text(header::USER_AGENT.as_str()),
        request_id: header_text("x-request-id"),
    }
}

#[cfg(test)]
mod tests {
    use super::credential_from_header;

    #[test]
    fn bearer_and_bare_values_are_accepted() {
        assert_eq!(credential_from_header("Bearer abc"), Some("abc"));
        assert_eq!(credential_from_header("bearer   abc "), Some("abc"));
        assert_eq!(credential_from_header("BEARER abc"), Some("abc"));
        assert_eq!(credential_from_header("abc"), Some("abc"));
        assert_eq!(credential_from_header(" cak_123 "), Some("cak_123"));
    }

    #[test]
    fn other_schemes_and_empty_values_are_not() {
        assert_eq!(credential_from_header("Basic dXNlcjpwdw=="), None);
        assert_eq!(credential_from_header("Bearer "), None);
        assert_eq!(credential_from_header(""), None);
        assert_eq!(credential_from_header("Bearer a b"), Some("a b"));
    }
}
