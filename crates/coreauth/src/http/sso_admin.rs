//! An org's SSO connections: `/admin/orgs/{orgId}/sso/connections` (several per org, each with
//! its preset, claim mapping and domains) and SPEC §7's `/admin/orgs/{orgId}/sso`, which sets the
//! connection named `default`; and the links of accounts to identities that platform admins
//! manage, `/admin/users/{userId}/sso-identities`.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::sso::{
    ClaimMapping, ConnectionView, MappingRequest, SamlRequest, SsoIdentityRecord, SsoRequest,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(configure, get_config, remove))
        .routes(routes!(list, create))
        .routes(routes!(get_connection, update, delete_connection))
        .routes(routes!(identities, link_identity, unlink_identity))
}

/// The identities at SSO providers linked to an account (platform admins only).
#[utoipa::path(get, path = "/admin/users/{user_id}/sso-identities", tag = "admin",
    params(("user_id" = i64, Path, description = "User id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The linked identities", body = [proto::SsoIdentity]),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a platform admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
async fn identities(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::SsoIdentity>>> {
    let linked = state.sso.identities_of(&caller, user_id).await?;
    Ok(ApiJson(linked.into_iter().map(identity_view).collect()))
}

/// Link an account to its identity at a connection's provider, so its first SSO sign-in finds
/// it (platform admins only; an account's owner links it from a password session instead).
#[utoipa::path(post, path = "/admin/users/{user_id}/sso-identities", tag = "admin",
    params(("user_id" = i64, Path, description = "User id")),
    request_body = proto::SsoIdentityLink,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Linked", body = proto::SsoIdentity),
        (status = 400, description = "Bad id or subject", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a platform admin", body = ErrorBody),
        (status = 404, description = "No such user or connection", body = ErrorBody),
        (status = 409, description = "The identity is linked already, or the user is not an active member of the connection's org", body = ErrorBody),
    ))]
async fn link_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::SsoIdentityLink>,
) -> ApiResult<(StatusCode, ApiJson<proto::SsoIdentity>)> {
    let linked = state
        .sso
        .link_identity(
            &caller,
            user_id,
            body.connection_id,
            &body.subject,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, ApiJson(identity_view(linked))))
}

/// Undo an account's link to an identity at a connection's provider (platform admins only).
#[utoipa::path(delete, path = "/admin/users/{user_id}/sso-identities", tag = "admin",
    params(("user_id" = i64, Path, description = "User id")),
    request_body = proto::SsoIdentityLink,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 400, description = "Bad id or subject", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a platform admin", body = ErrorBody),
        (status = 404, description = "No such connection or link", body = ErrorBody),
    ))]
async fn unlink_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::SsoIdentityLink>,
) -> ApiResult<StatusCode> {
    state
        .sso
        .unlink_identity(
            &caller,
            user_id,
            body.connection_id,
            &body.subject,
            state.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn identity_view(identity: SsoIdentityRecord) -> proto::SsoIdentity {
    proto::SsoIdentity {
        org_id: identity.org_id,
        issuer: identity.issuer,
        subject: identity.subject,
        user_id: identity.user_id,
        created_at: identity.created_at,
    }
}

fn mapping_request(claims: Option<proto::ClaimMappingRequest>) -> MappingRequest {
    let claims = claims.unwrap_or_default();
    MappingRequest {
        email_claims: claims.email_claims,
        trust_unverified_email: claims.trust_unverified_email,
        groups_claim: claims.groups_claim,
        role_mapping: claims.role_mapping,
        default_role: claims.default_role,
    }
}

fn connection_request(body: proto::SsoConnectionRequest) -> SsoRequest {
    SsoRequest {
        name: body.name,
        preset: body.preset.unwrap_or_else(|| "generic".into()),
        mapping: mapping_request(body.claims),
        issuer: body.issuer,
        client_id: body.client_id,
        client_secret: body.client_secret.into_inner(),
        email_domains: body.email_domains,
        allow_jit: body.allow_jit,
        allow_password: body.allow_password,
        redirect_allow_list: body.redirect_allow_list,
        saml: body.saml.map(|saml| SamlRequest {
            metadata_xml: saml.metadata_xml,
            metadata_url: saml.metadata_url,
            entity_id: saml.entity_id,
            sso_url: saml.sso_url,
            certificates: saml.certificates,
            name_id_format: saml.name_id_format,
            want_assertions_signed: saml.want_assertions_signed,
            want_response_signed: saml.want_response_signed,
            clock_skew_seconds: saml.clock_skew_seconds,
            allow_idp_initiated: saml.allow_idp_initiated,
            first_name_attribute: saml.first_name_attribute,
            last_name_attribute: saml.last_name_attribute,
        }),
    }
}

/// Configure an org's OpenID Connect provider: its connection named `default`.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/sso", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::SsoConfigRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Configured (the secret is not echoed); domains an org admin adds stay pending until verified", body = proto::SsoConfig),
        (status = 400, description = "Bad issuer, client, domains, mapping or allow-list", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "A platform admin set a domain another org holds", body = ErrorBody),
    ))]
async fn configure(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::SsoConfigRequest>,
) -> ApiResult<ApiJson<proto::SsoConfig>> {
    let request = SsoRequest {
        name: crate::domain::sso::DEFAULT_CONNECTION.into(),
        preset: body.preset.unwrap_or_else(|| "generic".into()),
        mapping: mapping_request(body.claims),
        issuer: body.issuer,
        client_id: body.client_id,
        client_secret: body.client_secret.into_inner(),
        email_domains: body.email_domains,
        allow_jit: body.allow_jit,
        allow_password: body.allow_password,
        redirect_allow_list: body.redirect_allow_list,
        saml: None,
    };
    let saved = state
        .sso
        .configure(&caller, org_id, request, state.now())
        .await?;
    Ok(ApiJson(config_view(&state, saved)))
}

/// An org's SSO settings: its connection named `default` (or its first).
#[utoipa::path(get, path = "/admin/orgs/{org_id}/sso", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The settings", body = proto::SsoConfig),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No SSO configured", body = ErrorBody),
    ))]
async fn get_config(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<proto::SsoConfig>> {
    let view = state.sso.connection(&caller, org_id, None).await?;
    Ok(ApiJson(config_view(&state, view)))
}

/// Remove an org's SSO, every connection: its users log in with passwords again.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/sso", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No SSO configured", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.sso.remove(&caller, org_id, None, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An org's SSO connections, oldest first.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/sso/connections", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The connections", body = [proto::SsoConnection]),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::SsoConnection>>> {
    let views = state.sso.connections(&caller, org_id).await?;
    Ok(ApiJson(
        views
            .into_iter()
            .map(|v| connection_view(&state, v))
            .collect(),
    ))
}

/// Add an SSO connection to an org (Entra for staff, ADFS for a subsidiary, …).
#[utoipa::path(post, path = "/admin/orgs/{org_id}/sso/connections", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::SsoConnectionRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Added (the secret is not echoed); domains an org admin adds stay pending until verified", body = proto::SsoConnection),
        (status = 400, description = "Bad name, preset, issuer, client, domains, mapping or allow-list", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "The name or a domain is another connection's of the org, or a platform admin set a domain another org holds", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::SsoConnectionRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::SsoConnection>)> {
    let saved = state
        .sso
        .save_connection(&caller, org_id, None, connection_request(body), state.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(connection_view(&state, saved))))
}

/// One of an org's SSO connections.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/sso/connections/{connection_id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("connection_id" = i64, Path, description = "Connection id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = proto::SsoConnection),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such connection in this org", body = ErrorBody),
    ))]
async fn get_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, connection_id)): ApiPath<(i64, i64)>,
) -> ApiResult<ApiJson<proto::SsoConnection>> {
    let view = state
        .sso
        .connection(&caller, org_id, Some(connection_id))
        .await?;
    Ok(ApiJson(connection_view(&state, view)))
}

/// Replace one of an org's SSO connections.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/sso/connections/{connection_id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("connection_id" = i64, Path, description = "Connection id")),
    request_body = proto::SsoConnectionRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Replaced (the secret is not echoed)", body = proto::SsoConnection),
        (status = 400, description = "Bad name, preset, issuer, client, domains, mapping or allow-list", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such connection in this org", body = ErrorBody),
        (status = 409, description = "The name or a domain is another connection's of the org, or a platform admin set a domain another org holds", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, connection_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<proto::SsoConnectionRequest>,
) -> ApiResult<ApiJson<proto::SsoConnection>> {
    let saved = state
        .sso
        .save_connection(
            &caller,
            org_id,
            Some(connection_id),
            connection_request(body),
            state.now(),
        )
        .await?;
    Ok(ApiJson(connection_view(&state, saved)))
}

/// Remove one of an org's SSO connections (the org's claims to its domains stay).
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/sso/connections/{connection_id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("connection_id" = i64, Path, description = "Connection id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such connection in this org", body = ErrorBody),
    ))]
async fn delete_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, connection_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    state
        .sso
        .remove(&caller, org_id, Some(connection_id), state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn mapping_view(claims: ClaimMapping) -> proto::ClaimMapping {
    proto::ClaimMapping {
        email_claims: claims.email_claims,
        trust_unverified_email: claims.trust_unverified_email,
        groups_claim: claims.groups_claim,
        role_mapping: claims.role_mapping,
        default_role: claims.default_role.unwrap_or_else(|| "none".into()),
    }
}

fn connection_view(state: &AppState, view: ConnectionView) -> proto::SsoConnection {
    let c = view.connection;
    proto::SsoConnection {
        id: c.id,
        org_id: c.org_id,
        name: c.name,
        preset: c.preset,
        issuer: c.issuer,
        client_id: c.client_id,
        email_domains: view.verified_domains,
        pending_domains: view.pending_domains,
        claims: mapping_view(c.claims),
        allow_jit: c.allow_jit,
        allow_password: c.allow_password,
        redirect_allow_list: c.redirect_allow_list,
        redirect_uri: state.sso.callback_url(),
        protocol: if c.saml.is_some() { "saml" } else { "oidc" }.into(),
        saml: c.saml.map(|s| proto::SamlConnection {
            sso_url: s.sso_url,
            certificates: s.certificates,
            name_id_format: s.name_id_format,
            want_assertions_signed: s.want_assertions_signed,
            want_response_signed: s.want_response_signed,
            clock_skew_seconds: s.clock_skew_seconds,
            allow_idp_initiated: s.allow_idp_initiated,
            first_name_attribute: s.first_name_attribute,
            last_name_attribute: s.last_name_attribute,
            metadata_url: s.metadata_url,
            sp_entity_id: state.sso.saml_entity_id(c.id),
            acs_url: state.sso.saml_acs_url(),
            sp_certificate: s.sp_certificate,
        }),
    }
}

fn config_view(state: &AppState, view: ConnectionView) -> proto::SsoConfig {
    let c = view.connection;
    proto::SsoConfig {
        org_id: c.org_id,
        connection_id: c.id,
        issuer: c.issuer,
        client_id: c.client_id,
        email_domains: view.verified_domains,
        pending_domains: view.pending_domains,
        allow_jit: c.allow_jit,
        allow_password: c.allow_password,
        redirect_allow_list: c.redirect_allow_list,
        redirect_uri: state.sso.callback_url(),
    }
}
