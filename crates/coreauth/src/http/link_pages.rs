//! The pages mailed links open: choosing a new password, accepting an invitation, confirming an
//! address. Each is a form that a small script (served from here: the pages' CSP admits no
//! inline script) sends to the JSON API with the token read from the link's fragment, which
//! never reaches a server log.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::domain::invitations::ACCEPT_PAGE;
use crate::domain::recovery::RESET_PAGE;
use crate::domain::verification::VERIFY_PAGE;

const SCRIPT_PATH: &str = "/user/links.js";

pub fn pages() -> Router<AppState> {
    Router::new()
        .route(RESET_PAGE, get(reset_page))
        .route(ACCEPT_PAGE, get(accept_page))
        .route(VERIFY_PAGE, get(verify_page))
        .route(SCRIPT_PATH, get(script))
}

async fn reset_page() -> Html<String> {
    page(
        "Choose a new password",
        "/user/password/reset",
        r#"<p><label>New password<br><input name="newPassword" type="password" autocomplete="new-password" required minlength="8"></label></p>"#,
        "Set the password",
    )
}

async fn accept_page() -> Html<String> {
    page(
        "Accept the invitation",
        "/user/invitations/accept",
        r#"<p><label>First name<br><input name="first" autocomplete="given-name" required></label></p>
<p><label>Last name<br><input name="last" autocomplete="family-name"></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="new-password" required minlength="8"></label></p>"#,
        "Join",
    )
}

async fn verify_page() -> Html<String> {
    page("Confirm your address", "/user/email/verify", "", "Confirm")
}

fn page(title: &str, action: &str, fields: &str, button: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 24rem; margin: 4rem auto; padding: 0 1rem">
<h1>{title}</h1>
<form id="link-form" data-action="{action}">
{fields}
<p><button type="submit">{button}</button></p>
</form>
<p id="link-result" role="status" aria-live="polite"></p>
<script src="{SCRIPT_PATH}"></script>
</body></html>"#
    ))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("link_pages.js"),
    )
        .into_response()
}
