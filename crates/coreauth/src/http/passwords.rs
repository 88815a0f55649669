//! Passwords: the seed's JWT login (`POST /user/login`), changing one's password with or
//! without a token, org password policies, and admin resets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use coreauth_proto as proto;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{Caller, Origin};
use crate::domain::auth::LoginAttempt;
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::credentials::ExpiredChange;
use crate::domain::password::Password;
use crate::domain::policy::PasswordPolicy;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/login", post(jwt_login))
        .route("/user/password", post(change_own))
        .route("/user/password/expired", post(change_expired))
        .route(
            "/admin/orgs/{org_id}/password-policy",
            put(set_policy).get(get_policy),
        )
        .route("/admin/users/{id}/password", post(reset))
}

/// `POST /user/login` (seed 004): a session token of the user's default org.
async fn jwt_login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::JwtLoginRequest>,
) -> ApiResult<Json<proto::JwtLoginResponse>> {
    let attempt = LoginAttempt {
        email: body.username,
        password: Password::parse(body.password.into_inner())?,
        selected_org: None,
        client: Some("jwt-login".into()),
        origin,
    };
    let result = state.auth.login(attempt, state.now()).await;
    state
        .metrics
        .count_login(result.as_ref().map_or_else(|e| e.code(), |_| "success"));
    let issued = result?;
    let user = issued.user;
    Ok(Json(proto::JwtLoginResponse {
        id: user.uuid,
        created: iso8601(from_millis(user.created_at)),
        username: user.email.clone(),
        email: user.email,
        firstname: user.first,
        lastname: user.last,
        token: issued.token,
        password_expiration: issued.password_expires_at.map(|t| iso8601(from_millis(t))),
    }))
}

async fn change_own(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    let current = Password::parse(body.current_password.into_inner())?;
    let new = Password::parse(body.new_password.into_inner())?;
    state
        .credentials
        .change_own(&caller, current, new, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_expired(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::ExpiredPasswordRequest>,
) -> ApiResult<StatusCode> {
    let change = ExpiredChange {
        email: body.email,
        password: Password::parse(body.password.into_inner())?,
        new_password: Password::parse(body.new_password.into_inner())?,
        selected_org: body.selected_org,
        origin,
    };
    state
        .credentials
        .change_expired(change, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<proto::PasswordPolicy>> {
    let policy = state.credentials.policy(&caller, org_id).await?;
    Ok(Json(policy_answer(policy)))
}

async fn set_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::PasswordPolicy>,
) -> ApiResult<Json<proto::PasswordPolicy>> {
    let policy = PasswordPolicy::new(
        body.min_length,
        body.max_age_days,
        body.history_count,
        body.reject_common,
    )?;
    let policy = state
        .credentials
        .set_policy(&caller, org_id, policy, state.now())
        .await?;
    Ok(Json(policy_answer(policy)))
}

async fn reset(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    let new = Password::parse(body.new_password.into_inner())?;
    state
        .admin
        .reset_password(&caller, user_id, new, body.must_change, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn policy_answer(p: PasswordPolicy) -> proto::PasswordPolicy {
    proto::PasswordPolicy {
        min_length: p.min_length,
        max_age_days: p.max_age_days,
        history_count: p.history_count,
        reject_common: p.reject_common,
    }
}
