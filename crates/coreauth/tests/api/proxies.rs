//! Behind a load balancer (`COREAUTH_TRUSTED_PROXIES`): the client's address comes from
//! `Forwarded` / `X-Forwarded-For` only when the peer is a trusted proxy, and then it is what
//! the audit trail records and the per-address limits count. The tests' requests come from
//! 127.0.0.1, which plays the balancer.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A login as the seeds send it, with extra headers.
async fn login_with(
    app: &TestApp,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let mut request = app.client.post(app.url("/user/authenticate")).json(&json!({
        "email": email, "password": password, "selectedOrg": 0, "client": "core-client"
    }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

async fn last_address(app: &TestApp, event: &str) -> Value {
    let page = body(
        app.get(
            &format!("/admin/audit?event={event}&limit=1"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    page["events"][0]["address"].clone()
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let app = TestApp::spawn().await;
    app.create_user("ann@example.com", 1, "member").await;
    let spoofed = [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=198.51.100.1"),
    ];
    let status = login_with(&app, "ann@example.com", "wrong password", &spoofed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_address(&app, "login.failed").await, "127.0.0.1");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_hop() {
    let app =
        TestApp::spawn_with(|s| s.trusted_proxies = Some("127.0.0.1/32, 10.0.0.0/8".into())).await;
    app.create_user("ann@example.com", 1, "member").await;
    // The client wrote the first entry itself; the balancers appended the rest.
    let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.1.2.3")];
    let status = login_with(&app, "ann@example.com", PASSWORD, &chain).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last_address(&app, "login.succeeded").await, "203.0.113.7");
    let forwarded = [("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")];
    login_with(&app, "ann@example.com", "wrong password", &forwarded).await;
    assert_eq!(
        last_address(&app, "login.failed").await,
        "2001:db8:cafe::17"
    );
}

#[tokio::test]
async fn per_address_limits_count_the_forwarded_client_not_the_proxy() {
    let app = TestApp::spawn_with(|s| {
        s.trusted_proxies = Some("127.0.0.1".into());
        s.login_attempts_per_address = 3;
    })
    .await;
    let from = |address: &'static str| [("x-forwarded-for", address)];
    for attempt in 0..3 {
        let status = login_with(
            &app,
            &format!("n{attempt}@example.com"),
            "guess",
            &from("203.0.113.7"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = login_with(&app, "n9@example.com", "guess", &from("203.0.113.7")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "that client is out of guesses"
    );
    let status = login_with(&app, "n9@example.com", "guess", &from("203.0.113.8")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy is not"
    );
}
