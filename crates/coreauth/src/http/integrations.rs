//! Integration tokens (SPEC §10): admins configure them per org; users mint them with
//! `POST /user/authenticate/{name}` (e.g. `productboard`, `qrveyComposerToken`).

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::integrations::{
    IntegrationKind, IntegrationRecord, IntegrationRequest, RemoteRequest,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(configure, remove))
        .routes(routes!(list))
        .routes(routes!(mint))
}

/// Create or replace an integration of an org: a JWT coreauth signs (`algorithm` HS256 with a
/// shared `secret`, or EdDSA), or a `remote` one whose tokens coreauth asks the portal's own
/// endpoint for, with a sealed API key.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/integrations/{name}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("name" = String, Path, description = "Integration name")),
    request_body = proto::IntegrationConfig,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Configured (the secret is not echoed)", body = proto::Integration),
        (status = 400, description = "Bad name, algorithm, secret, lifetime or claims; or a remote endpoint that is not https, is on a network coreauth may not reach, or has a bad header, key, timeout or field", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn configure(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, name)): ApiPath<(i64, String)>,
    ApiJson(body): ApiJson<proto::IntegrationConfig>,
) -> ApiResult<ApiJson<proto::Integration>> {
    let remote = body.remote.map(|r| RemoteRequest {
        url: r.url,
        api_key: r.api_key.into_inner().into(),
        api_key_header: r.api_key_header,
        timeout_secs: r.timeout_seconds,
        token_field: r.token_field,
        expires_at_field: r.expires_at_field,
    });
    let request = IntegrationRequest {
        algorithm: body.algorithm,
        secret: body.secret.map(proto::SecretText::into_inner),
        audience: body.audience,
        issuer: body.issuer,
        remote,
        lifetime_secs: body.lifetime_seconds,
        claims: body.claims,
        custom_claims: body.custom_claims,
        allow_api_keys: body.allow_api_keys,
    };
    let record = state
        .integrations
        .configure(&caller, org_id, &name, request, state.now())
        .await?;
    Ok(ApiJson(view(record)))
}

/// An org's integrations (secrets never shown).
#[utoipa::path(get, path = "/admin/orgs/{org_id}/integrations", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The integrations", body = Vec<proto::Integration>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::Integration>>> {
    let records = state.integrations.list(&caller, org_id).await?;
    Ok(ApiJson(records.into_iter().map(view).collect()))
}

/// Remove an integration.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/integrations/{name}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("name" = String, Path, description = "Integration name")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such integration", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, name)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .integrations
        .remove(&caller, org_id, &name, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A short-lived token that signs the caller in to a third-party portal configured for their
/// org (e.g. `productboard`, `qrveyComposerToken`). For a remote integration coreauth POSTs the
/// caller's fields to the portal's endpoint and returns the token it answers.
#[utoipa::path(post, path = "/user/authenticate/{name}", tag = "authenticate",
    params(("name" = String, Path, description = "Integration name, e.g. productboard or qrveyComposerToken")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The token", body = proto::IntegrationToken),
        (status = 403, description = "unauthenticated, or an API key where the integration does not allow them", body = ErrorBody),
        (status = 404, description = "No such integration in this org", body = ErrorBody),
        (status = 502, description = "integration_unavailable: a remote integration's endpoint timed out, could not be reached, answered an error status, or answered no token (or more than 64 KiB)", body = ErrorBody),
    ))]
async fn mint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<ApiJson<proto::IntegrationToken>> {
    let minted = state.integrations.mint(&caller, &name, state.now()).await?;
    Ok(ApiJson(proto::IntegrationToken {
        token: minted.token,
        expires_at: minted.expires_at,
    }))
}

fn view(record: IntegrationRecord) -> proto::Integration {
    let (algorithm, audience, issuer, remote) = match record.kind {
        IntegrationKind::Jwt {
            algorithm,
            audience,
            issuer,
        } => (
            Some(algorithm.as_str().to_owned()),
            Some(audience),
            issuer,
            None,
        ),
        IntegrationKind::Remote(endpoint) => (
            None,
            None,
            None,
            Some(proto::RemoteIntegration {
                url: endpoint.url,
                api_key_header: endpoint.api_key_header,
                timeout_seconds: endpoint.timeout_secs,
                token_field: endpoint.token_field,
                expires_at_field: endpoint.expires_at_field,
            }),
        ),
    };
    proto::Integration {
        has_secret: record.sealed_secret.is_some(),
        name: record.name,
        algorithm,
        audience,
        issuer,
        remote,
        lifetime_seconds: record.lifetime_secs,
        claims: record.claims,
        custom_claims: record.custom_claims,
        allow_api_keys: record.allow_api_keys,
    }
}
