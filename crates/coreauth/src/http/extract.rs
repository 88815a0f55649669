//! Extractors: `Caller` and its kin (the authenticated principal of a request, with an API
//! key's or client token's scopes checked against the route) and `Origin` (address and user
//! agent, recorded with sessions).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use coreauth_proto::credential_from_header;

use super::AppState;
use super::error::ApiError;
use super::scopes;
use crate::domain::error::DomainError;
use crate::domain::origin::RequestOrigin;
use crate::domain::session::Principal;

/// The caller, authenticated by `Authorization: Bearer <token>` or a bare `Authorization:
/// <token>`. A missing, malformed, expired or revoked credential answers `403 unauthenticated`.
/// This one also admits a session that may only enrol a second factor: use it for the calls
/// such a session needs (enrolment, `/user/me`, renewal, logout) and `Caller` everywhere else.
pub struct EnrollingCaller(pub Principal);

impl FromRequestParts<AppState> for EnrollingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(EnrollingCaller(authenticate_complete(parts, state).await?))
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

/// The caller when the request carries a credential, `None` when it carries none: for calls
/// anyone may make that mean more from a signed-in caller (accepting an invitation).
pub struct OptionalCaller(pub Option<Principal>);

impl FromRequestParts<AppState> for OptionalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if authorization(&parts.headers)?.is_none() {
            return Ok(OptionalCaller(None));
        }
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        Ok(OptionalCaller(Some(caller)))
    }
}

/// The caller of `POST /user/mfa/verify`: any authenticated caller, also a session that is
/// waiting for its second factor (which every other extractor refuses with `mfa_required`).
pub struct ChallengedCaller(pub Principal);

impl FromRequestParts<AppState> for ChallengedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ChallengedCaller(authenticate(parts, state).await?))
    }
}

/// `authenticate`, refusing a session still waiting for its second factor (`ChallengedCaller`
/// alone admits one).
async fn authenticate_complete(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let principal = authenticate(parts, state).await?;
    if principal.awaits_second_factor() {
        return Err(DomainError::MfaRequired.into());
    }
    Ok(principal)
}

/// The request's one `Authorization` header. Two are refused outright: which one a proxy or
/// another service in front reads first is anyone's guess, so honouring either is unsafe.
pub fn authorization(
    headers: &axum::http::HeaderMap,
) -> Result<Option<&axum::http::HeaderValue>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(DomainError::invalid("send at most one Authorization header").into());
    }
    Ok(first)
}

/// The caller, and for an API key, whether its scopes reach this route (`scopes::needed`).
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let principal = authenticate_credential(parts, state).await?;
    if !principal.method.is_person() {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        match route.and_then(|route| scopes::needed(&parts.method, route)) {
            Some(scope) if principal.scopes.allow(scope) => {}
            Some(scope) => {
                return Err(DomainError::ForbiddenBecause(format!(
                    "this API key or client token lacks the scope {}",
                    scope.name()
                ))
                .into());
            }
            None => {
                return Err(DomainError::ForbiddenBecause(
                    "only a session may call this, not an API key or client token".into(),
                )
                .into());
            }
        }
    }
    Ok(principal)
}

async fn authenticate_credential(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let credential = authorization(&parts.headers)?
        // Not `to_str`, which checks a ~500-byte token one byte at a time on every request:
        // UTF-8 validation takes whole words. Anything it lets through that `to_str` would not
        // (non-ASCII text) is no token or key of ours and fails as unauthenticated.
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(credential_from_header)
        .ok_or(DomainError::Unauthenticated)?;
    Ok(state
        .auth
        .authenticate(credential, origin_of(parts), state.now())
        .await?)
}

/// Where the request came from: the peer address and the `User-Agent` header.
pub struct Origin(pub RequestOrigin);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(origin_of(parts)))
    }
}

/// The value of cookie `name` in the `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// `; Secure` for cookies when browsers reach coreauth over https (its public URL says so).
pub fn secure_cookie_attribute(state: &AppState) -> &'static str {
    if state.sso.callback_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// What is kept of a `User-Agent`: enough to tell clients apart, not a place to store data.
const MAX_USER_AGENT_CHARS: usize = 300;

/// The peer address, `User-Agent` (bounded) and request id of a request.
pub fn origin_of(parts: &Parts) -> RequestOrigin {
    let header_text = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    RequestOrigin {
        // The client as the trusted proxies tell it (`client_address`), else the socket's peer.
        address: parts
            .extensions
            .get::<super::client_address::ClientAddress>()
            .map(|client| client.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip())
            }),
        user_agent: header_text(&header::USER_AGENT).map(|agent| {
            agent
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT_CHARS)
                .collect()
        }),
        request_id: header_text(&super::X_REQUEST_ID)
            .filter(|id| is_safe_request_id(id))
            .map(str::to_owned),
    }
}

/// A request id a client may choose: short, and of characters that cannot forge log fields.
pub fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use coreauth_proto::credential_from_header;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Any header value: no panic, and what comes out is a trimmed, non-empty part of it
        /// that never keeps a `Bearer` scheme word.
        #[test]
        fn header_parsing_is_total(value in "\\PC{0,120}|(?i:bearer)[ ]{0,3}\\PC{0,40}") {
            if let Some(credential) = credential_from_header(&value) {
                proptest::prop_assert!(!credential.is_empty());
                proptest::prop_assert_eq!(credential.trim(), credential);
                proptest::prop_assert!(value.contains(credential));
                proptest::prop_assert!(!credential.eq_ignore_ascii_case("bearer"));
            }
        }
    }
}
