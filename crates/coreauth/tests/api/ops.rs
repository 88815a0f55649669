//! Health, readiness and the JWKS, which answer without a token, and the metrics, which answer
//! to the operator's token or on a listener of their own.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["status"], "ok");
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["status"], "ready");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_logins_by_outcome() {
    let app = TestApp::spawn().await; // one successful login already
    app.login(ADMIN_EMAIL, "wrong password", 0).await;
    app.get("/admin/users/7", None).await;
    let response = app.get("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"coreauth_logins_total{outcome="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"coreauth_logins_total{outcome="invalid_credentials"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"coreauth_http_requests_total{method="POST",route="/user/authenticate",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/admin/users/{id}""#),
        "route templates, not raw paths"
    );
    assert!(text.contains("coreauth_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn metrics_show_the_session_cache_serving() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let hits = metric(&app, "coreauth_session_cache_hits_total").await;
    for _ in 0..3 {
        assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    }
    // The first call may read the database; the others are answered from memory.
    assert!(metric(&app, "coreauth_session_cache_hits_total").await >= hits + 2.0);
    assert!(metric(&app, "coreauth_session_cache_misses_total").await >= 1.0);
    assert!(metric(&app, "coreauth_session_cache_entries").await >= 1.0);
    assert_eq!(metric(&app, "coreauth_session_cache_suspended").await, 0.0);
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_safe_headers() {
    let app = TestApp::spawn().await;
    let response = app.me(&app.admin_token).await;
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn metrics_answer_only_to_the_operators_token() {
    let app = TestApp::spawn().await;
    for token in [None, Some("wrong-token"), Some(app.admin_token.as_str())] {
        let response = app.get("/metrics", token).await;
        assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
    }
    let closed = TestApp::spawn_with(|s| s.metrics_token = None).await;
    let response = closed.get("/metrics", Some(METRICS_TOKEN)).await;
    let message = assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(message.contains("COREAUTH_METRICS_TOKEN"), "{message}");
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = free_port();
    let app = TestApp::spawn_with(|s| s.metrics_listen = Some(format!("127.0.0.1:{port}"))).await;
    let response = app.get("/metrics", Some(METRICS_TOKEN)).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let scraped = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("coreauth_logins_total")
    );
}
