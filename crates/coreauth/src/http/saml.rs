//! The SAML legs (SPEC §4): the SP metadata an IdP's admin imports, and the assertion consumer
//! service the IdP's form posts the browser to. The sign-on starts at
//! `GET /user/authenticate/sso/start` like an OpenID one (`sso`).
//!
//! The IdP's form posts across sites, and browsers send no `SameSite=Lax` cookie with such a
//! POST, so the first arrival without the binding cookie is answered with a page that posts
//! the same form again from coreauth's own origin, which carries the cookie.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use coreauth_proto::ErrorBody;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::browser::html_escape;
use super::error::{ApiPath, ApiResult};
use super::extract::{Origin, cookie_value};
use super::sso::signed_in;
use crate::domain::error::{DomainError, SamlRefusal, SsoFailure};
use crate::domain::sso::{ACS_PATH, SamlPost, binding_cookie};

const REPOST_SCRIPT_PATH: &str = "/user/authenticate/saml/repost.js";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata))
        .routes(routes!(acs))
        .routes(routes!(repost_script))
}

/// The script of the page that posts the IdP's form again (the page's CSP admits scripts
/// from coreauth only, none inline).
#[utoipa::path(get, path = "/user/authenticate/saml/repost.js", tag = "authenticate",
    responses(
        (status = 200, description = "Submits the page's form", content_type = "text/javascript", body = String),
    ))]
async fn repost_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        "document.getElementById('saml-repost').submit();\n",
    )
        .into_response()
}

/// The SP metadata of a SAML connection: import it at the IdP (ADFS: a relying party trust
/// "from a file or URL"; Entra: an enterprise application's "upload metadata file").
#[utoipa::path(get, path = "/user/authenticate/saml/{connection_id}/metadata", tag = "authenticate",
    params(("connection_id" = i64, Path, description = "SSO connection id")),
    responses(
        (status = 200, description = "The SP metadata (an EntityDescriptor)", content_type = "application/samlmetadata+xml", body = String),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such SAML connection", body = ErrorBody),
    ))]
async fn metadata(
    State(state): State<AppState>,
    ApiPath(connection_id): ApiPath<i64>,
) -> ApiResult<Response> {
    let xml = state.sso.saml_metadata(connection_id).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/samlmetadata+xml"),
        )],
        xml,
    )
        .into_response())
}

/// The IdP's answer, as its form posts it (HTTP-POST binding).
#[derive(Deserialize, ToSchema)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState", default)]
    relay_state: Option<String>,
    /// Set by coreauth's own re-post of the form.
    #[serde(default)]
    bound: Option<String>,
}

/// The assertion consumer service: finishes a SAML sign-on like the OpenID callback does.
#[utoipa::path(post, path = "/user/authenticate/saml/acs", tag = "authenticate",
    request_body(content = AcsForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in: the session as JSON, or a page: saying so (a sign-in for the documentation or a device), or posting the form again with the browser's cookie", content(
            (coreauth_proto::AuthenticateResponse = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = "Signed in; to returnTo with the token in the fragment"),
        (status = 400, description = "saml_malformed, saml_doctype, saml_unknown_request, sso_state_expired, sso_browser_mismatch", body = ErrorBody),
        (status = 401, description = "saml_unsigned, saml_untrusted_certificate, saml_signature_invalid, saml_wrapping, saml_audience, saml_expired, saml_destination, saml_issuer, saml_replayed, saml_invalid", body = ErrorBody),
        (status = 403, description = "Refused by the IdP or by the connection's rules (domains, accounts, roles), or IdP-initiated", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
async fn acs(
    State(state): State<AppState>,
    Origin(origin): Origin,
    headers: HeaderMap,
    form: Result<Form<AcsForm>, FormRejection>,
) -> ApiResult<Response> {
    let malformed =
        |why: &str| DomainError::Sso(SsoFailure::Saml(SamlRefusal::Malformed(why.to_owned())));
    let Ok(Form(mut form)) = form else {
        return Err(malformed("post SAMLResponse (and RelayState) as a form").into());
    };
    if form.saml_response.trim().is_empty() {
        return Err(malformed("SAMLResponse is empty").into());
    }
    form.relay_state = form.relay_state.filter(|r| !r.is_empty());
    let browser_secret = form
        .relay_state
        .as_deref()
        .map(binding_cookie)
        .and_then(|name| cookie_value(&headers, &name));
    if browser_secret.is_none() && form.bound.is_none() && form.relay_state.is_some() {
        return Ok(repost_page(&form));
    }
    let outcome = state
        .sso
        .acs(
            SamlPost {
                response: form.saml_response,
                relay_state: form.relay_state,
                browser_secret,
            },
            origin,
            state.now(),
        )
        .await?;
    Ok(signed_in(&state, outcome))
}

/// The form again, posted from coreauth's origin so that the browser adds its cookie.
fn repost_page(form: &AcsForm) -> Response {
    let relay_state = form.relay_state.as_deref().unwrap_or_default();
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreauth: signing in</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<form id="saml-repost" method="post" action="{ACS_PATH}">
<input type="hidden" name="SAMLResponse" value="{}">
<input type="hidden" name="RelayState" value="{}">
<input type="hidden" name="bound" value="1">
<noscript><p><button type="submit">Continue signing in</button></p></noscript>
</form>
<script src="{REPOST_SCRIPT_PATH}"></script>
</body></html>"#,
        html_escape(&form.saml_response),
        html_escape(relay_state),
    );
    (StatusCode::OK, Html(page)).into_response()
}
