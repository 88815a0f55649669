//! Request limits and response headers (issue 9): bounded concurrency with 503, a deadline per
//! request, bodies read under their own deadline and minimum rate before they count as in
//! flight (audit item 4), security headers, CORS off unless configured.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Opens a connection and sends a request whose body never finishes.
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

/// Starts `GET /user/authenticate/sso/start` for an org whose provider accepts connections and
/// never answers: the request stays in flight, holding a permit, until the test ends.
async fn request_held_by_a_silent_provider(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", provider.local_addr().unwrap());
    let org = app.create_org("Acme").await;
    let config = serde_json::json!({"issuer": issuer, "clientId": "coreauth",
        "clientSecret": "client-secret-value", "emailDomains": ["acme.example"],
        "allowJit": false, "redirectAllowList": ["https://app.acme.example/"]});
    let path = format!("/admin/orgs/{org}/sso");
    let put = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(&config),
        )
        .await;
    assert!(put.status().is_success(), "{}", put.status());
    let url = app.url(&format!(
        "/user/authenticate/sso/start?org={org}&returnTo=https%3A%2F%2Fapp.acme.example%2Fdone"
    ));
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut held = Vec::new();
        let request = client.get(url).send();
        tokio::pin!(request);
        // Accepts and keeps the provider's connections, never answering, for as long as the
        // request is waiting.
        loop {
            tokio::select! {
                _ = &mut request => break,
                accepted = provider.accept() => held.push(accepted.unwrap().0),
            }
        }
    })
}

#[tokio::test]
async fn past_the_concurrency_limit_callers_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.max_concurrent_requests = 1).await;
    let held = request_held_by_a_silent_provider(&app).await;
    // Wait until the server has taken the held request in (bounded, without sleeping).
    let mut response = app.get("/healthz", None).await;
    for _ in 0..200 {
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::task::yield_now().await;
        response = app.get("/healthz", None).await;
    }
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(body(response).await["error"], "overloaded");
    held.abort();
}

#[tokio::test]
async fn a_request_that_never_finishes_gets_408() {
    let app = TestApp::spawn_with(|s| s.request_timeout = Duration::from_millis(300)).await;
    let mut held = stalled_request(&app).await;
    let answer = read_response(&mut held).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Sends the head of a 1,000-byte body with `Expect: 100-continue`, waits for the server's
/// `100 Continue` (sent when it starts reading the body), then sends one byte and stops.
async fn slow_body(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /user/authenticate HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let continued = read_response(&mut stream).await;
    assert!(continued.starts_with("HTTP/1.1 100"), "{continued}");
    stream.write_all(b"{").await.unwrap();
    stream
}

/// Far more slow bodies than permits: every one is being read at once, none holds a permit, and
/// token checks keep answering; each slow body then gets 408 at the body deadline.
#[tokio::test]
async fn slow_bodies_hold_no_permit_and_time_out_on_their_own_deadline() {
    const SLOW: usize = 64;
    let app = TestApp::spawn_with(|s| {
        s.max_concurrent_requests = 4;
        s.body_timeout = Duration::from_millis(1500);
        s.body_min_rate = 0;
    })
    .await;
    let started = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        slow.push(slow_body(&app).await);
    }
    for _ in 0..20 {
        let me = app.get("/user/me", Some(&app.admin_token)).await;
        assert_eq!(me.status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the checks ran while the slow bodies were open ({:?})",
        started.elapsed()
    );
    for stream in &mut slow {
        let answer = read_response(stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A body trickling in below the minimum rate is cut off after the grace second, long before the
/// body timeout.
#[tokio::test]
async fn a_body_below_the_minimum_rate_gets_408_before_the_body_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.body_timeout = Duration::from_secs(8);
        s.body_min_rate = 1000;
    })
    .await;
    let mut stream = stalled_request(&app).await;
    let started = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        // 20 bytes a second, for at most 4 s.
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let mut buffer = vec![0u8; 4096];
    let n = tokio::select! {
        read = tokio::time::timeout(Duration::from_secs(6), reader.read(&mut buffer)) => {
            read.expect("the server answers").unwrap()
        }
        () = trickle => unreachable!(),
    };
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
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
