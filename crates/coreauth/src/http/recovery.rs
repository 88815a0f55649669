//! What mailed links lead to: `/user/password/forgot` and `/user/password/reset` (self-service
//! password reset), `/user/email/verify` (proving an address).

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiResult};
use super::extract::Origin;
use crate::domain::password::Password;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(forgot))
        .routes(routes!(reset))
        .routes(routes!(verify))
        .routes(routes!(resend_verification))
}

/// Ask for a password-reset link. The answer is the same whether or not the address has an
/// account (and whether it signs in through SSO, which the message then says instead).
#[utoipa::path(post, path = "/user/password/forgot", tag = "user",
    request_body = proto::ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted: a message goes out if the address has an account"),
        (status = 400, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "rate_limited: too many messages asked for this address", body = ErrorBody),
    ))]
async fn forgot(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::ForgotPasswordRequest>,
) -> ApiResult<StatusCode> {
    state
        .recovery
        .forgot(&body.email, &origin, state.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token of a reset link; every session of the account ends.
#[utoipa::path(post, path = "/user/password/reset", tag = "user",
    request_body = proto::ResetWithLinkRequest,
    responses(
        (status = 204, description = "The password is set; sign in with it"),
        (status = 400, description = "token_invalid, token_used, token_expired, token_superseded; or the policy or history refuses the password", body = ErrorBody),
        (status = 409, description = "The link was used or the password changed meanwhile", body = ErrorBody),
    ))]
async fn reset(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::ResetWithLinkRequest>,
) -> ApiResult<StatusCode> {
    let password = Password::parse(body.new_password.into_inner())?;
    state
        .recovery
        .reset(body.token.expose(), password, &origin, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prove an address with the token of a verification link.
#[utoipa::path(post, path = "/user/email/verify", tag = "user",
    request_body = proto::VerifyEmailRequest,
    responses(
        (status = 204, description = "The address is verified"),
        (status = 400, description = "token_invalid, token_used, token_expired, token_superseded", body = ErrorBody),
        (status = 409, description = "Used meanwhile, or the account's address changed", body = ErrorBody),
    ))]
async fn verify(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::VerifyEmailRequest>,
) -> ApiResult<StatusCode> {
    state
        .verification
        .verify(body.token.expose(), &origin, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ask for a new verification link. The answer is the same whether or not the address has an
/// account waiting for one.
#[utoipa::path(post, path = "/user/email/verify/resend", tag = "user",
    request_body = proto::ResendVerificationRequest,
    responses(
        (status = 202, description = "Accepted: a link goes out if the address has an unproven account"),
        (status = 400, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "rate_limited: too many messages asked for this address", body = ErrorBody),
    ))]
async fn resend_verification(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::ResendVerificationRequest>,
) -> ApiResult<StatusCode> {
    state
        .verification
        .resend(&body.email, &origin, state.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}
