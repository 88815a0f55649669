//! SSO-only admins are not locked out of coreauth's own surfaces: the API documentation signs in
//! through the provider and sets its cookie, and a device (the CLI) signs in device-style: it
//! shows a code, the person confirms it in a browser and signs in at the provider, the device
//! takes the session once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;
use crate::helpers::*;

const ADMINS: &str = "a1b2c3d4-0000-0000-0000-0000000000ad";

/// Contoso, whose Entra-shaped connection makes its admins' group admins and everyone else
/// members.
async fn contoso() -> (TestApp, i64, Provider) {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let connection = json!({"name": "staff", "preset": "entra", "issuer": provider.issuer,
        "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "emailDomains": ["contoso.example"], "allowJit": true,
        "claims": {"roleMapping": {ADMINS: "admin"}, "defaultRole": "member"}});
    add_connection(&app, &app.admin_token, org, &connection).await;
    (app, org, provider)
}

/// The provider's URL the browser is sent to by a form posted to `path`.
async fn post_form(
    browser: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser.post(url).form(form).send().await.unwrap()
}

#[tokio::test]
async fn an_sso_only_admin_signs_in_to_the_api_documentation_through_the_provider() {
    let (app, _, provider) = contoso().await;
    let admin = browser();
    let page = admin.get(app.url("/docs")).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("action=\"/docs/sso\""));
    let started = post_form(
        &admin,
        &app.url("/docs/sso"),
        &[("email", "erin@contoso.example")],
    )
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let to_provider = started.headers()["location"].to_str().unwrap().to_owned();
    let landing = sign_in(&app, &admin, &to_provider, "erin@contoso.example", false).await;
    assert_eq!(landing.status, StatusCode::OK);
    let ui = admin.get(app.url("/docs/ui/")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK, "the cookie opens Swagger UI");
    let document = admin.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    // The cookie is for the documentation only, never for the API.
    let me = admin.get(app.url("/user/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::FORBIDDEN);

    // A member signs in at the provider but gets no documentation.
    let member = browser();
    let started = post_form(
        &member,
        &app.url("/docs/sso"),
        &[("email", "sam@contoso.example")],
    )
    .await;
    let to_provider = started.headers()["location"].to_str().unwrap().to_owned();
    let landing = sign_in(&app, &member, &to_provider, "sam@contoso.example", false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    let document = member.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(document.status(), StatusCode::FORBIDDEN);

    // An email that signs in with a password is sent back to the password form.
    let response = post_form(
        &browser(),
        &app.url("/docs/sso"),
        &[("email", "someone@elsewhere.example")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    provider.stop().await;
}

async fn device_start(app: &TestApp, email: &str) -> Value {
    let response = app
        .post(
            "/user/authenticate/sso/device",
            None,
            &json!({"email": email, "client": "coreauth-cli"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

async fn poll(app: &TestApp, started: &Value) -> reqwest::Response {
    app.post(
        "/user/authenticate/sso/device/token",
        None,
        &json!({"deviceCode": started["deviceCode"]}),
    )
    .await
}

/// The person's side: the confirmation page, the confirmation, the sign-in at the provider.
async fn confirm_in_browser(app: &TestApp, started: &Value, login: &str) -> Landing {
    let person = browser();
    let page = person
        .get(started["verificationUriComplete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let user_code = started["userCode"].as_str().unwrap();
    assert!(
        page.contains(user_code) && page.contains("coreauth-cli"),
        "{page}"
    );
    let confirmed = post_form(
        &person,
        started["verificationUri"].as_str().unwrap(),
        &[("code", user_code)],
    )
    .await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    let to_provider = confirmed.headers()["location"].to_str().unwrap().to_owned();
    sign_in(app, &person, &to_provider, login, false).await
}

#[tokio::test]
async fn a_device_takes_the_session_once_the_person_signed_in_in_a_browser() {
    let (app, org, provider) = contoso().await;
    let started = device_start(&app, "erin@contoso.example").await;
    assert_eq!(started["expiresIn"], 600);
    assert!(started["interval"].as_u64().unwrap() >= 1);
    let pending = poll(&app, &started).await;
    assert_error(pending, StatusCode::BAD_REQUEST, "authorization_pending").await;

    let landing = confirm_in_browser(&app, &started, "erin@contoso.example").await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(landing.body.is_null(), "the browser never sees the token");

    let response = poll(&app, &started).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = body(response).await;
    assert_eq!(session["user"]["email"], "erin@contoso.example");
    assert_eq!(session["user"]["orgId"], org);
    assert_eq!(session["user"]["role"], "admin");
    let me = app.me(session["token"].as_str().unwrap()).await;
    assert_eq!(me.status(), StatusCode::OK);
    // Once only.
    assert_error(
        poll(&app, &started).await,
        StatusCode::BAD_REQUEST,
        "expired_token",
    )
    .await;
    // And the code cannot be confirmed again.
    let again = browser()
        .get(started["verificationUriComplete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    provider.stop().await;
}

#[tokio::test]
async fn a_device_hears_why_a_sign_in_was_refused_and_codes_expire() {
    let (app, org, provider) = contoso().await;
    // Strict roles: nobody outside the admins' group gets in.
    let connections = body(
        app.get(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let id = connections[0]["id"].as_i64().unwrap();
    let strict = json!({"name": "staff", "preset": "entra", "issuer": provider.issuer,
        "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "emailDomains": ["contoso.example"], "allowJit": true,
        "claims": {"roleMapping": {ADMINS: "admin"}, "defaultRole": "none"}});
    app.send(
        reqwest::Method::PUT,
        &format!("/admin/orgs/{org}/sso/connections/{id}"),
        Some(&app.admin_token),
        Some(&strict),
    )
    .await;
    let started = device_start(&app, "guest@contoso.example").await;
    let landing = confirm_in_browser(&app, &started, "guest@contoso.example").await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_error(
        poll(&app, &started).await,
        StatusCode::FORBIDDEN,
        "sso_no_role",
    )
    .await;

    // An email that signs in with a password has no device sign-in.
    let response = app
        .post(
            "/user/authenticate/sso/device",
            None,
            &json!({"email": "someone@elsewhere.example"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Unknown device codes and user codes.
    let unknown = json!({"deviceCode": "not-a-device-code"});
    let response = app
        .post("/user/authenticate/sso/device/token", None, &unknown)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "expired_token").await;
    let page = browser()
        .get(app.url("/user/authenticate/sso/device/verify?code=BCDF-GHJK"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);

    // Ten minutes later the codes are dead, confirmed or not.
    let started = device_start(&app, "erin@contoso.example").await;
    app.advance(Duration::from_secs(11 * 60));
    assert_error(
        poll(&app, &started).await,
        StatusCode::BAD_REQUEST,
        "expired_token",
    )
    .await;
    let page = browser()
        .get(started["verificationUriComplete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    provider.stop().await;
}
