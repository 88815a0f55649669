//! Operational endpoints: liveness, readiness and the public keys, which need no token, and
//! the metrics, which do (or are served on a listener of their own).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiResult};
use super::{AppState, MetricsAccess};
use crate::domain::error::DomainError;

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
    state.auth.ping().await?;
    Ok(ApiJson(serde_json::json!({ "status": "ready" })))
}

/// Prometheus metrics (OpenMetrics text), for the bearer of `COREAUTH_METRICS_TOKEN`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String),
        (status = 403, description = "No metrics token, or a wrong one", body = ErrorBody),
        (status = 404, description = "Metrics are served on a listener of their own", body = ErrorBody),
    ))]
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    match &state.metrics_access {
        MetricsAccess::Elsewhere => Err(DomainError::NotFound("endpoint").into()),
        MetricsAccess::Closed => Err(DomainError::ForbiddenBecause(
            "metrics are off: set COREAUTH_METRICS_TOKEN or COREAUTH_METRICS_LISTEN".into(),
        )
        .into()),
        MetricsAccess::Token(expected) => {
            let presented = super::extract::authorization(&headers)?
                .and_then(|v| v.to_str().ok())
                .and_then(coreauth_proto::credential_from_header)
                .unwrap_or("");
            let expected = expected.expose_secret().as_bytes();
            if bool::from(presented.as_bytes().ct_eq(expected)) {
                Ok(metrics_text(&state).into_response())
            } else {
                Err(DomainError::Unauthenticated.into())
            }
        }
    }
}

/// The router of `COREAUTH_METRICS_LISTEN`: `/metrics` without a token, nothing else (its
/// description stays out of the API's document: this listener is the operator's).
pub fn metrics_router(state: AppState) -> axum::Router {
    let (router, _) = OpenApiRouter::new()
        .routes(routes!(metrics_on_own_listener))
        .split_for_parts();
    router.with_state(state)
}

/// Prometheus metrics on `COREAUTH_METRICS_LISTEN`, which only the scraper reaches.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String)))]
async fn metrics_on_own_listener(State(state): State<AppState>) -> impl IntoResponse {
    metrics_text(&state)
}

/// The metrics as Prometheus scrapes them.
pub fn metrics_text(state: &AppState) -> impl IntoResponse + use<> {
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
