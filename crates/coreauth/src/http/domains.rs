//! An org's claims to email domains (SPEC §11): `/admin/orgs/{orgId}/domains`. A claim is
//! pending, with a TXT record to publish, until `…/verify` finds it in the DNS or a platform
//! admin `…/approve`s it; only then does the domain sign in through the org's connections.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::sso::{DomainClaimRecord, verification_record};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, claim))
        .routes(routes!(withdraw))
        .routes(routes!(verify))
        .routes(routes!(approve))
}

/// An org's claims to email domains, pending and verified.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/domains", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The claims", body = [proto::DomainClaim]),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::DomainClaim>>> {
    let claims = state.sso.domain_claims(&caller, org_id).await?;
    Ok(ApiJson(claims.into_iter().map(view).collect()))
}

/// Claim an email domain for the org: pending, with the TXT record that proves it (verified at
/// once when a platform admin claims it).
#[utoipa::path(post, path = "/admin/orgs/{org_id}/domains", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::DomainClaimRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Claimed", body = proto::DomainClaim),
        (status = 200, description = "The org claimed it already: the claim as it stands", body = proto::DomainClaim),
        (status = 400, description = "Not a domain", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "A platform admin claimed a domain another org holds", body = ErrorBody),
    ))]
async fn claim(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::DomainClaimRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::DomainClaim>)> {
    let (claim, created) = state
        .sso
        .claim_domain(&caller, org_id, &body.domain, state.now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(view(claim))))
}

/// Look for the claim's TXT record in the DNS and, when it is there, verify the claim.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/domains/{domain}/verify", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("domain" = String, Path, description = "The claimed domain")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Verified", body = proto::DomainClaim),
        (status = 400, description = "Bad id or domain", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "The org has not claimed this domain", body = ErrorBody),
        (status = 409, description = "domain_not_verified: the TXT record is not there (the claim stays pending); or conflict: another org verified the domain", body = ErrorBody),
        (status = 502, description = "dns_unreachable: the DNS did not answer", body = ErrorBody),
    ))]
async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, domain)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<proto::DomainClaim>> {
    let claim = state
        .sso
        .verify_domain(&caller, org_id, &domain, state.now())
        .await?;
    Ok(ApiJson(view(claim)))
}

/// A platform admin's approval: the org's claim to the domain (made now if need be) is
/// verified without DNS.
#[utoipa::path(post, path = "/admin/orgs/{org_id}/domains/{domain}/approve", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("domain" = String, Path, description = "The domain")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Verified", body = proto::DomainClaim),
        (status = 400, description = "Bad id or domain", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a platform admin", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "Another org holds the domain", body = ErrorBody),
    ))]
async fn approve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, domain)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<proto::DomainClaim>> {
    let claim = state
        .sso
        .approve_domain(&caller, org_id, &domain, state.now())
        .await?;
    Ok(ApiJson(view(claim)))
}

/// Withdraw the org's claim: the domain no longer signs in through its connections.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/domains/{domain}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("domain" = String, Path, description = "The claimed domain")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = "Bad id or domain", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "The org has not claimed this domain", body = ErrorBody),
    ))]
async fn withdraw(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, domain)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .sso
        .withdraw_domain(&caller, org_id, &domain, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn view(claim: DomainClaimRecord) -> proto::DomainClaim {
    proto::DomainClaim {
        verification_record: proto::VerificationRecord {
            kind: "TXT".into(),
            name: claim.domain.clone(),
            value: verification_record(&claim),
        },
        org_id: claim.org_id,
        status: if claim.verified_at.is_some() {
            "verified"
        } else {
            "pending"
        }
        .into(),
        domain: claim.domain,
        created_at: claim.created_at,
        verified_at: claim.verified_at,
        verified_by: claim.verified_by,
    }
}
