//! The pages mailed links open: choosing a new password, accepting an invitation, confirming an
//! address. Each is a form that a small script (served from here: the pages' CSP admits no
//! inline script) sends to the JSON API with the token read from the link's fragment, which
//! never reaches a server log.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reset_page))
        .routes(routes!(accept_page))
        .routes(routes!(verify_page))
        .routes(routes!(script))
}

/// The page a password-reset link opens.
#[utoipa::path(get, path = "/user/password/reset", tag = "user",
    responses((status = 200, description = "A form for the new password", content_type = "text/html", body = String)))]
async fn reset_page() -> Html<String> {
    page(
        "Choose a new password",
        "/user/password/reset",
        r#"<p><label>New password<br><input name="newPassword" type="password" autocomplete="new-password" required minlength="8"></label></p>"#,
        "Set the password",
    )
}

/// The page an invitation's link opens.
#[utoipa::path(get, path = "/user/invitations/accept", tag = "user",
    responses((status = 200, description = "A form for the new account", content_type = "text/html", body = String)))]
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

/// The page a verification link opens.
#[utoipa::path(get, path = "/user/email/verify", tag = "user",
    responses((status = 200, description = "A button that confirms the address", content_type = "text/html", body = String)))]
async fn verify_page() -> Html<String> {
    page("Confirm your address", "/user/email/verify", "", "Confirm")
}

/// The script of those pages.
#[utoipa::path(get, path = "/user/links.js", tag = "user",
    responses((status = 200, description = "Sends a link page's form", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("link_pages.js"),
    )
        .into_response()
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
<script src="/user/links.js"></script>
</body></html>"#
    ))
}
