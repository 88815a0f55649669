//! What the SSO legs a browser walks through share: the redirect to the provider with the
//! cookie that binds the sign-on to this browser, and escaping for the small pages coreauth
//! renders itself (the documentation's sign-in, a device's confirmation).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use super::extract::secure_cookie_attribute;
use crate::domain::sso::{SsoStart, binding_cookie};

/// Sends the browser to the provider with the cookie that binds the sign-on to it.
pub(super) fn to_provider(state: &AppState, started: &SsoStart) -> Response {
    let mut response = Redirect::to(&started.url).into_response();
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Lax; Path={}; Max-Age=600{}",
        binding_cookie(&started.state),
        started.browser_secret,
        started.return_path,
        secure_cookie_attribute(state),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(super) fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
