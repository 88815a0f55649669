//! The one mapping from domain errors to HTTP: status, `{"error", "message"}`, and
//! `Retry-After` where it applies. Also `ApiJson`, the JSON body extractor whose rejections use
//! the same body and never echo a value from the request (it could be a password), and the JSON
//! answer of every route.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coreauth_proto::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::error::{DomainError, SamlRefusal, SsoFailure};

/// A domain error on its way out as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(e: &DomainError) -> StatusCode {
    match e {
        DomainError::InvalidCredentials | DomainError::MfaRequired | DomainError::MfaInvalid => {
            StatusCode::UNAUTHORIZED
        }
        DomainError::NoActiveOrg | DomainError::NotFound(_) => StatusCode::NOT_FOUND,
        // The seeds answer 403 for a missing or bad token, not RFC 6750's 401.
        DomainError::PasswordExpired
        | DomainError::EmailUnverified
        | DomainError::Unauthenticated
        | DomainError::Forbidden
        | DomainError::ForbiddenBecause(_)
        | DomainError::MfaEnrollmentRequired => StatusCode::FORBIDDEN,
        DomainError::Conflict(_) => StatusCode::CONFLICT,
        DomainError::Invalid(_) | DomainError::Link(_) => StatusCode::BAD_REQUEST,
        DomainError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::Overloaded { .. } | DomainError::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        DomainError::IntegrationUnavailable(_) => StatusCode::BAD_GATEWAY,
        DomainError::Sso(failure) => match failure {
            SsoFailure::IdpUnreachable(_)
            | SsoFailure::ProviderError(_)
            | SsoFailure::DnsUnreachable(_) => StatusCode::BAD_GATEWAY,
            SsoFailure::StateInvalid
            | SsoFailure::StateExpired
            | SsoFailure::BrowserMismatch
            | SsoFailure::AuthorizationPending
            | SsoFailure::ExpiredToken => StatusCode::BAD_REQUEST,
            SsoFailure::InvalidToken => StatusCode::UNAUTHORIZED,
            SsoFailure::Denied
            | SsoFailure::EmailUnverified
            | SsoFailure::DomainMismatch
            | SsoFailure::NoAccount
            | SsoFailure::SsoRequired
            | SsoFailure::NotLinked
            | SsoFailure::LinkMismatch
            | SsoFailure::EmailMissing
            | SsoFailure::NoRole => StatusCode::FORBIDDEN,
            SsoFailure::DomainNotProven => StatusCode::CONFLICT,
            SsoFailure::Saml(refusal) => match refusal {
                SamlRefusal::Malformed(_)
                | SamlRefusal::Doctype
                | SamlRefusal::UnknownRequest
                | SamlRefusal::Unsupported(_) => StatusCode::BAD_REQUEST,
                SamlRefusal::IdpInitiated | SamlRefusal::IdpStatus(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            },
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let message = match &error {
            DomainError::Internal(detail) => {
                // The detail goes to the log (inside the request's span, with its id); the
                // caller gets the id to quote.
                tracing::error!(detail = %detail, "internal error");
                "an internal error occurred; quote the x-request-id header when reporting it"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let retry_after = match &error {
            DomainError::RateLimited { retry_after } | DomainError::Overloaded { retry_after } => {
                Some(retry_after.as_secs().max(1))
            }
            DomainError::Unavailable => Some(1),
            _ => None,
        };
        error_response(status_of(&error), error.code(), message, retry_after)
    }
}

/// `{"error": code, "message": message}` with `status`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: String,
    retry_after_secs: Option<u64>,
) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message,
    };
    let mut response = (status, ApiJson(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// JSON, both ways. As an extractor, a request body: wrong content type, malformed JSON, wrong
/// types, missing fields and bodies over the limit all answer a 4xx with the spec's error body;
/// a rejected value is named by its field, never quoted. As an answer, the body of every route
/// (see its `IntoResponse`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with Content-Type: application/json".into(),
                None,
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                error_response(
                    status,
                    "payload_too_large",
                    "the request body is larger than 64 KiB".into(),
                    None,
                )
            } else {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read".into(),
                    None,
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson).map_err(|message| {
            error_response(StatusCode::BAD_REQUEST, "invalid_request", message, None)
        })
    }
}

/// An answer is serialized into one `Vec` sized for the usual body, not through axum's `Json`,
/// which writes through `BytesMut`'s `io::Write` adaptor (a capacity check and reserve on each
/// of the ~8 writes serde_json makes per field). For `/user/me` (16 fields, 371 bytes)
/// callgrind counted ~7,200 instructions per answer that way, ~6,000 this way.
impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(512);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => json_response(body),
            // Only a failing `Serialize` impl or a map with non-string keys gets here; no
            // answer of ours has either.
            Err(e) => ApiError(DomainError::Internal(format!("serializing an answer: {e}")))
                .into_response(),
        }
    }
}

/// A `200` with `body`, which is JSON.
pub fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Parses a JSON body, describing a failure by position or field name only.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| describe(&e))?;
    de.end()
        .map_err(|_| "unexpected data after the JSON body".to_owned())?;
    Ok(value)
}

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    let path = e.path().to_string();
    if inner.is_syntax() || inner.is_eof() {
        return format!(
            "the body is not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        );
    }
    let text = inner.to_string();
    // serde's "missing field `x`" and "unknown field `x`, expected …" name fields only.
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        let text = text.split(" at line").next().unwrap_or(&text);
        return text.to_owned();
    }
    if path == "." || path.is_empty() {
        "the body does not have the expected shape".to_owned()
    } else {
        format!("field `{path}` has an invalid type or value")
    }
}

/// Declares an extractor that wraps one of axum's and answers its rejection with 400 and the
/// spec's error body (axum's own answer is plain text).
macro_rules! params_extractor {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $message:expr, $with_detail:expr) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<S, T> axum::extract::FromRequestParts<S> for $name<T>
        where
            S: Send + Sync,
            T: DeserializeOwned + Send,
        {
            type Rejection = Response;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                axum::extract::$inner::<T>::from_request_parts(parts, state)
                    .await
                    .map(|axum::extract::$inner(value)| $name(value))
                    .map_err(|rejection| {
                        let message = if $with_detail {
                            format!("{}: {}", $message, rejection.body_text())
                        } else {
                            $message.to_owned()
                        };
                        error_response(StatusCode::BAD_REQUEST, "invalid_request", message, None)
                    })
            }
        }
    };
}

params_extractor!(
    /// A path parameter; a malformed one (`/admin/users/abc`) answers 400 with the error body.
    ApiPath,
    Path,
    "a path parameter is malformed (ids are integers)",
    // never echo a path segment back
    false
);

params_extractor!(
    /// Query parameters; malformed ones answer 400 with the error body.
    ApiQuery,
    Query,
    "bad query parameters",
    true
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coreauth_proto::AuthenticateRequest;

    #[tokio::test]
    async fn an_answer_is_json_with_its_content_type() {
        let answer = ApiJson(ErrorBody {
            error: "e".into(),
            message: "a \"quoted\" line\n".into(),
        })
        .into_response();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":"e","message":"a \"quoted\" line\n"}"#
        );
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_serialized_is_the_spec_500() {
        // A map with non-string keys is the one thing serde_json refuses.
        let refused = std::collections::BTreeMap::from([((1, 2), "x")]);
        let answer = ApiJson(refused).into_response();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, "internal_error");
    }

    #[test]
    fn a_wrongly_typed_password_is_named_not_quoted() {
        let err = parse_json::<AuthenticateRequest>(br#"{"email":"a@b.co","password":123456789}"#)
            .err()
            .unwrap();
        assert_eq!(err, "field `password` has an invalid type or value");
        let err = parse_json::<AuthenticateRequest>(
            br#"{"email":"a@b.co","password":"x","selectedOrg":"secret-canary"}"#,
        )
        .err()
        .unwrap();
        assert!(!err.contains("secret-canary"), "{err}");
    }

    #[test]
    fn missing_fields_and_bad_syntax_are_explained() {
        let err = parse_json::<AuthenticateRequest>(br#"{"email":"a@b.co"}"#)
            .err()
            .unwrap();
        assert_eq!(err, "missing field `password`");
        let err = parse_json::<AuthenticateRequest>(br#"{"email":"#)
            .err()
            .unwrap();
        assert!(err.starts_with("the body is not valid JSON"), "{err}");
        let err = parse_json::<AuthenticateRequest>(br#"{"email":"a","password":"b"} trailing"#)
            .err()
            .unwrap();
        assert!(err.contains("JSON"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Arbitrary bytes as a body never panic the parser.
        #[test]
        fn arbitrary_bodies_are_answered_not_panicked_on(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_json::<AuthenticateRequest>(&bytes);
        }

        /// A value of the wrong type is never echoed back, whatever it is.
        #[test]
        fn rejected_values_are_never_echoed(secret in "[A-Za-z0-9]{6,30}") {
            for body in [
                format!(r#"{{"email":"a@b.co","password":["{secret}"]}}"#),
                format!(r#"{{"email":"a@b.co","password":"x","selectedOrg":"{secret}"}}"#),
                format!(r#"{{"email":{{"{secret}":1}},"password":"x"}}"#),
            ] {
                let message = parse_json::<AuthenticateRequest>(body.as_bytes()).err().unwrap();
                proptest::prop_assert!(!message.contains(&secret), "{}", message);
            }
        }
    }
}
