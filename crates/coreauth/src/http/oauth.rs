//! `POST /oauth/token`: OAuth 2.0 client credentials (RFC 6749 §4.4) for service accounts.
//! The request is a form (§4.4.2) and the client authenticates with HTTP Basic or with
//! `client_id`/`client_secret` in the form (§2.3.1); errors are RFC 6749's body (§5.2), which
//! OAuth clients read, with the spec's `message` beside `error_description`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Origin, authorization};
use crate::domain::auth::{ClientToken, ClientTokenError, ClientTokenRequest, OAuthRefusal};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

/// RFC 6749 §5.1's answer.
#[derive(Serialize, ToSchema)]
struct TokenAnswer {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds.
    expires_in: i64,
    /// The scopes granted, space-separated.
    scope: String,
}

/// RFC 6749 §5.2's error body.
#[derive(Serialize, ToSchema)]
struct TokenError {
    error: &'static str,
    error_description: String,
    /// The same as `error_description`, as every other coreauth error says it.
    message: String,
}

/// The fields of §4.4.2, each once (`form_urlencoded` hands repeats back one by one).
#[derive(Default)]
struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An access token for a service account: `grant_type=client_credentials`, the client id (the
/// service account's id) and secret (one of its API keys), and optionally `scope` (a subset
/// of the key's scopes). The token is a session token of the service account, as long-lived
/// as any session token, not renewable, verifiable against `/.well-known/jwks.json`, and
/// accepted by this API within its scopes.
#[utoipa::path(post, path = "/oauth/token", tag = "authenticate",
    request_body(content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials&scope=…, with client_id and client_secret here or as HTTP Basic"),
    responses(
        (status = 200, description = "The access token", body = TokenAnswer),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_scope or unauthorized_client", body = TokenError),
        (status = 401, description = "invalid_client", body = TokenError),
    ))]
async fn token(
    State(state): State<AppState>,
    Origin(origin): Origin,
    headers: HeaderMap,
    form: Bytes,
) -> Result<Response, Refusal> {
    let basic = basic_credentials(&headers)?;
    let form = read_form(&headers, &form)?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is offered",
        ));
    }
    let used_basic = basic.is_some();
    let (client_id, client_secret) = match (basic, form.client_id, form.client_secret) {
        (Some(basic), None, None) => basic,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => return Err(Refusal::invalid_client(false)),
        (Some(_), _, _) => {
            return Err(Refusal::invalid_request(
                "authenticate the client once: HTTP Basic or the form, not both",
            ));
        }
    };
    let request = ClientTokenRequest {
        client_id,
        client_secret,
        scope: form.scope,
        origin,
    };
    match state.auth.client_credentials(request, state.now()).await {
        Ok(token) => Ok(granted(token)),
        Err(ClientTokenError::Refused(OAuthRefusal::InvalidClient)) => {
            Err(Refusal::invalid_client(used_basic))
        }
        Err(ClientTokenError::Refused(refusal)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            refusal.code(),
            refusal.description(),
        )),
        Err(ClientTokenError::Failed(error)) => Ok(ApiError(error).into_response()),
    }
}

/// HTTP Basic client authentication, its parts form-decoded (§2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Refusal> {
    let malformed = || {
        Refusal::invalid_request("the Authorization header is not HTTP Basic client authentication")
    };
    let Some(value) = authorization(headers).map_err(|_| malformed())? else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let Some(encoded) = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest.trim())
    else {
        return Err(malformed());
    };
    let decoded = STANDARD.decode(encoded).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((form_decoded(id), form_decoded(secret))))
}

fn form_decoded(text: &str) -> String {
    form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Refusal::invalid_request(
            "send the request as application/x-www-form-urlencoded",
        ));
    }
    let mut form = TokenForm::default();
    for (name, value) in form_urlencoded::parse(body) {
        let field = match name.as_ref() {
            "grant_type" => &mut form.grant_type,
            "scope" => &mut form.scope,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            _ => continue,
        };
        // §3.2: a parameter sent more than once makes the request invalid.
        if field.replace(value.into_owned()).is_some() {
            return Err(Refusal::invalid_request(&format!(
                "{name} is given more than once"
            )));
        }
    }
    Ok(form)
}

fn granted(token: ClientToken) -> Response {
    let answer = TokenAnswer {
        access_token: token.access_token,
        token_type: "Bearer",
        expires_in: token.expires_in,
        scope: token.scope,
    };
    no_store((StatusCode::OK, axum::Json(answer)).into_response())
}

/// A refusal, answered as §5.2 says.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// A Basic challenge, for a client that tried Basic and failed.
    challenge: bool,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, description: &str) -> Self {
        Self {
            status,
            error,
            description: description.to_owned(),
            challenge: false,
        }
    }

    fn invalid_request(description: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 for a client that failed to authenticate.
    fn invalid_client(used_basic: bool) -> Self {
        let refusal = OAuthRefusal::InvalidClient;
        Self {
            challenge: used_basic,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                refusal.code(),
                refusal.description(),
            )
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = TokenError {
            error: self.error,
            message: self.description.clone(),
            error_description: self.description,
        };
        let mut response = no_store((self.status, axum::Json(body)).into_response());
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"coreauth\""),
            );
        }
        response
    }
}

/// §5.1: token answers are never cached.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
