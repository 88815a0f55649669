//! SSO for devices without a browser of their own, such as the CLI: the device asks
//! (`POST /user/authenticate/sso/device`), the person confirms its code in any browser
//! (`/user/authenticate/sso/device/verify`) and signs in at the org's provider, and the device
//! polls for the session (`POST /user/authenticate/sso/device/token`).

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::session_answer;
use super::browser::{html_escape, to_provider};
use super::error::{ApiJson, ApiQuery, ApiResult, status_of};
use super::extract::Origin;
use crate::domain::sso::DEVICE_INTERVAL;

const VERIFY_PATH: &str = "/user/authenticate/sso/device/verify";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(token))
        .routes(routes!(confirm_page, confirm))
}

/// A device asks to sign in through the SSO connection of an email's domain: answers the codes
/// to show and poll with.
#[utoipa::path(post, path = "/user/authenticate/sso/device", tag = "authenticate",
    request_body = proto::SsoDeviceRequest,
    responses(
        (status = 200, description = "Show userCode and verificationUri; poll with deviceCode", body = proto::SsoDeviceStart),
        (status = 400, description = "Not an email, or one that signs in with a password", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
async fn start(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::SsoDeviceRequest>,
) -> ApiResult<ApiJson<proto::SsoDeviceStart>> {
    let started = state
        .sso
        .start_device(&body.email, body.client, &origin, state.now())
        .await?;
    let verification_uri = format!("{}{VERIFY_PATH}", state.sso.public_url());
    Ok(ApiJson(proto::SsoDeviceStart {
        verification_uri_complete: format!("{verification_uri}?code={}", started.user_code),
        verification_uri,
        device_code: proto::SecretText::new(started.device_code),
        user_code: started.user_code,
        expires_in: started.expires_in,
        interval: DEVICE_INTERVAL,
    }))
}

/// The device's poll: the session once the person signed in, once.
#[utoipa::path(post, path = "/user/authenticate/sso/device/token", tag = "authenticate",
    request_body = proto::SsoDeviceTokenRequest,
    responses(
        (status = 200, description = "Signed in", body = proto::AuthenticateResponse),
        (status = 400, description = "authorization_pending (ask again after the interval), or expired_token (unknown, expired or used)", body = ErrorBody),
        (status = 403, description = "The sign-in at the provider was refused, with its reason", body = ErrorBody),
    ))]
async fn token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<proto::SsoDeviceTokenRequest>,
) -> ApiResult<ApiJson<proto::AuthenticateResponse>> {
    let issued = state
        .sso
        .device_session(body.device_code.expose(), state.now())
        .await?;
    Ok(ApiJson(session_answer(issued)))
}

#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
struct CodeForm {
    /// The code the device shows.
    #[serde(default)]
    code: Option<String>,
}

/// The page where the person confirms the device's code before signing in.
#[utoipa::path(get, path = "/user/authenticate/sso/device/verify", tag = "authenticate",
    params(CodeForm),
    responses(
        (status = 200, description = "The confirmation page", content_type = "text/html", body = String),
        (status = 404, description = "No device sign-in waits for this code", content_type = "text/html", body = String),
        (status = 429, description = "rate_limited", content_type = "text/html", body = String),
    ))]
async fn confirm_page(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiQuery(query): ApiQuery<CodeForm>,
) -> Response {
    let Some(code) = query.code.filter(|c| !c.trim().is_empty()) else {
        return page(StatusCode::OK, &code_form(""));
    };
    match state.sso.pending_device(&code, &origin, state.now()).await {
        Ok(pending) => {
            let client = pending.client.as_deref().unwrap_or("a device");
            let body = format!(
                r#"<p>Sign in on <strong>{client}</strong> through your organisation's identity provider.</p>
<p>Continue only if you started this sign-in yourself and the device shows the code <strong>{code}</strong>.</p>
<form method="post" action="{VERIFY_PATH}"><input type="hidden" name="code" value="{code}">
<p><button type="submit">Continue to sign in</button></p></form>"#,
                client = html_escape(client),
                code = html_escape(&pending.user_code),
            );
            page(StatusCode::OK, &body)
        }
        Err(error) => page(status_of(&error), &code_form(&error.to_string())),
    }
}

/// The person confirmed the code: to the provider, to sign in for the device.
#[utoipa::path(post, path = "/user/authenticate/sso/device/verify", tag = "authenticate",
    request_body(content = CodeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the identity provider"),
        (status = 400, description = "No code", content_type = "text/html", body = String),
        (status = 404, description = "No device sign-in waits for this code", content_type = "text/html", body = String),
        (status = 429, description = "rate_limited", content_type = "text/html", body = String),
        (status = 502, description = "The identity provider cannot be reached", content_type = "text/html", body = String),
    ))]
async fn confirm(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(code) = form.ok().and_then(|Form(f)| f.code) else {
        return page(StatusCode::BAD_REQUEST, &code_form("Enter the code."));
    };
    match state
        .sso
        .start_device_sign_in(&code, &origin, state.now())
        .await
    {
        Ok(started) => to_provider(&state, &started),
        Err(error) => page(status_of(&error), &code_form(&error.to_string())),
    }
}

/// What the browser sees once the device's sign-in is done.
pub(super) fn signed_in_page(client: Option<String>) -> Response {
    let client = html_escape(client.as_deref().unwrap_or("the device"));
    page(
        StatusCode::OK,
        &format!(
            "<p>Signed in. Go back to <strong>{client}</strong>; you may close this page.</p>"
        ),
    )
}

fn code_form(message: &str) -> String {
    format!(
        r#"<p role="alert" style="color: #b00">{}</p>
<form method="get" action="{VERIFY_PATH}">
<p><label>The code your device shows<br><input name="code" autocomplete="off" required></label></p>
<p><button type="submit">Next</button></p></form>"#,
        html_escape(message)
    )
}

fn page(status: StatusCode, body: &str) -> Response {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreauth: sign in a device</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>Sign in a device</h1>
{body}
</body></html>"#
    );
    (status, Html(page)).into_response()
}
