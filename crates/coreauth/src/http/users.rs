//! `/user/...`: who am I, my orgs, my sessions.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto::{ErrorBody, Me, SessionInfo, UserOrg};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{Caller, EnrollingCaller};
use crate::domain::auth::WhoAmI;
use crate::domain::clock::{from_millis, iso8601};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(orgs))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
}

/// Who am I: user, org of this token, role, and how the call was authenticated.
#[utoipa::path(get, path = "/user/me", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn me(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
) -> ApiResult<ApiJson<Me>> {
    let WhoAmI {
        user,
        org,
        password_expires_at,
        mfa_enabled,
    } = state.auth.whoami(&caller).await?;
    Ok(ApiJson(Me {
        id: user.id,
        uuid: user.uuid.clone(),
        email: user.email.clone(),
        first: user.first.clone(),
        last: user.last.clone(),
        is_active: user.is_active,
        is_admin: caller.role.is_admin(),
        is_platform_admin: caller.is_platform_admin,
        org_id: org.id,
        org_name: org.name.clone(),
        role: caller.role.as_str().to_owned(),
        auth_method: caller.method.as_str().to_owned(),
        session_id: caller.session.as_ref().map(|s| s.id.clone()),
        session_expires_at: caller
            .session
            .as_ref()
            .map(|s| iso8601(from_millis(s.expires_at))),
        password_expires_at: password_expires_at.map(|t| iso8601(from_millis(t))),
        mfa_enabled,
    }))
}

/// The caller's orgs with their ids (for `selectedOrg`).
#[utoipa::path(get, path = "/user/orgs", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller's memberships", body = Vec<UserOrg>),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn orgs(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Vec<UserOrg>>> {
    let memberships = state.auth.orgs_of(&caller).await?;
    Ok(ApiJson(
        memberships
            .into_iter()
            .map(|m| UserOrg {
                id: m.org_id,
                name: m.org_name,
                role: m.role.as_str().to_owned(),
                is_admin: m.role.is_admin(),
                is_active: m.is_active,
            })
            .collect(),
    ))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/user/sessions", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Live sessions, newest first", body = Vec<SessionInfo>),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Vec<SessionInfo>>> {
    let current = caller.session.as_ref().map(|s| s.id.as_str());
    let sessions = state.auth.sessions_of(&caller, state.now()).await?;
    Ok(ApiJson(
        sessions
            .into_iter()
            .map(|s| SessionInfo {
                current: current == Some(s.id.as_str()),
                id: s.id,
                org_id: s.org_id,
                client: s.client,
                address: s.address,
                user_agent: s.user_agent,
                created_at: iso8601(from_millis(s.created_at)),
                last_renewed_at: s.last_renewed_at.map(|t| iso8601(from_millis(t))),
                renew_count: s.renew_count,
                expires_at: iso8601(from_millis(s.expires_at)),
            })
            .collect(),
    ))
}

/// End one of the caller's own sessions.
#[utoipa::path(delete, path = "/user/sessions/{id}", tag = "user",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 404, description = "No such session of yours", body = ErrorBody),
    ))]
async fn end_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.auth.end_session(&caller, &id, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
