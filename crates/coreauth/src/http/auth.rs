//! `/user/authenticate`: log in, renew, log out (seeds 000–003).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use coreauth_proto::{AuthenticateRequest, AuthenticateResponse, SessionUser};

use super::AppState;
use super::error::{ApiJson, ApiResult};
use super::extract::{Caller, Origin};
use crate::domain::auth::{IssuedToken, LoginAttempt};
use crate::domain::password::Password;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/authenticate", get(renew).post(login))
        .route("/user/authenticate/logout", post(logout))
}

/// `POST /user/authenticate`: a new session and its first token.
async fn login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<AuthenticateRequest>,
) -> ApiResult<Json<AuthenticateResponse>> {
    let password = Password::parse(body.password.into_inner())?;
    let attempt = LoginAttempt {
        email: body.email,
        password,
        selected_org: body.selected_org,
        client: body.client,
        origin,
    };
    let result = state.auth.login(attempt, state.now()).await;
    let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "success");
    state.metrics.count_login(outcome);
    match &result {
        Ok(issued) => tracing::info!(user_id = issued.user.id, org_id = issued.org_id, "login"),
        Err(e) => tracing::info!(outcome, "login refused: {e}"),
    }
    Ok(Json(session_answer(result?)))
}

/// `GET /user/authenticate`: a fresh token for the caller's session.
async fn renew(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<AuthenticateResponse>> {
    let issued = state.auth.renew(&caller, state.now()).await?;
    Ok(Json(session_answer(issued)))
}

/// `POST /user/authenticate/logout`: ends the session behind the token.
async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<axum::http::StatusCode> {
    state.auth.logout(&caller, state.now()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

fn session_answer(issued: IssuedToken) -> AuthenticateResponse {
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
    }
}
