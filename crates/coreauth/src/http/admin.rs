//! `/admin/...`: orgs, users and memberships (SPEC §7). Who may call what is decided in
//! `domain::admin`; these handlers only translate.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiQuery, ApiResult};
use super::extract::Caller;
use crate::domain::admin::UserRequest;
use crate::domain::org::{MembershipPatch, MembershipRecord, Name, Role};
use crate::domain::password::Password;
use crate::domain::user::{UserPatch, UserRecord, Username};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org))
        .routes(routes!(add_member))
        .routes(routes!(update_member))
        .routes(routes!(create_user))
        .routes(routes!(update_user))
        .routes(routes!(revoke_sessions))
}

/// Create an org (platform admins).
#[utoipa::path(post, path = "/admin/orgs", tag = "admin",
    request_body = proto::CreateOrgRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = proto::Org),
        (status = 400, description = "Bad name or domain", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a platform admin", body = ErrorBody),
    ))]
async fn create_org(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::CreateOrgRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::Org>)> {
    let org = state
        .admin
        .create_org(&caller, &body.name, &body.email_domains, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(proto::Org {
            id: org.id,
            name: org.name,
            email_domains: org.email_domains,
        }),
    ))
}

/// Create a user as a member of an org.
#[utoipa::path(post, path = "/admin/users", tag = "admin",
    request_body = proto::CreateUserRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = proto::User),
        (status = 400, description = "Bad email, name, role, or a password the policy refuses", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "The email or username is taken", body = ErrorBody),
    ))]
async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::CreateUserRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::User>)> {
    let request = UserRequest {
        email: body.email,
        password: Password::parse(body.password.into_inner())?,
        first: body.first,
        last: body.last,
        org_id: body.org_id,
        role: body.role,
        username: body.username,
    };
    let now = state.now();
    let org_id = request.org_id;
    let user = state.admin.create_user(&caller, request, now).await?;
    // The account exists whatever becomes of the message: a failure to queue it is logged,
    // and the person asks for a new link (`/user/email/verify/resend`).
    if let Err(e) = state
        .verification
        .send(&user, Some(org_id), &caller.origin, now)
        .await
    {
        tracing::warn!(
            user_id = user.id,
            "could not queue the verification message: {e}"
        );
    }
    Ok((StatusCode::CREATED, ApiJson(user_answer(user))))
}

/// Change a user's names or (de)activate them; deactivation ends all their sessions.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    request_body = proto::PatchUserRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Updated", body = proto::User),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such user in your orgs", body = ErrorBody),
        (status = 409, description = "You cannot deactivate yourself, or the username is taken", body = ErrorBody),
    ))]
async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::PatchUserRequest>,
) -> ApiResult<ApiJson<proto::User>> {
    let patch = UserPatch {
        first: body
            .first
            .map(|f| Name::parse("first", &f, false).map(Name::into_string))
            .transpose()?,
        last: body
            .last
            .map(|l| Name::parse("last", &l, true).map(Name::into_string))
            .transpose()?,
        is_active: body.is_active,
        username: body
            .username
            .map(|u| match u.trim() {
                "" => Ok(None),
                name => Username::parse(name).map(|u| Some(u.stored())),
            })
            .transpose()?,
    };
    let user = state
        .admin
        .update_user(&caller, id, patch, state.now())
        .await?;
    Ok(ApiJson(user_answer(user)))
}

/// End every session of a user.
#[utoipa::path(post, path = "/admin/users/{id}/sessions/revoke", tag = "admin",
    params(("id" = i64, Path, description = "User id"), proto::RevokeSessionsQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such user in your orgs", body = ErrorBody),
    ))]
async fn revoke_sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<proto::RevokeSessionsQuery>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .revoke_sessions_of(&caller, id, query.api_keys, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add an existing user to an org.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/members", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::AddMemberRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Added", body = proto::Membership),
        (status = 400, description = "Bad role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such user or org", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
    ))]
async fn add_member(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::AddMemberRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::Membership>)> {
    let membership = state
        .admin
        .add_member(&caller, org_id, body.user_id, &body.role, state.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(membership_answer(membership))))
}

/// Change a member's role or (de)activate the membership; deactivation ends that member's
/// sessions in the org.
#[utoipa::path(patch, path = "/admin/orgs/{org_id}/members/{user_id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("user_id" = i64, Path, description = "User id")),
    request_body = proto::PatchMemberRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Updated", body = proto::Membership),
        (status = 400, description = "Bad role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such membership", body = ErrorBody),
        (status = 409, description = "The org would have no active admin left", body = ErrorBody),
    ))]
async fn update_member(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<proto::PatchMemberRequest>,
) -> ApiResult<ApiJson<proto::Membership>> {
    let patch = MembershipPatch {
        role: body.role.as_deref().map(Role::parse).transpose()?,
        is_active: body.is_active,
    };
    let membership = state
        .admin
        .update_member(&caller, org_id, user_id, patch, state.now())
        .await?;
    Ok(ApiJson(membership_answer(membership)))
}

fn user_answer(user: UserRecord) -> proto::User {
    proto::User {
        id: user.id,
        uuid: user.uuid,
        email: user.email,
        first: user.first,
        last: user.last,
        is_active: user.is_active,
        username: user.username,
    }
}

fn membership_answer(m: MembershipRecord) -> proto::Membership {
    proto::Membership {
        user_id: m.user_id,
        org_id: m.org_id,
        role: m.role.as_str().to_owned(),
        is_active: m.is_active,
    }
}
