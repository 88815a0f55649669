//! Checking coreauth session tokens in another service: offline against the JWKS (cached,
//! refetched on an unknown `kid`), optionally confirmed online through `POST /token/introspect`.
//!
//! Like coreauth itself, the check pins everything an attacker could choose (RFC 8725): the
//! algorithm (EdDSA only), `typ` (`at+jwt`), the key (`kid` must name a key of the JWKS;
//! embedded `jwk`/`jku`/`x5u`/`x5c` headers are refused), `iss` and `aud`; `exp` is checked
//! against the injected clock.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use coreauth_proto::{ErrorBody, SESSION_AUDIENCE, SESSION_TOKEN_TYPE, SessionClaims};
use jsonwebtoken::{Algorithm, Validation};
use secrecy::SecretString;

use crate::clock::{self, Clock};
use crate::error::Result;
use crate::wire;

mod introspect;
mod jwks;
mod layer;

pub use layer::{VerifyLayer, VerifyService};

const MAX_TOKEN_LEN: usize = 4096;
/// Tolerated skew for an `iat` in the future.
const IAT_LEEWAY_SECS: i64 = 60;

/// The claims of a verified session token. The layer puts them in the request's extensions,
/// and a handler takes them as an argument (`claims: Claims`, then `claims.sub`, `claims.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims(pub SessionClaims);

impl std::ops::Deref for Claims {
    type Target = SessionClaims;

    fn deref(&self) -> &SessionClaims {
        &self.0
    }
}

/// Why a request was refused. The detail goes to the log, never to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Missing, malformed, forged, expired, revoked or foreign token: `403 unauthenticated`.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// coreauth could not be asked (keys or introspection): `503 unavailable`.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl IntoResponse for VerifyError {
    fn into_response(self) -> Response {
        let (status, error, message) = match &self {
            Self::Unauthenticated(_) => (
                StatusCode::FORBIDDEN,
                "unauthenticated",
                "a valid session token is required",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the token cannot be checked right now, try again shortly",
            ),
        };
        tracing::debug!("request refused: {self}");
        let body = ErrorBody {
            error: error.into(),
            message: message.into(),
        };
        (status, axum::Json(body)).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = VerifyError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, VerifyError> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .ok_or(VerifyError::Unauthenticated(
                "the route is not behind VerifyLayer",
            ))
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierStats {
    pub jwks_fetches: u64,
    pub introspections: u64,
}

/// Sets up a `Verifier`.
pub struct VerifierBuilder {
    server: String,
    issuer: String,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    jwks_refetch_interval: Duration,
    jwks_max_age: Duration,
    introspection: Option<(SecretString, Duration)>,
}

impl VerifierBuilder {
    /// The `iss` coreauth puts in its tokens (`COREAUTH_ISSUER`, default `coreauth`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The clock expiry is checked against (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// At most one JWKS fetch per this interval for unknown `kid`s (default 30 s).
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch_interval = interval;
        self
    }

    /// Keys older than this are refetched on next use, so a removed key stops verifying
    /// (default 10 minutes).
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.jwks_max_age = age;
        self
    }

    /// Also asks coreauth (`POST /token/introspect`, authenticated with `api_key`) whether a
    /// token that passed the offline check is still honoured, caching each answer for
    /// `cache_for` (a few seconds: how long a logout may go unnoticed).
    pub fn introspect(mut self, api_key: SecretString, cache_for: Duration) -> Self {
        self.introspection = Some((api_key, cache_for));
        self
    }

    pub fn build(self) -> Result<Verifier> {
        let server = wire::server_url(&self.server)?;
        let http = match self.http {
            Some(http) => http,
            None => wire::http_client(Duration::from_secs(10))?,
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false; // checked against the injected clock
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[SESSION_AUDIENCE]);
        let jwks = jwks::Jwks::new(
            &server,
            http.clone(),
            self.clock.clone(),
            self.jwks_refetch_interval,
            self.jwks_max_age,
        );
        let introspection = self.introspection.map(|(key, ttl)| {
            introspect::Introspection::new(&server, http, self.clock.clone(), key, ttl)
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
                clock: self.clock,
                validation,
                jwks,
                introspection,
            }),
        })
    }
}

struct Inner {
    clock: Arc<dyn Clock>,
    validation: Validation,
    jwks: jwks::Jwks,
    introspection: Option<introspect::Introspection>,
}

/// Checks coreauth session tokens. Cheap to clone; clones share the key and answer caches.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl Verifier {
    /// A verifier for the coreauth at `server` (its base URL).
    pub fn builder(server: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            server: server.into(),
            issuer: "coreauth".into(),
            http: None,
            clock: clock::system(),
            jwks_refetch_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            introspection: None,
        }
    }

    /// The tower layer that verifies the `Authorization` header of every request.
    pub fn layer(&self) -> VerifyLayer {
        VerifyLayer::new(self.clone())
    }

    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            jwks_fetches: self.inner.jwks.fetches(),
            introspections: self
                .inner
                .introspection
                .as_ref()
                .map_or(0, introspect::Introspection::calls),
        }
    }

    /// The claims of `token` if it is a valid session token of this coreauth (and, with
    /// introspection on, coreauth still honours it).
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let claims = self.verify_offline(token).await?;
        if let Some(introspection) = &self.inner.introspection {
            introspection.confirm(token).await?;
        }
        Ok(claims)
    }

    async fn verify_offline(&self, token: &str) -> Result<Claims, VerifyError> {
        use VerifyError::Unauthenticated;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Unauthenticated("token too long"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Unauthenticated("not a JWT"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Unauthenticated("algorithm is not EdDSA"));
        }
        if header.typ.as_deref() != Some(SESSION_TOKEN_TYPE) {
            return Err(Unauthenticated("not a session token"));
        }
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(Unauthenticated("embedded key references are refused"));
        }
        let kid = header.kid.ok_or(Unauthenticated("no kid"))?;
        let key = self.inner.jwks.key(&kid).await?;
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &key, &self.inner.validation)
            .map_err(|_| Unauthenticated("bad signature, issuer or audience"))?
            .claims;
        let now = self.inner.clock.now_millis() / 1000;
        if claims.exp <= now {
            return Err(Unauthenticated("expired"));
        }
        if claims.iat > now + IAT_LEEWAY_SECS {
            return Err(Unauthenticated("issued in the future"));
        }
        Ok(Claims(claims))
    }
}
