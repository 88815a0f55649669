//! `/authheader/...` (seed 004): the caller's API keys; and the org admin's view of them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use coreauth_proto as proto;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::apikey::{ApiKeyRecord, KeyRequest, KeySelector};
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::error::DomainError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/authheader/add", post(add))
        .route("/authheader/list", get(list))
        .route("/authheader/delete", post(delete_key))
        .route("/admin/orgs/{org_id}/authheaders", get(list_in_org))
        .route(
            "/admin/orgs/{org_id}/authheaders/{id}",
            delete(delete_in_org),
        )
}

async fn add(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::AddAuthHeaderRequest>,
) -> ApiResult<Json<proto::AuthHeaderCreated>> {
    let request = KeyRequest {
        name: body.name,
        expires_at: body.expires_at,
        read_only: body.read_only,
    };
    let (key, token) = state.keys.add(&caller, request, state.now()).await?;
    Ok(Json(proto::AuthHeaderCreated {
        id: key.public_id,
        name: key.name,
        token,
        created: iso8601(from_millis(key.created_at)),
        expires_at: key.expires_at,
        read_only: key.read_only,
    }))
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Vec<proto::AuthHeader>>> {
    let keys = state.keys.list(&caller).await?;
    Ok(Json(keys.into_iter().map(listed).collect()))
}

async fn delete_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::DeleteAuthHeaderRequest>,
) -> ApiResult<Json<proto::MessageBody>> {
    let which = match (body.text, body.id) {
        (Some(text), None) => KeySelector::FullKey(text.into_inner()),
        (None, Some(id)) => KeySelector::Id(id),
        _ => {
            return Err(DomainError::invalid(
                "give either `text` (the full key) or `id`, not both",
            )
            .into());
        }
    };
    state.keys.delete(&caller, which, state.now()).await?;
    Ok(Json(proto::MessageBody {
        message: "Success".into(),
    }))
}

async fn list_in_org(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Vec<proto::AuthHeader>>> {
    let keys = state.keys.list_in_org(&caller, org_id).await?;
    Ok(Json(keys.into_iter().map(listed).collect()))
}

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
