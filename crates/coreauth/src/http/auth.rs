//! `/user/authenticate`: log in, renew, log out (seeds 000–003).

use axum::extract::State;
use coreauth_proto::{AuthenticateRequest, AuthenticateResponse, ErrorBody, SessionUser};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiResult};
use super::extract::{EnrollingCaller, Origin};
use crate::domain::auth::{IssuedToken, LoginAttempt};
use crate::domain::password::Password;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(renew, login))
        .routes(routes!(logout))
}

/// Log in with credentials: a new session and its first token (valid 15 minutes).
#[utoipa::path(post, path = "/user/authenticate", tag = "authenticate",
    request_body = AuthenticateRequest,
    responses(
        (status = 200, description = "Authenticated", body = AuthenticateResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "invalid_credentials, mfa_required or mfa_invalid", body = ErrorBody),
        (status = 403, description = "password_expired", body = ErrorBody),
        (status = 404, description = "no_active_org: not an active member of the selected org", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "overloaded: too many logins queued", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<AuthenticateRequest>,
) -> ApiResult<ApiJson<AuthenticateResponse>> {
    let password = Password::parse(body.password.into_inner())?;
    let attempt = LoginAttempt {
        email: body.email,
        password,
        selected_org: body.selected_org,
        client: body.client,
        mfa_code: body.mfa_token_code.map(|c| c.into_inner()),
        origin,
        admins_only: false,
    };
    let result = state.auth.login(attempt, state.now()).await;
    let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "success");
    state.metrics.count_login(outcome);
    match &result {
        Ok(issued) => tracing::info!(user_id = issued.user.id, org_id = issued.org_id, "login"),
        Err(e) => tracing::info!(outcome, "login refused: {e}"),
    }
    Ok(ApiJson(session_answer(result?)))
}

/// Renew: a fresh token for the caller's session; the old one stays valid until its expiry.
#[utoipa::path(get, path = "/user/authenticate", tag = "authenticate",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Renewed", body = AuthenticateResponse),
        (status = 403, description = "unauthenticated: missing, expired or revoked token; forbidden: an API key or client token (they are not renewed)", body = ErrorBody),
    ))]
async fn renew(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
) -> ApiResult<ApiJson<AuthenticateResponse>> {
    let issued = state.auth.renew(&caller, state.now()).await?;
    Ok(ApiJson(session_answer(issued)))
}

/// Log out: ends the session behind the token; all its tokens fail at once.
#[utoipa::path(post, path = "/user/authenticate/logout", tag = "authenticate",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 403, description = "unauthenticated; forbidden: an API key or client token (no session to end)", body = ErrorBody),
    ))]
async fn logout(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
) -> ApiResult<axum::http::StatusCode> {
    state.auth.logout(&caller, state.now()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

pub(super) fn session_answer(issued: IssuedToken) -> AuthenticateResponse {
    let user = issued.user;
    AuthenticateResponse {
        token: issued.token,
        expires_at: issued.expires_at,
        user: SessionUser {
            id: user.id,
            uuid: user.uuid,
            first: user.first,
            last: user.last,
            email: user.email,
            is_active: user.is_active,
            is_admin: issued.role.is_admin(),
            org_id: issued.org_id,
            role: issued.role.as_str().to_owned(),
        },
        mfa_enrollment_required: issued.mfa_enrollment_required,
        mfa_required: issued.mfa_required,
    }
}
