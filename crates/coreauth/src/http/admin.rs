//! `/admin/...`: orgs, users and memberships (SPEC §7). Who may call what is decided in
//! `domain::admin`; these handlers only translate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{patch, post};
use axum::{Json, Router};
use coreauth_proto as proto;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::admin::UserRequest;
use crate::domain::org::{MembershipPatch, MembershipRecord, Name, Role};
use crate::domain::password::Password;
use crate::domain::user::{UserPatch, UserRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/orgs", post(create_org))
        .route("/admin/orgs/{org_id}/members", post(add_member))
        .route(
            "/admin/orgs/{org_id}/members/{user_id}",
            patch(update_member),
        )
        .route("/admin/users", post(create_user))
        .route("/admin/users/{id}", patch(update_user))
        .route("/admin/users/{id}/sessions/revoke", post(revoke_sessions))
}

async fn create_org(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::CreateOrgRequest>,
) -> ApiResult<(StatusCode, Json<proto::Org>)> {
    let org = state
        .admin
        .create_org(&caller, &body.name, &body.email_domains, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(proto::Org {
            id: org.id,
            name: org.name,
            email_domains: org.email_domains,
        }),
    ))
}

async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<proto::User>)> {
    let request = UserRequest {
        email: body.email,
        password: Password::parse(body.password.into_inner())?,
        first: body.first,
        last: body.last,
        org_id: body.org_id,
        role: body.role,
    };
    let user = state
        .admin
        .create_user(&caller, request, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(user_answer(user))))
}

async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::PatchUserRequest>,
) -> ApiResult<Json<proto::User>> {
    let patch = UserPatch {
        first: body
            .first
            .map(|f| Name::parse("first", &f, false))
            .transpose()?,
        last: body
            .last
            .map(|l| Name::parse("last", &l, true))
            .transpose()?,
        is_active: body.is_active,
    };
    let user = state
        .admin
        .update_user(&caller, id, patch, state.now())
        .await?;
    Ok(Json(user_answer(user)))
}

async fn revoke_sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .revoke_sessions_of(&caller, id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_member(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<proto::Membership>)> {
    let membership = state
        .admin
        .add_member(&caller, org_id, body.user_id, &body.role, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(membership_answer(membership))))
}

async fn update_member(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<proto::PatchMemberRequest>,
) -> ApiResult<Json<proto::Membership>> {
    let patch = MembershipPatch {
        role: body.role.as_deref().map(Role::parse).transpose()?,
        is_active: body.is_active,
    };
    let membership = state
        .admin
        .update_member(&caller, org_id, user_id, patch, state.now())
        .await?;
    Ok(Json(membership_answer(membership)))
}

fn user_answer(user: UserRecord) -> proto::User {
    proto::User {
        id: user.id,
        uuid: user.uuid,
        email: user.email,
        first: user.first,
        last: user.last,
        is_active: user.is_active,
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
