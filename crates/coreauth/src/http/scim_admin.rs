//! `/admin/orgs/{org_id}/scim/tokens` (an org's directory tokens) and
//! `/admin/orgs/{org_id}/group-roles` (the roles its groups give), for the org's admins.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::clock::{from_millis, iso8601};
use crate::store::records::{GroupRoles, ScimTokenRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(group_roles, set_group_roles))
}

/// A bearer token for the org's directory (Entra ID, Okta) to provision users and groups
/// through `/scim/v2/`: shown once, kept hashed. It reaches this org only.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/scim/tokens", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::CreateScimTokenRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Made; the token is in the answer, never again", body = proto::ScimTokenCreated),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "The org has as many tokens as it may", body = ErrorBody),
    ))]
async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::CreateScimTokenRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::ScimTokenCreated>)> {
    let (record, token) = state
        .scim
        .create_token(&caller, org_id, &body.name, state.now())
        .await?;
    let view = view(record);
    Ok((
        StatusCode::CREATED,
        ApiJson(proto::ScimTokenCreated {
            id: view.id,
            name: view.name,
            created: view.created,
            token,
            base_url: state.scim.base().to_owned(),
        }),
    ))
}

/// The org's directory tokens (never the tokens themselves).
#[utoipa::path(get, path = "/admin/orgs/{org_id}/scim/tokens", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The tokens", body = Vec<proto::ScimToken>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list_tokens(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::ScimToken>>> {
    let tokens = state.scim.tokens(&caller, org_id).await?;
    Ok(ApiJson(tokens.into_iter().map(view).collect()))
}

/// Revoke a directory token: its next request is refused.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/scim/tokens/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Token id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such token in this org", body = ErrorBody),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .scim
        .revoke_token(&caller, org_id, &id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which role each directory group gives in the org.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/group-roles", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The table", body = proto::GroupRoles),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn group_roles(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<proto::GroupRoles>> {
    let roles = state.scim.group_roles(&caller, org_id).await?;
    Ok(ApiJson(table(&roles)))
}

/// Replace the table. The members of the directory's groups get the roles it gives at once; a
/// member in no mapped group is a member; the org's last active admin keeps the role.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/group-roles", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::GroupRoles,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The table as stored", body = proto::GroupRoles),
        (status = 400, description = "Bad group name or role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn set_group_roles(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::GroupRoles>,
) -> ApiResult<ApiJson<proto::GroupRoles>> {
    let roles = state
        .scim
        .set_group_roles(&caller, org_id, &body.groups, state.now())
        .await?;
    Ok(ApiJson(table(&roles)))
}

fn table(roles: &GroupRoles) -> proto::GroupRoles {
    proto::GroupRoles {
        groups: roles
            .iter()
            .map(|(group, role)| (group.clone(), role.as_str().to_owned()))
            .collect(),
    }
}

fn view(token: ScimTokenRecord) -> proto::ScimToken {
    proto::ScimToken {
        id: token.public_id,
        name: token.name,
        created: iso8601(from_millis(token.created_at)),
        last_used: token.last_used_at.map(|at| iso8601(from_millis(at))),
    }
}
