//! `POST /token/introspect` (RFC 7662): lets a service behind coreauth ask whether a session
//! token or API key is honoured right now — the one thing an offline JWT check cannot see
//! before the token expires is a logout. Any authenticated caller may ask (a read-only API key
//! too); the answer for a bad token is `{"active": false}`, never an error status.

use axum::extract::State;
use coreauth_proto::{ErrorBody, IntrospectRequest, IntrospectResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiResult};
use super::extract::Caller;
use crate::domain::origin::RequestOrigin;
use crate::domain::session::Principal;
use crate::domain::session::VerifiedToken;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(introspect))
}

/// Is this session token or API key honoured right now, and whose is it? (RFC 7662)
#[utoipa::path(post, path = "/token/introspect", tag = "authenticate",
    request_body = IntrospectRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"active\": false}` for anything invalid, expired or revoked", body = IntrospectResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "The caller is unauthenticated", body = ErrorBody),
    ))]
async fn introspect(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<IntrospectRequest>,
) -> ApiResult<ApiJson<IntrospectResponse>> {
    // The introspected credential is presented by someone else, from elsewhere: record only
    // the request id, not the asking service's address, with its use.
    let origin = RequestOrigin {
        request_id: caller.origin.request_id,
        ..RequestOrigin::default()
    };
    let found = state
        .auth
        .introspect(body.token.expose(), origin, state.now())
        .await?;
    Ok(ApiJson(
        found.map_or_else(IntrospectResponse::default, |principal| {
            active(principal, state.signer.issuer())
        }),
    ))
}

fn active(principal: Principal, issuer: &str) -> IntrospectResponse {
    let (sid, exp, iat) = match principal.token.as_deref().map(VerifiedToken::claims) {
        Some(claims) => (Some(claims.sid.clone()), Some(claims.exp), Some(claims.iat)),
        None => (None, principal.key_expires_at.map(|ms| ms / 1000), None),
    };
    IntrospectResponse {
        active: true,
        sub: Some(principal.user_uuid.to_string()),
        uid: Some(principal.user_id),
        org: Some(principal.org_id),
        role: Some(principal.role.as_str().to_owned()),
        sid,
        exp,
        iat,
        iss: Some(issuer.to_owned()),
        token_type: Some(principal.method.as_str().to_owned()),
    }
}
