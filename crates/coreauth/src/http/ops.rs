//! Operational endpoints that need no token: liveness, readiness, metrics, and the public keys.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiResult};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(jwks))
        .routes(routes!(integration_jwks))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = serde_json::Value)))]
async fn healthz() -> ApiJson<serde_json::Value> {
    ApiJson(serde_json::json!({ "status": "ok" }))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    ))]
async fn readyz(State(state): State<AppState>) -> ApiResult<ApiJson<serde_json::Value>> {
    state.store.ping().await?;
    Ok(ApiJson(serde_json::json!({ "status": "ready" })))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The public keys that verify EdDSA integration tokens (JWK Set): keys of their own, never
/// those of session tokens.
#[utoipa::path(get, path = "/.well-known/integrations/jwks.json", tag = "operations",
    responses((status = 200, description = "JWK Set", body = serde_json::Value)))]
async fn integration_jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        ApiJson(state.signer.integration_jwks()),
    )
}

/// The public keys that verify session tokens (JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "JWK Set", body = serde_json::Value)))]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        ApiJson(state.signer.jwks()),
    )
}
