//! `/user/mfa/totp`: enrol, confirm and turn off TOTP; and the admin reset.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::session_answer;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{Caller, ChallengedCaller, EnrollingCaller};
use crate::domain::error::DomainError;
use crate::domain::mfa::Proof;
use crate::domain::password::Password;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(confirm))
        .routes(routes!(disable))
        .routes(routes!(reset))
        .routes(routes!(verify))
}

/// Answer the second factor of a single sign-on: a session opened through an org's identity
/// provider for an account with TOTP is good for nothing else until then. Answers a new token
/// for the now complete session.
#[utoipa::path(post, path = "/user/mfa/verify", tag = "user",
    request_body = proto::TotpCode,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Verified; the session is complete", body = proto::AuthenticateResponse),
        (status = 400, description = "This session is not waiting for a second factor", body = ErrorBody),
        (status = 401, description = "mfa_invalid: wrong or reused code", body = ErrorBody),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
async fn verify(
    State(state): State<AppState>,
    ChallengedCaller(caller): ChallengedCaller,
    ApiJson(body): ApiJson<proto::TotpCode>,
) -> ApiResult<ApiJson<proto::AuthenticateResponse>> {
    let issued = state
        .auth
        .answer_challenge(&caller, body.code.expose(), state.now())
        .await?;
    Ok(ApiJson(session_answer(issued)))
}

/// Start enrolling TOTP: a new secret, its otpauth URL and QR code. Not active until confirmed.
#[utoipa::path(post, path = "/user/mfa/totp/enroll", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Scan the QR code, then confirm a code", body = proto::TotpEnrollment),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 409, description = "TOTP is already enabled", body = ErrorBody),
    ))]
async fn enroll(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
) -> ApiResult<ApiJson<proto::TotpEnrollment>> {
    let enrollment = state.mfa.enroll(&caller, state.now()).await?;
    Ok(ApiJson(proto::TotpEnrollment {
        secret: enrollment.secret_base32,
        otpauth_url: enrollment.otpauth_url,
        qr_code: enrollment.qr_code,
    }))
}

/// Turn TOTP on with a first code from the app; answers ten single-use recovery codes.
#[utoipa::path(post, path = "/user/mfa/totp/confirm", tag = "user",
    request_body = proto::TotpCode,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Enabled; keep the recovery codes safe", body = proto::RecoveryCodes),
        (status = 400, description = "No enrolment started", body = ErrorBody),
        (status = 401, description = "mfa_invalid: wrong code", body = ErrorBody),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 409, description = "Already enabled", body = ErrorBody),
    ))]
async fn confirm(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
    ApiJson(body): ApiJson<proto::TotpCode>,
) -> ApiResult<ApiJson<proto::RecoveryCodes>> {
    let codes = state
        .mfa
        .confirm(&caller, body.code.expose(), state.now())
        .await?;
    Ok(ApiJson(proto::RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turn TOTP off, with a current code or the password.
#[utoipa::path(delete, path = "/user/mfa/totp", tag = "user",
    request_body = proto::DisableTotpRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Disabled"),
        (status = 400, description = "Give a code or a password", body = ErrorBody),
        (status = 401, description = "mfa_invalid: wrong code or password", body = ErrorBody),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 404, description = "TOTP is not enabled", body = ErrorBody),
    ))]
async fn disable(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::DisableTotpRequest>,
) -> ApiResult<StatusCode> {
    let proof = match (body.code, body.password) {
        (Some(code), None) => Proof::Code(code.into_inner()),
        (None, Some(password)) => Proof::Password(Password::parse(password.into_inner())?),
        _ => {
            return Err(DomainError::invalid("give either `code` or `password`").into());
        }
    };
    state.mfa.disable(&caller, proof, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user's TOTP (a lost phone); they can log in with the password and enrol again.
#[utoipa::path(post, path = "/admin/users/{id}/mfa/reset", tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this user", body = ErrorBody),
        (status = 404, description = "No such user, or no TOTP", body = ErrorBody),
    ))]
async fn reset(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.admin.reset_mfa(&caller, user_id, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
