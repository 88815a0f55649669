//! The API's own description: `GET /openapi.json` (OpenAPI 3.1, generated from the handlers'
//! annotations, so it cannot drift from the routes) and `GET /docs` (Swagger UI, shipped inside
//! the binary). Both answer to administrators only, as the customer's documentation says.
//!
//! A browser cannot send a bearer token when it opens a page, so `/docs` shows a small login
//! form; a successful admin login sets an HttpOnly, SameSite=Strict cookie holding a session
//! token. That cookie is honoured only by the read-only documentation routes, never by the API,
//! so it opens no cross-site-request door. "Try it out" calls use the token pasted into
//! Swagger's Authorize dialog, like any other client.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form, Router};
use coreauth_proto::ErrorBody;
use serde::Deserialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use super::browser::{html_escape, to_provider};
use super::error::{ApiError, error_response};
use super::extract::{Origin, origin_of};
use crate::domain::auth::{IssuedToken, LoginAttempt};
use crate::domain::error::DomainError;
use crate::domain::password::Password;
use coreauth_proto::credential_from_header;

const DOCS_COOKIE: &str = "coreauth_docs";
const UI_PATH: &str = "/docs/ui";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "coreauth",
        description = "Authentication and session tokens for a multi-tenant platform. Log in with \
            POST /user/authenticate, send the token as `Authorization: Bearer <token>`, renew it \
            with GET /user/authenticate before it expires. Errors are \
            `{\"error\": \"<code>\", \"message\": \"<text>\"}`; a missing or bad token answers \
            403 unauthenticated."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "authenticate", description = "Log in, renew, log out"),
        (name = "user", description = "The caller's own account"),
        (name = "authheader", description = "API keys for static integrations"),
        (name = "admin", description = "Org, user, policy and audit administration"),
        (name = "operations", description = "Health, metrics and public keys"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A session token from POST /user/authenticate"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "An API key (cak_…) from POST /authheader/add, sent as the whole header value",
            ))),
        );
    }
}

/// Answers any operation can give, whatever its handler does: the request limits (408, 503)
/// for all, and for those with a body the body checks (400, 413, 415). Added here once rather
/// than repeated on every handler.
/// Applied after the routes' paths are merged in (`http::api_document`).
pub struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                add("408", "request_timeout: the request took too long");
                add(
                    "503",
                    "overloaded or unavailable: try again after Retry-After",
                );
                if has_body {
                    add("400", "invalid_request: malformed or invalid body");
                    add("413", "payload_too_large: body over 64 KiB");
                    add(
                        "415",
                        "unsupported_media_type: the body is not of the documented type",
                    );
                }
            }
        }
    }
}

/// The documentation routes; `document` is the generated OpenAPI JSON.
/// The documented documentation routes: the OpenAPI document, the entry page and its login.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_entry))
        .routes(routes!(docs_login))
        .routes(routes!(docs_sso))
}

/// Swagger UI's static assets (HTML, JS, CSS from inside the binary), for admins only.
pub fn ui(state: AppState) -> Router<AppState> {
    let ui: Router<AppState> = SwaggerUi::new(UI_PATH)
        .config(Config::new(["/openapi.json"]).try_it_out_enabled(true))
        .into();
    ui.route_layer(axum::middleware::from_fn_with_state(
        state,
        require_admin_page,
    ))
}

/// The generated document, serialised once when the router is built.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// An administrator, authenticated by a bearer token or API key, or by the docs cookie.
pub struct DocsAdmin;

impl FromRequestParts<AppState> for DocsAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let from_header = super::extract::authorization(&parts.headers)?
            .and_then(|v| v.to_str().ok())
            .and_then(credential_from_header)
            .map(str::to_owned);
        let credential = from_header
            .or_else(|| docs_cookie(parts))
            .ok_or(DomainError::Unauthenticated)?;
        let principal = state
            .auth
            .authenticate(&credential, origin_of(parts), state.now())
            .await?;
        if principal.awaits_second_factor() {
            Err(DomainError::MfaRequired.into())
        } else if principal.is_platform_admin || principal.role.is_admin() {
            Ok(DocsAdmin)
        } else {
            Err(DomainError::Forbidden.into())
        }
    }
}

fn docs_cookie(parts: &Parts) -> Option<String> {
    super::extract::cookie_value(&parts.headers, DOCS_COOKIE)
}

/// This document (administrators only).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = serde_json::Value),
        (status = 403, description = "unauthenticated, or forbidden: not an administrator", body = ErrorBody),
    ))]
async fn openapi_json(
    Extension(OpenApiJson(json)): Extension<OpenApiJson>,
    _: DocsAdmin,
) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.as_str().to_owned(),
    )
        .into_response()
}

/// Swagger UI: a redirect to it for an authenticated admin, a login form for anyone else.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses(
        (status = 200, description = "The login form", content_type = "text/html", body = String),
        (status = 303, description = "To Swagger UI (an admin is signed in)"),
        (status = 403, description = "Signed in, but not an administrator", content_type = "text/html", body = String),
    ))]
async fn docs_entry(admin: Result<DocsAdmin, ApiError>) -> Response {
    match admin {
        Ok(_) => Redirect::to(&format!("{UI_PATH}/")).into_response(),
        Err(ApiError(DomainError::Forbidden)) => login_page(
            StatusCode::FORBIDDEN,
            "The API documentation is for administrators only.",
        ),
        Err(_) => login_page(StatusCode::OK, ""),
    }
}

#[derive(Deserialize, ToSchema)]
struct DocsLoginForm {
    email: String,
    password: String,
    #[serde(default, rename = "selectedOrg")]
    selected_org: Option<String>,
    #[serde(default, rename = "mfaTokenCode")]
    mfa_token_code: Option<String>,
}

/// The documentation's sign-in form: sets an HttpOnly cookie for an administrator.
#[utoipa::path(post, path = "/docs/login", tag = "operations",
    request_body(content = DocsLoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in; to Swagger UI"),
        (status = 400, description = "Bad form", content_type = "text/html", body = String),
        (status = 401, description = "Wrong credentials", content_type = "text/html", body = String),
        (status = 403, description = "Not an administrator", content_type = "text/html", body = String),
        (status = 404, description = "Not a member of that org", content_type = "text/html", body = String),
    ))]
async fn docs_login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: Result<Form<DocsLoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, "Fill in the email and password.");
    };
    let selected_org = form
        .selected_org
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<i64>);
    let Ok(selected_org) = selected_org.transpose() else {
        return login_page(StatusCode::BAD_REQUEST, "The org id must be a number.");
    };
    let password = match Password::parse(form.password) {
        Ok(p) => p,
        Err(e) => return login_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let attempt = LoginAttempt {
        email: form.email,
        password,
        selected_org,
        client: Some("swagger-docs".into()),
        mfa_code: form.mfa_token_code.filter(|c| !c.trim().is_empty()),
        origin,
        admins_only: true,
    };
    let result = state.auth.login(attempt, state.now()).await;
    state
        .metrics
        .count_login(result.as_ref().map_or_else(|e| e.code(), |_| "success"));
    match result {
        Ok(issued) => with_docs_cookie(
            &state,
            &issued,
            Redirect::to(&format!("{UI_PATH}/")).into_response(),
        ),
        Err(DomainError::Forbidden) => login_page(
            StatusCode::FORBIDDEN,
            "The API documentation is for administrators only.",
        ),
        Err(e) => {
            let status = super::error::status_of(&e);
            login_page(status, &e.to_string())
        }
    }
}

/// `response` with the cookie that holds the documentation's session.
fn with_docs_cookie(state: &AppState, issued: &IssuedToken, mut response: Response) -> Response {
    let max_age = (issued.expires_at - crate::domain::clock::to_millis(state.now())) / 1000;
    let secure = super::extract::secure_cookie_attribute(state);
    let cookie = format!(
        "{DOCS_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        issued.token,
        max_age.max(0)
    );
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "could not set the session cookie".into(),
            None,
        ),
    }
}

#[derive(Deserialize, ToSchema)]
struct DocsSsoForm {
    email: String,
}

/// The documentation's sign-in through the SSO connection of the email's domain: to the
/// provider, whose callback sets the documentation's cookie for an administrator.
#[utoipa::path(post, path = "/docs/sso", tag = "operations",
    request_body(content = DocsSsoForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the identity provider"),
        (status = 400, description = "Not an email, or one that signs in with a password", content_type = "text/html", body = String),
        (status = 429, description = "rate_limited", content_type = "text/html", body = String),
        (status = 502, description = "The identity provider cannot be reached", content_type = "text/html", body = String),
    ))]
async fn docs_sso(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: Result<Form<DocsSsoForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, "Fill in your email.");
    };
    match state
        .sso
        .start_docs(&form.email, &origin, state.now())
        .await
    {
        Ok(Some(started)) => to_provider(&state, &started),
        Ok(None) => login_page(
            StatusCode::BAD_REQUEST,
            "This email signs in with a password: use the form above.",
        ),
        Err(e) => login_page(super::error::status_of(&e), &e.to_string()),
    }
}

/// The SSO callback's answer to a documentation sign-in: the cookie for an administrator whose
/// session is whole. The page moves on to Swagger UI itself: the cookie is SameSite=Strict, and a
/// browser does not send it on a redirect that a cross-site provider's redirect led to.
pub(super) fn signed_in(state: &AppState, issued: IssuedToken) -> Response {
    if issued.mfa_required || issued.mfa_enrollment_required {
        return login_page(
            StatusCode::FORBIDDEN,
            "Your account needs its second factor: sign in with your password and one-time code.",
        );
    }
    if !issued.role.is_admin() {
        return login_page(
            StatusCode::FORBIDDEN,
            "The API documentation is for administrators only.",
        );
    }
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreauth API documentation</title>
<meta http-equiv="refresh" content="0; url={UI_PATH}/"></head>
<body style="font-family: sans-serif; max-width: 24rem; margin: 4rem auto">
<p>Signed in. <a href="{UI_PATH}/">Open the API documentation</a>.</p></body></html>"#
    );
    with_docs_cookie(state, &issued, (StatusCode::OK, Html(page)).into_response())
}

/// Guards the Swagger UI assets: no admin, no page (back to the login form).
async fn require_admin_page(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let allowed = DocsAdmin::from_request_parts(&mut parts, &state)
        .await
        .is_ok();
    if allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        Redirect::to("/docs").into_response()
    }
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let message = html_escape(message);
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreauth API documentation</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 24rem; margin: 4rem auto">
<h1>coreauth API documentation</h1>
<p>Administrators only. Sign in to continue.</p>
<p role="alert" style="color: #b00">{message}</p>
<form method="post" action="/docs/login">
<p><label>Email<br><input name="email" type="email" autocomplete="username" required></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
<p><label>Org id (optional)<br><input name="selectedOrg" inputmode="numeric"></label></p>
<p><label>One-time code (if you use one)<br><input name="mfaTokenCode" autocomplete="one-time-code" inputmode="numeric"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<h2>Single sign-on</h2>
<form method="post" action="/docs/sso">
<p><label>Email<br><input name="email" type="email" autocomplete="username" required></label></p>
<p><button type="submit">Sign in with your organisation</button></p>
</form></body></html>"#
    );
    (status, Html(page)).into_response()
}
