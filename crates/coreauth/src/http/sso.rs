//! Login strategy discovery and SSO sign-in (SPEC §4): `POST /user/authenticate/strategy`, the
//! browser legs `GET /user/authenticate/sso/start` and `/callback`, and linking an account.
//! Connections are configured in `sso_admin`, email domains proven in `domains`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::session_answer;
use super::browser::to_provider;
use super::error::{ApiJson, ApiQuery, ApiResult};
use super::extract::{Caller, Origin, cookie_value};
use super::{docs, sso_device};
use crate::domain::sso::{Callback, SsoOutcome, Strategy, binding_cookie};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(strategy))
        .routes(routes!(start))
        .routes(routes!(link))
        .routes(routes!(callback))
}

/// Password or SSO for an email, decided by its domain only (the same answer for unknown
/// users).
#[utoipa::path(post, path = "/user/authenticate/strategy", tag = "authenticate",
    request_body = proto::StrategyRequest,
    responses(
        (status = 200, description = "How this email signs in", body = proto::StrategyResponse),
        (status = 400, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
async fn strategy(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiJson(body): ApiJson<proto::StrategyRequest>,
) -> ApiResult<ApiJson<proto::StrategyResponse>> {
    let answer = match state
        .sso
        .strategy(&body.email, &origin, state.now())
        .await?
    {
        Strategy::Password => proto::StrategyResponse {
            strategy: "password".into(),
            provider: None,
            org_id: None,
            connection_id: None,
            redirect_url: None,
        },
        Strategy::Sso {
            org_id,
            connection_id,
            provider,
            redirect_url,
        } => proto::StrategyResponse {
            strategy: "sso".into(),
            provider: Some(provider.into()),
            org_id: Some(org_id),
            connection_id: Some(connection_id),
            redirect_url: Some(redirect_url),
        },
    };
    Ok(ApiJson(answer))
}

/// Start an SSO sign-in: redirects the browser to the org's identity provider.
#[utoipa::path(get, path = "/user/authenticate/sso/start", tag = "authenticate",
    params(proto::SsoStartQuery),
    responses(
        (status = 303, description = "To the identity provider"),
        (status = 400, description = "returnTo is not on the allow-list", body = ErrorBody),
        (status = 404, description = "The org has no such SSO connection", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 502, description = "The identity provider cannot be reached", body = ErrorBody),
    ))]
async fn start(
    State(state): State<AppState>,
    Origin(origin): Origin,
    ApiQuery(query): ApiQuery<proto::SsoStartQuery>,
) -> ApiResult<Response> {
    let started = state
        .sso
        .start(
            query.org,
            query.connection,
            query.return_to,
            query.client,
            &origin,
            state.now(),
        )
        .await?;
    Ok(to_provider(&state, &started))
}

/// Link your account to your identity at an org's provider: answers the provider's sign-in URL
/// to send the browser to. Only from a session opened with the account's password, and the
/// provider must assert the account's own email.
#[utoipa::path(post, path = "/user/authenticate/sso/link", tag = "authenticate",
    request_body = proto::SsoLinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Where to sign in at the provider", body = proto::SsoLinkResponse),
        (status = 400, description = "returnTo is not on the allow-list", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not a password session, or not a member of this org", body = ErrorBody),
        (status = 404, description = "The org has no SSO", body = ErrorBody),
        (status = 502, description = "The identity provider cannot be reached", body = ErrorBody),
    ))]
async fn link(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<proto::SsoLinkRequest>,
) -> ApiResult<ApiJson<proto::SsoLinkResponse>> {
    let redirect_url = state
        .sso
        .start_link(
            &caller,
            body.org_id,
            body.connection_id,
            body.return_to,
            state.now(),
        )
        .await?;
    Ok(ApiJson(proto::SsoLinkResponse { redirect_url }))
}

/// Where the identity provider sends the browser back: answers the session token as JSON, or
/// redirects to `returnTo` with `#token=…&expiresAt=…` in the fragment.
#[utoipa::path(get, path = "/user/authenticate/sso/callback", tag = "authenticate",
    params(proto::SsoCallbackQuery),
    responses(
        (status = 200, description = "Signed in: the session as JSON, or (a sign-in for the API documentation or a device) a page saying so", body = proto::AuthenticateResponse),
        (status = 303, description = "Signed in; to returnTo with the token in the fragment"),
        (status = 400, description = "Unknown, used or expired sign-in (state)", body = ErrorBody),
        (status = 401, description = "The ID token did not verify", body = ErrorBody),
        (status = 403, description = "Consent denied; no email, or one unverified, or outside the connection's verified domains; no account; an account not linked to this provider; no role from the groups", body = ErrorBody),
        (status = 502, description = "The identity provider failed", body = ErrorBody),
    ))]
async fn callback(
    State(state): State<AppState>,
    Origin(origin): Origin,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<proto::SsoCallbackQuery>,
) -> ApiResult<Response> {
    let cookie = query.state.as_deref().map(binding_cookie);
    let browser_secret = cookie
        .as_deref()
        .and_then(|name| cookie_value(&headers, name));
    let outcome = state
        .sso
        .callback(
            Callback {
                code: query.code,
                state: query.state,
                error: query.error,
                browser_secret,
            },
            origin,
            state.now(),
        )
        .await?;
    Ok(signed_in(&state, outcome))
}

/// The answer to a browser whose sign-on finished: the session as JSON, or to `returnTo`
/// with the token in the fragment, or the page of a sign-on coreauth started for itself.
pub(super) fn signed_in(state: &AppState, outcome: SsoOutcome) -> Response {
    state.metrics.count_login("success");
    let (issued, return_to) = match outcome {
        SsoOutcome::Caller { issued, return_to } => (issued, return_to),
        SsoOutcome::Docs(issued) => return docs::signed_in(state, issued),
        SsoOutcome::Device { client } => return sso_device::signed_in_page(client),
    };
    let answer = session_answer(issued);
    let Some(return_to) = return_to else {
        return ApiJson(answer).into_response();
    };
    let mut target = format!(
        "{return_to}#token={}&expiresAt={}",
        answer.token, answer.expires_at
    );
    if answer.mfa_required {
        target.push_str("&mfaRequired=true");
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    // The token is in the fragment: never sent to servers, and the page must not leak it on.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
