//! What anonymous callers can make coreauth store (audit issue 37, items 5, 10, 11): malformed
//! logins are throttled like any other, no field is stored unbounded, a password typed into the
//! email field never reaches the audit trail, and a client's request id is kept only when safe.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn failed_logins(app: &TestApp) -> Vec<Value> {
    let audit = body(
        app.get(
            "/admin/audit?event=login.failed&limit=100",
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    audit["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn junk_logins_are_throttled_and_leave_bounded_traces() {
    // Five failures per address: the test admin's own login at spawn was right, so it was
    // given back.
    let app = TestApp::spawn_with(|s| s.login_attempts_per_address = 5).await;
    let junk_email = "x".repeat(60_000);
    let junk_agent = "A".repeat(4_000);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = app
            .client
            .post(app.url("/user/authenticate"))
            .header("user-agent", &junk_agent)
            .json(&json!({"email": junk_email, "password": "p", "selectedOrg": 0}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(statuses[..5], [StatusCode::BAD_REQUEST; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 3]);
    let events = failed_logins(&app).await;
    assert!(!events.is_empty());
    for event in events {
        assert_eq!(event["details"]["email"], "(not an email address)");
        assert!(event["userAgent"].as_str().unwrap().len() <= 300, "{event}");
    }
}

#[tokio::test]
async fn a_password_typed_into_the_email_field_is_not_kept() {
    let app = TestApp::spawn().await;
    let response = app
        .login("correct-horse-battery-staple-secret", PASSWORD, 0)
        .await;
    // Shaped like a username, it is a failed login of an unknown one, and still not kept.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let events = failed_logins(&app).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("correct-horse-battery-staple-secret"),
        "{text}"
    );
    assert_eq!(events[0]["details"]["email"], "(not an email address)");
    // An address that parses is kept, as the person typed it.
    app.login("Nobody@Example.com", PASSWORD, 0).await;
    assert_eq!(
        failed_logins(&app).await[0]["details"]["email"],
        "Nobody@example.com"
    );
}

#[tokio::test]
async fn only_short_safe_request_ids_are_kept() {
    let app = TestApp::spawn().await;
    let send = |id: String| {
        app.client
            .post(app.url("/user/authenticate"))
            .header("x-request-id", id)
            .json(&json!({"email": "nobody@example.com", "password": "p"}))
            .send()
    };
    let response = send("trace-42.a_b".into()).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42.a_b");
    for forged in [
        "x".repeat(200),
        "a b=forged".into(),
        "id\"level=error".into(),
    ] {
        let response = send(forged.clone()).await.unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, forged);
        assert!(
            uuid::Uuid::parse_str(echoed).is_ok(),
            "a fresh id: {echoed}"
        );
    }
    let ids: Vec<Value> = failed_logins(&app)
        .await
        .iter()
        .map(|e| e["requestId"].clone())
        .collect();
    assert_eq!(ids.last().unwrap(), "trace-42.a_b");
    assert!(ids.iter().all(|id| id.as_str().unwrap().len() <= 64));
}

#[tokio::test]
async fn anonymous_sso_starts_are_throttled_and_return_targets_are_checked_first() {
    // Four sign-ins per address: the test admin's own login at spawn counted one.
    let app = TestApp::spawn_with(|s| s.login_traffic_per_address = 4).await;
    let config = json!({"issuer": "http://127.0.0.1:9", "clientId": "c", "clientSecret": "s",
        "emailDomains": ["acme.example"], "redirectAllowList": ["https://app.acme.example/cb"]});
    let response = app
        .send(
            reqwest::Method::PUT,
            "/admin/orgs/1/sso",
            Some(&app.admin_token),
            Some(&config),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let app = &app;
    let start = |return_to: &str| {
        let path = format!("/user/authenticate/sso/start?org=1&returnTo={return_to}");
        async move { app.get(&path, None).await }
    };
    // Refused before anything is stored: a sibling path, a fragment, and a long target.
    for target in [
        "https%3A%2F%2Fapp.acme.example%2Fcbevil".to_owned(),
        "https%3A%2F%2Fapp.acme.example%2Fcb%23x".to_owned(),
        format!("https%3A%2F%2Fapp.acme.example%2Fcb%2F{}", "a".repeat(3000)),
    ] {
        assert_eq!(start(&target).await.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        start("https%3A%2F%2Fapp.acme.example%2Fcb").await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth start from this address"
    );
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let app = TestApp::spawn().await;
    for (first, second) in [
        (
            format!("Bearer {}", app.admin_token),
            "Bearer forged".to_owned(),
        ),
        (
            "Bearer forged".to_owned(),
            format!("Bearer {}", app.admin_token),
        ),
    ] {
        let response = app
            .client
            .get(app.url("/user/me"))
            .header("authorization", first)
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn strategy_look_ups_do_not_spend_the_login_budget() {
    // Three per address: the test admin's own login at spawn counted one of the sign-ins'.
    let app = TestApp::spawn_with(|s| s.login_traffic_per_address = 3).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app
            .post(
                "/user/authenticate/strategy",
                None,
                &json!({"email": "someone@example.com"}),
            )
            .await;
        statuses.push(response.status());
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    let response = app.login(ADMIN_EMAIL, ADMIN_PASSWORD, 0).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "logins have their own budget"
    );
}

#[tokio::test]
async fn sso_cannot_be_pointed_at_the_network_behind_coreauth() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    // The tests' default allows loopback (their providers run there); this instance does not.
    let open = TestApp::spawn_on(&database, |_| {}).await;
    let fenced = TestApp::spawn_on(&database, |s| s.sso_allowed_networks = None).await;
    let config = |issuer: &str| {
        json!({"issuer": issuer, "clientId": "c", "clientSecret": "s",
               "emailDomains": ["acme.example"]})
    };
    // Configured where an operator allowed loopback, started where nobody did: coreauth does not fetch it, and the anonymous caller
    // learns nothing about why.
    // (A new org: the fenced instance has not read, nor kept, its SSO settings yet.)
    let org = open.create_org("Acme").await;
    let response = open
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/sso"),
            Some(&open.admin_token),
            Some(&config("http://127.0.0.1:9")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for issuer in [
        "http://127.0.0.1:5432",
        "http://10.0.0.1/",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:22/",
    ] {
        let response = fenced
            .send(
                reqwest::Method::PUT,
                "/admin/orgs/1/sso",
                Some(&fenced.admin_token),
                Some(&config(issuer)),
            )
            .await;
        let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            message.contains("COREAUTH_SSO_ALLOWED_NETWORKS"),
            "{issuer}: {message}"
        );
    }

    for _ in 0..2 {
        let response = fenced
            .get(&format!("/user/authenticate/sso/start?org={org}"), None)
            .await;
        let message = assert_error(response, StatusCode::BAD_GATEWAY, "idp_unreachable").await;
        assert!(!message.contains("127.0.0.1"), "{message}");
        assert!(!message.contains(":9"), "{message}");
    }
    let audit = body(
        fenced
            .get("/admin/audit?event=sso.login", Some(&fenced.admin_token))
            .await,
    )
    .await;
    let details: Vec<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["detail"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        details[1].contains("127.0.0.1"),
        "the detail is kept: {details:?}"
    );
    assert!(
        details[0].contains("failed moments ago"),
        "backed off: {details:?}"
    );
}
