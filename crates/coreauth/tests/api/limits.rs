//! Request limits and response headers (issue 9): bounded concurrency with 503, a deadline per
//! request, security headers, CORS off unless configured.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Opens a connection and sends a request whose body never finishes: it stays in flight.
async fn stalled_request(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /user/authenticate HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"email\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test]
async fn past_the_concurrency_limit_callers_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.max_concurrent_requests = 1).await;
    let mut held = stalled_request(&app).await;
    // Wait (without sleeping) until the server has taken the stalled request in.
    let mut response = app.get("/healthz", None).await;
    for _ in 0..100 {
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::task::yield_now().await;
        response = app.get("/healthz", None).await;
    }
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(body(response).await["error"], "overloaded");
    held.shutdown().await.unwrap();
    drop(held);
}

#[tokio::test]
async fn a_request_that_never_finishes_gets_408() {
    let app = TestApp::spawn_with(|s| s.request_timeout = Duration::from_millis(300)).await;
    let mut held = stalled_request(&app).await;
    let answer = read_response(&mut held).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn every_answer_carries_security_headers_and_html_a_strict_csp() {
    let app = TestApp::spawn().await;
    let json = app.get("/user/me", Some(&app.admin_token)).await;
    assert_eq!(json.headers()["x-frame-options"], "DENY");
    assert_eq!(json.headers()["x-content-type-options"], "nosniff");
    assert_eq!(json.headers()["referrer-policy"], "no-referrer");
    assert_eq!(json.headers()["cache-control"], "no-store");
    let page = app.get("/docs", None).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let error = app.get("/no/such/route", None).await;
    assert_eq!(error.headers()["x-content-type-options"], "nosniff");
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/user/me"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_allow_list() {
    let app = TestApp::spawn().await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let app = TestApp::spawn_with(|s| {
        s.cors_allowed_origins = Some("https://app.example.com, https://admin.example.com".into())
    })
    .await;
    let allowed = preflight(&app, "https://app.example.com").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight(&app, "https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
