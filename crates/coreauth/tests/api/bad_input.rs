//! Hostile and malformed input: a clear 4xx with the spec's error body, never a 5xx or a panic,
//! and nothing half-written.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.admin_token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = TestApp::spawn().await;
    for body in [
        &b"{"[..],
        b"not json",
        b"",
        b"[]",
        b"null",
        b"{\"email\": }",
    ] {
        let response = raw_post(
            &app,
            "/user/authenticate",
            Some("application/json"),
            body.to_vec(),
        )
        .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn wrong_types_are_a_400_that_does_not_echo_the_value() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": "a@example.com", "password": 73_829_104_u64}),
        )
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("password"), "{message}");
    assert!(!message.contains("73829104"), "{message}");
    let response = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": "a@example.com", "password": "pw", "selectedOrg": "one"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/orgs",
            Some(&app.admin_token),
            &json!({"name": ["x"]}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/orgs",
            Some(&app.admin_token),
            &json!({"name": "x", "extra": 1}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_missing_content_type_is_a_415() {
    let app = TestApp::spawn().await;
    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string();
    let response = raw_post(&app, "/user/authenticate", None, body.clone().into_bytes()).await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let response = raw_post(
        &app,
        "/user/authenticate",
        Some("text/plain"),
        body.into_bytes(),
    )
    .await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_a_413() {
    let app = TestApp::spawn().await;
    let name = "x".repeat(70 * 1024);
    let response = app
        .post(
            "/admin/orgs",
            Some(&app.admin_token),
            &json!({"name": name}),
        )
        .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let response = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": ADMIN_EMAIL, "password": "p".repeat(65 * 1024)}),
        )
        .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn passwords_over_1024_bytes_are_refused_before_hashing() {
    let app = TestApp::spawn().await;
    let long = "p".repeat(1025);
    let response = app.login(ADMIN_EMAIL, &long, 0).await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("1024"), "{message}");
    let response = app
        .post(
            "/admin/users",
            Some(&app.admin_token),
            &json!({
            "email": "long@example.com", "password": long, "first": "A", "last": "B",
            "orgId": 1, "role": "member"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let exactly = "é".repeat(512);
    let response = app
        .post(
            "/admin/users",
            Some(&app.admin_token),
            &json!({
            "email": "long@example.com", "password": exactly, "first": "A", "last": "B",
            "orgId": 1, "role": "member"}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "1024 bytes is allowed"
    );
    app.login_ok("long@example.com", &exactly).await;
}

#[tokio::test]
async fn overlong_or_empty_names_are_refused_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = Some(app.admin_token.as_str());
    let response = app
        .post("/admin/orgs", token, &json!({"name": "n".repeat(201)}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post("/admin/orgs", token, &json!({"name": "   "}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/orgs",
            token,
            &json!({"name": "Ok", "emailDomains": ["not a domain"]}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/users",
            token,
            &json!({
            "email": "named@example.com", "password": PASSWORD, "first": "f".repeat(201),
            "last": "B", "orgId": 1, "role": "member"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The next org gets id 2: none of the refused ones was created.
    assert_eq!(app.create_org("Real").await, 2);
}

#[tokio::test]
async fn unknown_routes_bad_ids_and_wrong_methods_use_the_error_body() {
    let app = TestApp::spawn().await;
    assert_error(
        app.get("/no/such/thing", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app
        .patch("/admin/users/abc", Some(&app.admin_token), &json!({}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .delete("/user/authenticate", Some(&app.admin_token))
        .await;
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_email_or_username_at_login_is_a_400() {
    let app = TestApp::spawn().await;
    for email in [
        "",
        // Without an `@` a login name is a username, and this is none.
        "no at",
        "a@b",
        &format!("{}@example.com", "x".repeat(300)),
    ] {
        let response = app.login(email, PASSWORD, 0).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_session_id_no_database_can_hold_is_simply_not_found() {
    // PostgreSQL text cannot hold NUL: such an id must match nothing, not fail the query.
    let app = TestApp::spawn().await;
    for id in ["%00", "a%00b", "%C3%A9%F0%9F%94%91", &"x".repeat(2000)] {
        let response = app
            .delete(&format!("/user/sessions/{id}"), Some(&app.admin_token))
            .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(app.me(&app.admin_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn key_ids_integration_names_and_event_filters_no_database_can_hold_find_nothing() {
    // The same NUL rule for what arrived with API keys, integrations and the audit trail: a
    // value PostgreSQL text cannot hold matches nothing on either backend.
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    for id in ["%00", "a%00b"] {
        let response = app
            .delete(&format!("/admin/orgs/1/authheaders/{id}"), Some(&token))
            .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
        let response = app
            .delete(&format!("/admin/orgs/1/integrations/{id}"), Some(&token))
            .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
        let response = app
            .post(
                &format!("/user/authenticate/{id}"),
                Some(&token),
                &json!({}),
            )
            .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
        let page = app
            .get(&format!("/admin/audit?event={id}"), Some(&token))
            .await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(body(page).await["events"], json!([]));
    }
    let response = app
        .post(
            "/authheader/delete",
            Some(&token),
            &json!({"id": "a\u{0}b"}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}
