//! `/authheader/...` (seed 004): the caller's API keys; and the org admin's view of them.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;

use crate::domain::apikey::{ApiKeyRecord, KeyRequest, KeySelector, RotateRequest, key_state};
use crate::domain::clock::{from_millis, iso8601, to_millis};
use crate::domain::error::DomainError;
use crate::domain::scopes::Scopes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(list))
        .routes(routes!(delete_key))
        .routes(routes!(rotate))
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
        (status = 403, description = "unauthenticated, or forbidden: the calling key lacks keys:write, or asks for scopes beyond its own", body = ErrorBody),
        (status = 409, description = "The per-user key limit is reached", body = ErrorBody),
    ))]
async fn add(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::AddAuthHeaderRequest>,
) -> ApiResult<ApiJson<proto::AuthHeaderCreated>> {
    let (key, token) = state
        .keys
        .add(&caller, key_request(body), state.now())
        .await?;
    Ok(ApiJson(created(key, token)))
}

/// Replace one of the caller's keys with a new one; the old one keeps working for the overlap
/// (default 24 h, at most 7 days), then stops. Both show in the list with their state.
#[utoipa::path(post, path = "/authheader/{id}/rotate", tag = "authheader",
    params(("id" = String, Path, description = "Key id")),
    request_body = proto::RotateAuthHeaderRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The new key (shown this once) and the old one", body = proto::RotatedAuthHeader),
        (status = 400, description = "Bad overlap or expiry", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: the calling key lacks keys:write or the key's scopes", body = ErrorBody),
        (status = 404, description = "No such key of yours", body = ErrorBody),
        (status = 409, description = "The key was already rotated, or has expired", body = ErrorBody),
    ))]
async fn rotate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<proto::RotateAuthHeaderRequest>,
) -> ApiResult<ApiJson<proto::RotatedAuthHeader>> {
    let now = state.now();
    let (old, new, token) = state
        .keys
        .rotate(&caller, &id, rotate_request(body), now)
        .await?;
    Ok(ApiJson(rotated(old, new, token, now)))
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
    Ok(ApiJson(listed_all(keys, state.now())))
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
    Ok(ApiJson(listed_all(keys, state.now())))
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

pub(super) fn key_request(body: proto::AddAuthHeaderRequest) -> KeyRequest {
    KeyRequest {
        name: body.name,
        expires_at: body.expires_at,
        scopes: body.scopes,
        read_only: body.read_only,
    }
}

pub(super) fn rotate_request(body: proto::RotateAuthHeaderRequest) -> RotateRequest {
    RotateRequest {
        overlap_secs: body.overlap_seconds,
        expires_at: body.expires_at,
    }
}

pub(super) fn created(key: ApiKeyRecord, token: String) -> proto::AuthHeaderCreated {
    let scopes = Scopes::from_stored(&key.scopes);
    proto::AuthHeaderCreated {
        id: key.public_id,
        name: key.name,
        token,
        created: iso8601(from_millis(key.created_at)),
        expires_at: key.expires_at,
        scopes: scopes.names().into_iter().map(str::to_owned).collect(),
        read_only: scopes.read_only(),
    }
}

pub(super) fn rotated(
    old: ApiKeyRecord,
    new: ApiKeyRecord,
    token: String,
    now: OffsetDateTime,
) -> proto::RotatedAuthHeader {
    proto::RotatedAuthHeader {
        key: created(new, token),
        replaced: listed(old, to_millis(now)),
    }
}

pub(super) fn listed_all(keys: Vec<ApiKeyRecord>, now: OffsetDateTime) -> Vec<proto::AuthHeader> {
    let now_ms = to_millis(now);
    keys.into_iter().map(|key| listed(key, now_ms)).collect()
}

fn listed(key: ApiKeyRecord, now_ms: i64) -> proto::AuthHeader {
    let scopes = Scopes::from_stored(&key.scopes);
    proto::AuthHeader {
        state: key_state(&key, now_ms).to_owned(),
        id: key.public_id,
        name: key.name,
        token: key.prefix,
        created: iso8601(from_millis(key.created_at)),
        last_used: key.last_used_at.map(|t| iso8601(from_millis(t))),
        expires_at: key.expires_at,
        scopes: scopes.names().into_iter().map(str::to_owned).collect(),
        read_only: scopes.read_only(),
        replaced_by: key.replaced_by,
        user_id: key.user_id,
    }
}
