//! `/authheader/...` (seed 004): the caller's API keys; and the org admin's view of them.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::apikey::{ApiKeyRecord, KeyRequest, KeySelector};
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::error::DomainError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(list))
        .routes(routes!(delete_key))
        .routes(routes!(list_in_org))
        .routes(routes!(delete_in_org))
}

/// Create an API key for the caller in the caller's org; the full key is shown only here.
#[utoipa::path(post, path = "/authheader/add", tag = "authheader",
    request_body = proto::AddAuthHeaderRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Auth header created successfully", body = proto::AuthHeaderCreated),
        (status = 400, description = "Bad name or expiry", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden for a read-only key", body = ErrorBody),
        (status = 409, description = "The per-user key limit is reached", body = ErrorBody),
    ))]
async fn add(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::AddAuthHeaderRequest>,
) -> ApiResult<ApiJson<proto::AuthHeaderCreated>> {
    let request = KeyRequest {
        name: body.name,
        expires_at: body.expires_at,
        read_only: body.read_only,
    };
    let (key, token) = state.keys.add(&caller, request, state.now()).await?;
    Ok(ApiJson(proto::AuthHeaderCreated {
        id: key.public_id,
        name: key.name,
        token,
        created: iso8601(from_millis(key.created_at)),
        expires_at: key.expires_at,
        read_only: key.read_only,
    }))
}

/// The caller's API keys in the caller's org (`token` is only a recognisable prefix).
#[utoipa::path(get, path = "/authheader/list", tag = "authheader",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "List of auth headers", body = Vec<proto::AuthHeader>),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Vec<proto::AuthHeader>>> {
    let keys = state.keys.list(&caller).await?;
    Ok(ApiJson(keys.into_iter().map(listed).collect()))
}

/// Delete one of the caller's keys: by the full key (`text`), by the `token` the list shows
/// for it (also as `text`), or by `id`.
#[utoipa::path(post, path = "/authheader/delete", tag = "authheader",
    request_body = proto::DeleteAuthHeaderRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Auth header deleted successfully", body = proto::MessageBody),
        (status = 400, description = "Neither or both of text and id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden for a read-only key", body = ErrorBody),
        (status = 404, description = "No such key of yours", body = ErrorBody),
        (status = 409, description = "Several of your keys start with this listed token", body = ErrorBody),
    ))]
async fn delete_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::DeleteAuthHeaderRequest>,
) -> ApiResult<ApiJson<proto::MessageBody>> {
    let which = match (body.text, body.id) {
        (Some(text), None) => KeySelector::FullKey(text.into_inner()),
        (None, Some(id)) => KeySelector::Id(id),
        _ => {
            return Err(DomainError::invalid(
                "give either `text` (the full key, or the token the list shows) or `id`, not both",
            )
            .into());
        }
    };
    state.keys.delete(&caller, which, state.now()).await?;
    Ok(ApiJson(proto::MessageBody {
        message: "Success".into(),
    }))
}

/// Every API key of an org's members (org admins).
#[utoipa::path(get, path = "/admin/orgs/{org_id}/authheaders", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The org's keys", body = Vec<proto::AuthHeader>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list_in_org(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::AuthHeader>>> {
    let keys = state.keys.list_in_org(&caller, org_id).await?;
    Ok(ApiJson(keys.into_iter().map(listed).collect()))
}

/// Delete a member's API key (org admins).
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/authheaders/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such key in this org", body = ErrorBody),
    ))]
async fn delete_in_org(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .keys
        .delete_in_org(&caller, org_id, &id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn listed(key: ApiKeyRecord) -> proto::AuthHeader {
    proto::AuthHeader {
        id: key.public_id,
        name: key.name,
        token: key.prefix,
        created: iso8601(from_millis(key.created_at)),
        last_used: key.last_used_at.map(|t| iso8601(from_millis(t))),
        expires_at: key.expires_at,
        read_only: key.read_only,
        user_id: key.user_id,
    }
}
