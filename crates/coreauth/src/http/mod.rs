//! The HTTP layer: axum routers per area, extractors, and the mapping of domain errors to the
//! spec's error body. Handlers extract, call one domain function, and translate the answer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::domain::admin::Admin;
use crate::domain::apikey::ApiKeys;
use crate::domain::audit::Audit;
use crate::domain::auth::Auth;
use crate::domain::clock::Clock;
use crate::domain::credentials::Credentials;
use crate::domain::integrations::Integrations;
use crate::domain::invitations::Invitations;
use crate::domain::mail::settings::MailSettings;
use crate::domain::mfa::Mfa;
use crate::domain::recovery::PasswordRecovery;
use crate::domain::scim::Scim;
use crate::domain::service_accounts::ServiceAccounts;
use crate::domain::signing_keys::SigningKeys;
use crate::domain::sso::Sso;
use crate::domain::throttle::Throttle;
use crate::domain::tokens::TokenSigner;
use crate::domain::verification::EmailVerification;

mod admin;
mod apikeys;
pub mod audit;
mod auth;
mod browser;
pub mod client_address;
pub mod connections;
mod docs;
mod domains;
mod email_settings;
pub mod error;
pub mod extract;
mod integrations;
mod introspect;
mod invitations;
pub mod limits;
mod link_pages;
pub mod metrics;
mod mfa;
mod oauth;
pub mod ops;
mod passwords;
mod recovery;
mod saml;
mod scim;
mod scim_admin;
pub mod scopes;
mod service_accounts;
mod sso;
mod sso_admin;
mod sso_device;
mod users;

pub use connections::ConnectionLimits;
pub use limits::HttpLimits;
pub use metrics::Metrics;

/// Requests larger than this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler may reach. Cloned for every request that extracts it, so it is one `Arc`
/// (one counter to bump) around the parts rather than a dozen.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// Who may read `/metrics` on the main listener (`COREAUTH_METRICS_TOKEN`,
/// `COREAUTH_METRICS_LISTEN`): the metrics describe the service's traffic, logins and failures,
/// which is nobody's business but the operator's.
#[derive(Clone)]
pub enum MetricsAccess {
    /// Callers presenting this bearer token.
    Token(secrecy::SecretString),
    /// Nobody here: they are served on a listener of their own.
    Elsewhere,
    /// Nobody: the operator chose neither.
    Closed,
}

pub struct AppParts {
    pub auth: Arc<Auth>,
    pub admin: Arc<Admin>,
    pub keys: Arc<ApiKeys>,
    pub service_accounts: Arc<ServiceAccounts>,
    pub recovery: Arc<PasswordRecovery>,
    pub invitations: Arc<Invitations>,
    pub verification: Arc<EmailVerification>,
    pub mail_settings: Arc<MailSettings>,
    pub audit: Arc<Audit>,
    pub credentials: Arc<Credentials>,
    pub mfa: Arc<Mfa>,
    pub integrations: Arc<Integrations>,
    pub throttle: Arc<Throttle>,
    pub sso: Arc<Sso>,
    pub scim: Arc<Scim>,
    pub signer: Arc<TokenSigner>,
    pub signing_keys: Arc<SigningKeys>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub metrics_access: MetricsAccess,
}

impl AppParts {
    /// The time of this request, read once and passed down.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

/// Every API route, each with its OpenAPI description: routes are only ever added through
/// utoipa's `routes!`, so the document cannot miss one.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(auth::routes())
        .merge(users::routes())
        .merge(admin::routes())
        .merge(apikeys::routes())
        .merge(service_accounts::routes())
        .merge(audit::routes())
        .merge(passwords::routes())
        .merge(recovery::routes())
        .merge(invitations::routes())
        .merge(email_settings::routes())
        .merge(link_pages::routes())
        .merge(mfa::routes())
        .merge(integrations::routes())
        .merge(sso::routes())
        .merge(saml::routes())
        .merge(sso_admin::routes())
        .merge(scim_admin::routes())
        .merge(sso_device::routes())
        .merge(domains::routes())
        .merge(introspect::routes())
        .merge(oauth::routes())
        .merge(ops::routes())
        .merge(docs::routes())
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes_and_document().1
}

/// The routes, and their document completed with the answers every operation can give.
fn api_routes_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::Modify;
    let (routes, mut document) = api_routes().split_for_parts();
    docs::CommonResponses.modify(&mut document);
    (routes, document)
}

/// The request id header: set on every request (`SetRequestIdLayer`), read by the span and by
/// `extract::origin_of`, and sent back. A typed name: looking a header up by `&str` parses and
/// hashes the name again on each request.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let x_request_id = X_REQUEST_ID.clone();
    let (routes, document) = api_routes_and_document();
    let json = document.to_json().unwrap_or_default();
    let router = routes
        .merge(docs::ui(state.clone()))
        .merge(scim::routes())
        .layer(axum::Extension(docs::OpenApiJson(Arc::new(json))))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(drop_unsafe_request_id))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(limits.trusted_proxies.clone()),
                    client_address::resolve,
                ))
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    MakeRequestUuid,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(log_response),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(axum::middleware::from_fn(limits::security_headers))
                .layer(axum::middleware::from_fn_with_state(
                    limits::BodyDeadline::new(limits),
                    limits::read_body,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    limits::Guard::new(limits),
                    limits::guard,
                ))
                .layer(CatchPanicLayer::custom(panic_response)),
        );
    match limits::cors(limits) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Middleware: a client's `x-request-id` that is long or holds characters outside
/// `[A-Za-z0-9._-]` is dropped, so `SetRequestIdLayer` makes one: a client must not forge log
/// fields or store kilobytes in the audit trail through it.
async fn drop_unsafe_request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let unsafe_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .is_some_and(|v| !v.to_str().is_ok_and(extract::is_safe_request_id));
    if unsafe_id {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(request).await
}

/// The span of one request: method, path (never the query string, never headers) and id.
fn request_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}

fn log_response<B>(response: &Response<B>, latency: Duration, _: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "response"
    );
}

async fn not_found() -> Response {
    error::error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint".into(),
        None,
    )
}

async fn method_not_allowed() -> Response {
    error::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not answer that method".into(),
        None,
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "an internal error occurred; quote the x-request-id header when reporting it".into(),
        None,
    )
    .into_response()
}
