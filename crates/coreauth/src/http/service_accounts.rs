//! `/admin/orgs/{org_id}/service-accounts/...`: an org's identities for its integrations, and
//! their keys (org admins).

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::apikeys::{created, key_request, listed_all, rotate_request, rotated};
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::service_accounts::{ServiceAccountPatch, ServiceAccountRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update, delete))
        .routes(routes!(add_key, list_keys))
        .routes(routes!(delete_key))
        .routes(routes!(rotate_key))
}

/// Create a service account in the org, with a role like a member's.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/service-accounts", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::CreateServiceAccountRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = proto::ServiceAccount),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "The org has as many service accounts as it may", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::CreateServiceAccountRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::ServiceAccount>)> {
    let account = state
        .service_accounts
        .create(&caller, org_id, &body.name, &body.role, state.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(view(account))))
}

/// The org's service accounts.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/service-accounts", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The org's service accounts", body = Vec<proto::ServiceAccount>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::ServiceAccount>>> {
    let accounts = state.service_accounts.list(&caller, org_id).await?;
    Ok(ApiJson(accounts.into_iter().map(view).collect()))
}

/// One service account.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/service-accounts/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The service account", body = proto::ServiceAccount),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such service account in this org", body = ErrorBody),
    ))]
async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<proto::ServiceAccount>> {
    let account = state.service_accounts.get(&caller, org_id, &id).await?;
    Ok(ApiJson(view(account)))
}

/// Rename it, change its role, or disable it (every key of it stops at once) or enable it.
#[utoipa::path(patch, path = "/admin/orgs/{org_id}/service-accounts/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id")),
    request_body = proto::PatchServiceAccountRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Updated", body = proto::ServiceAccount),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such service account in this org", body = ErrorBody),
        (status = 409, description = "The change would leave the org without an admin", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
    ApiJson(body): ApiJson<proto::PatchServiceAccountRequest>,
) -> ApiResult<ApiJson<proto::ServiceAccount>> {
    let patch = ServiceAccountPatch {
        name: body.name,
        role: body.role,
        is_active: body.is_active,
    };
    let account = state
        .service_accounts
        .update(&caller, org_id, &id, patch, state.now())
        .await?;
    Ok(ApiJson(view(account)))
}

/// Delete a service account and all its keys.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/service-accounts/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such service account in this org", body = ErrorBody),
        (status = 409, description = "A service account cannot delete itself", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .service_accounts
        .delete(&caller, org_id, &id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a key for the service account; the full key is shown only here.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/service-accounts/{id}/keys", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id")),
    request_body = proto::AddAuthHeaderRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = proto::AuthHeaderCreated),
        (status = 400, description = "Bad name, scopes or expiry", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org, or scopes beyond the calling key's", body = ErrorBody),
        (status = 404, description = "No such service account in this org", body = ErrorBody),
        (status = 409, description = "The key limit is reached", body = ErrorBody),
    ))]
async fn add_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
    ApiJson(body): ApiJson<proto::AddAuthHeaderRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::AuthHeaderCreated>)> {
    let (key, token) = state
        .service_accounts
        .add_key(&caller, org_id, &id, key_request(body), state.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(created(key, token))))
}

/// The service account's keys (`token` is only a recognisable prefix).
#[utoipa::path(get, path = "/admin/orgs/{org_id}/service-accounts/{id}/keys", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Its keys", body = Vec<proto::AuthHeader>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such service account in this org", body = ErrorBody),
    ))]
async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<Vec<proto::AuthHeader>>> {
    let keys = state.service_accounts.keys(&caller, org_id, &id).await?;
    Ok(ApiJson(listed_all(keys, state.now())))
}

/// Delete one of the service account's keys.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/service-accounts/{id}/keys/{key_id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id"), ("key_id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such key of this service account", body = ErrorBody),
    ))]
async fn delete_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id, key_id)): ApiPath<(i64, String, String)>,
) -> ApiResult<StatusCode> {
    state
        .service_accounts
        .delete_key(&caller, org_id, (&id, &key_id), state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace one of the service account's keys; the old one keeps working for the overlap.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/service-accounts/{id}/keys/{key_id}/rotate", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Service account id"), ("key_id" = String, Path, description = "Key id")),
    request_body = proto::RotateAuthHeaderRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The new key (shown this once) and the old one", body = proto::RotatedAuthHeader),
        (status = 400, description = "Bad overlap or expiry", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org, or the key's scopes exceed the calling key's", body = ErrorBody),
        (status = 404, description = "No such key of this service account", body = ErrorBody),
        (status = 409, description = "The key was already rotated, or has expired", body = ErrorBody),
    ))]
async fn rotate_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id, key_id)): ApiPath<(i64, String, String)>,
    ApiJson(body): ApiJson<proto::RotateAuthHeaderRequest>,
) -> ApiResult<ApiJson<proto::RotatedAuthHeader>> {
    let now = state.now();
    let (old, new, token) = state
        .service_accounts
        .rotate_key(&caller, org_id, (&id, &key_id), rotate_request(body), now)
        .await?;
    Ok(ApiJson(rotated(old, new, token, now)))
}

fn view(account: ServiceAccountRecord) -> proto::ServiceAccount {
    proto::ServiceAccount {
        id: account.uuid,
        name: account.name,
        org_id: account.org_id,
        role: account.role.as_str().to_owned(),
        is_active: account.is_active,
        created: iso8601(from_millis(account.created_at)),
    }
}
