//! Passwords: the seed's JWT login (`POST /user/login`), changing one's password with or
//! without a token, org password policies, and admin resets.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{Caller, Origin};
use crate::domain::auth::LoginAttempt;
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::credentials::ExpiredChange;
use crate::domain::password::Password;
use crate::domain::policy::PasswordPolicy;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwt_login))
        .routes(routes!(change_own))
        .routes(routes!(change_expired))
        .routes(routes!(set_policy, get_policy))
        .routes(routes!(reset))
}

/// JWT login (seed 004): a session token of the user's default org.
#[utoipa::path(post, path = "/user/login", tag = "authenticate",
    request_body = proto::JwtLoginRequest,
    responses(
        (status = 200, description = "Successful authentication", body = proto::JwtLoginResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Incorrect credentials; mfa_required (send mfaTokenCode) or mfa_invalid", body = ErrorBody),
        (status = 403, description = "Password expired", body = ErrorBody),
        (status = 404, description = "no_active_org", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "overloaded", body = ErrorBody),
    ))]
async fn jwt_login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::JwtLoginRequest>,
) -> ApiResult<ApiJson<proto::JwtLoginResponse>> {
    let attempt = LoginAttempt {
        email: body.username,
        password: Password::parse(body.password.into_inner())?,
        selected_org: None,
        client: Some("jwt-login".into()),
        mfa_code: body
            .mfa_token_code
            .map(|c| c.into_inner())
            .filter(|c| !c.trim().is_empty()),
        origin,
        admins_only: false,
    };
    let result = state.auth.login(attempt, state.now()).await;
    state
        .metrics
        .count_login(result.as_ref().map_or_else(|e| e.code(), |_| "success"));
    let issued = result?;
    let user = issued.user;
    Ok(ApiJson(proto::JwtLoginResponse {
        id: user.uuid,
        created: iso8601(from_millis(user.created_at)),
        username: user.username.clone().unwrap_or_else(|| user.email.clone()),
        email: user.email,
        firstname: user.first,
        lastname: user.last,
        token: issued.token,
        password_expiration: issued.password_expires_at.map(|t| iso8601(from_millis(t))),
    }))
}

/// Change the caller's password; the caller's other sessions end.
#[utoipa::path(post, path = "/user/password", tag = "user",
    request_body = proto::ChangePasswordRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The policy or history refuses the new password", body = ErrorBody),
        (status = 401, description = "The current password is wrong", body = ErrorBody),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
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

/// Replace an expired password without a token.
#[utoipa::path(post, path = "/user/password/expired", tag = "user",
    request_body = proto::ExpiredPasswordRequest,
    responses(
        (status = 204, description = "Changed; log in with the new password"),
        (status = 400, description = "Not expired, or the policy refuses the new password", body = ErrorBody),
        (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 404, description = "no_active_org", body = ErrorBody),
    ))]
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
        mfa_code: body.mfa_token_code.map(|c| c.into_inner()),
        origin,
    };
    state
        .credentials
        .change_expired(change, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An org's password policy.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/password-policy", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The policy", body = proto::PasswordPolicy),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn get_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<proto::PasswordPolicy>> {
    let policy = state.credentials.policy(&caller, org_id).await?;
    Ok(ApiJson(policy_answer(policy)))
}

/// Set an org's password policy.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/password-policy", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::PasswordPolicy,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The new policy", body = proto::PasswordPolicy),
        (status = 400, description = "Out of bounds", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn set_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::PasswordPolicy>,
) -> ApiResult<ApiJson<proto::PasswordPolicy>> {
    let policy = PasswordPolicy {
        require_mfa: body.require_mfa,
        require_verified_email: body.require_verified_email,
        ..PasswordPolicy::new(
            body.min_length,
            body.max_age_days,
            body.history_count,
            body.reject_common,
        )?
    };
    let policy = state
        .credentials
        .set_policy(&caller, org_id, policy, state.now())
        .await?;
    Ok(ApiJson(policy_answer(policy)))
}

/// Set a user's password; with `mustChange` the next login answers `password_expired`.
#[utoipa::path(post, path = "/admin/users/{id}/password", tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    request_body = proto::ResetPasswordRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Set; the user's sessions ended"),
        (status = 400, description = "The policy or history refuses the password", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such user in your orgs", body = ErrorBody),
    ))]
async fn reset(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    let new = Password::parse(body.new_password.into_inner())?;
    state
        .admin
        .reset_password(
            &caller,
            user_id,
            new,
            body.must_change,
            body.revoke_api_keys,
            state.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn policy_answer(p: PasswordPolicy) -> proto::PasswordPolicy {
    proto::PasswordPolicy {
        min_length: p.min_length,
        max_age_days: p.max_age_days,
        history_count: p.history_count,
        reject_common: p.reject_common,
        require_mfa: p.require_mfa,
        require_verified_email: p.require_verified_email,
    }
}
