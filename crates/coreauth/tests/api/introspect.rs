//! `POST /token/introspect` (RFC 7662): a service behind coreauth asks whether a token or API
//! key is honoured right now. Bad, expired and revoked tokens are `{"active": false}`, never an
//! error status; only the asking caller must authenticate.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

impl TestApp {
    async fn introspect(&self, caller: &str, token: &str) -> Response {
        self.post(
            "/token/introspect",
            Some(caller),
            &json!({ "token": token }),
        )
        .await
    }

    async fn introspect_ok(&self, caller: &str, token: &str) -> Value {
        let response = self.introspect(caller, token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        body(response).await
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

#[tokio::test]
async fn a_valid_session_token_is_active_with_its_claims() {
    let app = TestApp::spawn().await;
    let (org, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, service_key) = app.add_key(&app.admin_token, "resource-server").await;
    let answer = app.introspect_ok(&service_key, &token).await;
    let claims = claims_of(&token);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], claims["sub"]);
    assert_eq!(answer["uid"], user);
    assert_eq!(answer["org"], org);
    assert_eq!(answer["role"], "member");
    assert_eq!(answer["sid"], claims["sid"]);
    assert_eq!(answer["exp"], claims["exp"]);
    assert_eq!(answer["iat"], claims["iat"]);
    assert_eq!(answer["iss"], "coreauth");
    assert_eq!(answer["token_type"], "session");
    // A session token may ask too, and about itself.
    assert_eq!(app.introspect_ok(&token, &token).await["active"], true);
}

#[tokio::test]
async fn logged_out_revoked_and_expired_tokens_are_inactive() {
    let app = TestApp::spawn().await;
    let (_, service_key) = app.add_key(&app.admin_token, "resource-server").await;
    let (_, user, first) = app.member_of_new_org("Acme", "dev@acme.example").await;

    assert_eq!(app.logout(&first).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.introspect_ok(&service_key, &first).await, inactive());

    let second = app.login_ok("dev@acme.example", PASSWORD).await.token;
    assert_eq!(
        app.introspect_ok(&service_key, &second).await["active"],
        true
    );
    let revoke = format!("/admin/users/{user}/sessions/revoke");
    let response = app.post(&revoke, Some(&app.admin_token), &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.introspect_ok(&service_key, &second).await, inactive());

    let third = app.login_ok("dev@acme.example", PASSWORD).await.token;
    app.advance(Duration::from_secs(15 * 60));
    assert_eq!(app.introspect_ok(&service_key, &third).await, inactive());
}

#[tokio::test]
async fn garbage_and_tampered_tokens_are_inactive_not_errors() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for bad in [
        String::new(),
        "garbage".into(),
        "a.b.c".into(),
        "cak_not-a-key".into(),
        tampered,
        "x".repeat(10_000),
    ] {
        assert_eq!(
            app.introspect_ok(&token, &bad).await,
            inactive(),
            "{bad:.20}"
        );
    }
}

#[tokio::test]
async fn the_current_role_is_reported_not_the_one_in_the_token() {
    let app = TestApp::spawn().await;
    let (org, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let path = format!("/admin/orgs/{org}/members/{user}");
    let response = app
        .patch(&path, Some(&app.admin_token), &json!({ "role": "admin" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(claims_of(&token)["role"], "member");
    let answer = app.introspect_ok(&app.admin_token, &token).await;
    assert_eq!(answer["role"], "admin");
}

#[tokio::test]
async fn an_api_key_is_active_as_api_key_until_deleted() {
    let app = TestApp::spawn().await;
    let (org, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (id, key) = app.add_key(&token, "ci").await;
    let answer = app.introspect_ok(&app.admin_token, &key).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "api_key");
    assert_eq!(answer["uid"], user);
    assert_eq!(answer["org"], org);
    assert_eq!(answer["role"], "member");
    assert!(
        answer.get("exp").is_none(),
        "a key without expiry: {answer}"
    );
    assert!(answer.get("sid").is_none());

    let expires_at = app.now_millis() + 3_600_000;
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({ "name": "expiring", "expiresAt": expires_at }),
        )
        .await;
    let expiring = body(response).await["token"].as_str().unwrap().to_owned();
    let answer = app.introspect_ok(&app.admin_token, &expiring).await;
    assert_eq!(answer["exp"], expires_at / 1000);

    let response = app
        .post("/authheader/delete", Some(&token), &json!({ "id": id }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.introspect_ok(&app.admin_token, &key).await, inactive());
}

#[tokio::test]
async fn the_caller_must_authenticate_and_a_read_only_key_may_ask() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let response = app
        .post("/token/introspect", None, &json!({ "token": token }))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
    let response = app.introspect("garbage", &token).await;
    assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;

    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({ "name": "watcher", "readOnly": true }),
        )
        .await;
    let read_only = body(response).await["token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect_ok(&read_only, &token).await["active"], true);

    let response = app
        .post("/token/introspect", Some(&token), &json!({ "tokn": token }))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}
