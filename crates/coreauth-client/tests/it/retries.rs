//! Renewal failures, against a stand-in coreauth whose renewal answers are scripted: network
//! and server errors are retried with back-off a bounded number of times, never with a token
//! about to expire; other refusals end the session at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coreauth_client::clock::{Clock, ManualClock};
use coreauth_client::{Client, EndReason, Login, RenewalPolicy, SecretString, SessionStatus};
use serde_json::json;

const TTL_MS: i64 = 15 * 60_000;

#[derive(Clone)]
struct Stub {
    clock: ManualClock,
    /// Statuses to answer renewals with, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    /// (client time, remaining life of the presented token in ms) of every renewal.
    renewals: Arc<Mutex<Vec<(i64, i64)>>>,
}

fn fake_token(iat_ms: i64, exp_ms: i64) -> String {
    let payload = json!({ "iat": iat_ms / 1000, "exp": exp_ms / 1000 }).to_string();
    format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
}

fn session_answer(now: i64) -> Json<serde_json::Value> {
    let exp = now + TTL_MS;
    Json(json!({
        "token": fake_token(now, exp),
        "expiresAt": exp,
        "user": {"id": 1, "uuid": "u", "first": "F", "last": "L", "email": "a@example.com",
                 "isActive": true, "isAdmin": false, "orgId": 1, "role": "member"},
    }))
}

async fn login(State(stub): State<Stub>) -> Json<serde_json::Value> {
    session_answer(stub.clock.now_millis())
}

async fn renew(State(stub): State<Stub>, headers: HeaderMap) -> Response {
    let now = stub.clock.now_millis();
    let presented = headers["authorization"].to_str().unwrap()["Bearer ".len()..].to_owned();
    let payload = URL_SAFE_NO_PAD
        .decode(presented.split('.').nth(1).unwrap())
        .unwrap();
    let exp: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let left = exp["exp"].as_i64().unwrap() * 1000 - now;
    stub.renewals.lock().unwrap().push((now, left));
    let status = stub.script.lock().unwrap().pop_front().unwrap_or(200);
    match status {
        200 => session_answer(now).into_response(),
        status => {
            let status = StatusCode::from_u16(status).unwrap();
            let code = if status.is_server_error() {
                "unavailable"
            } else {
                "invalid_request"
            };
            (status, Json(json!({"error": code, "message": "scripted"}))).into_response()
        }
    }
}

async fn spawn_stub(script: &[u16]) -> (Stub, String) {
    let stub = Stub {
        clock: ManualClock::starting_now(),
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        renewals: Arc::default(),
    };
    let router = Router::new()
        .route("/user/authenticate", post(login).get(renew))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (stub, url)
}

async fn log_in(stub: &Stub, url: &str, policy: RenewalPolicy) -> Client {
    Client::builder(url)
        .clock(Arc::new(stub.clock.clone()))
        .renewal_policy(policy)
        .login(Login::new("a@example.com", SecretString::from("pw")))
        .await
        .unwrap()
}

/// Waits (in real time, briefly) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("condition reached");
}

/// Once the `calls`-th renewal has failed: how long the client waits before the next attempt.
async fn back_off_after(stub: &Stub, client: &Client, calls: usize) -> i64 {
    until(|| stub.renewals.lock().unwrap().len() == calls).await;
    let failed_at = stub.clock.now_millis();
    let retry_at = || match client.status() {
        SessionStatus::Active {
            renew_at: Some(at), ..
        } if at > failed_at => Some(at),
        _ => None,
    };
    until(|| retry_at().is_some()).await;
    retry_at().unwrap() - failed_at
}

fn no_jitter() -> RenewalPolicy {
    RenewalPolicy {
        jitter: 0.0,
        ..RenewalPolicy::default()
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_back_off_until_a_renewal_succeeds() {
    let (stub, url) = spawn_stub(&[503, 502]).await;
    let client = log_in(&stub, &url, no_jitter()).await;
    let calls = || stub.renewals.lock().unwrap().len();

    stub.clock.advance(Duration::from_secs(10 * 60));
    let wait = back_off_after(&stub, &client, 1).await;
    assert!((500..=1_000).contains(&wait), "first back-off {wait} ms");
    stub.clock.advance(Duration::from_secs(1));
    let wait = back_off_after(&stub, &client, 2).await;
    assert!((1_000..=2_000).contains(&wait), "second back-off {wait} ms");

    stub.clock.advance(Duration::from_secs(2));
    until(|| calls() == 3).await;
    let renewed = stub.clock.now_millis() + TTL_MS;
    until(|| matches!(client.status(), SessionStatus::Active { expires_at: Some(at), .. } if at == renewed)).await;
    assert_eq!(calls(), 3);
}

#[tokio::test]
async fn renewal_gives_up_after_its_attempts_and_the_session_ends_before_the_token_expires() {
    let (stub, url) = spawn_stub(&[503; 100]).await;
    let policy = RenewalPolicy {
        max_attempts: 3,
        ..no_jitter()
    };
    let client = log_in(&stub, &url, policy).await;
    let calls = || stub.renewals.lock().unwrap().len();

    stub.clock.advance(Duration::from_secs(10 * 60));
    for attempt in 1..=3 {
        until(|| calls() == attempt).await;
        // Let the failure be recorded before moving past the next attempt.
        until(|| !matches!(client.status(), SessionStatus::Active { renew_at: Some(at), .. } if at <= stub.clock.now_millis())).await;
        stub.clock.advance(Duration::from_secs(30));
    }
    until(|| {
        matches!(
            client.status(),
            SessionStatus::Active { renew_at: None, .. }
        )
    })
    .await;
    // The token is still good: calls can go on with it, and nothing more is tried.
    stub.clock.advance(Duration::from_secs(3 * 60));
    assert!(client.token().await.is_ok());
    // Ten seconds before its expiry it is no longer sent; the session ends with the reason.
    stub.clock.advance(Duration::from_secs(2 * 60));
    let reason = tokio::time::timeout(Duration::from_secs(10), client.ended())
        .await
        .unwrap();
    assert!(
        matches!(&reason, EndReason::RenewalFailed(last) if last.contains("503")),
        "{reason:?}"
    );
    assert_eq!(calls(), 3);
    for (_, left) in stub.renewals.lock().unwrap().iter() {
        assert!(
            *left >= 10_000,
            "a renewal sent a token with {left} ms left"
        );
    }
}

#[tokio::test]
async fn a_refused_renewal_ends_the_session_without_retrying() {
    let (stub, url) = spawn_stub(&[400]).await;
    let client = log_in(&stub, &url, no_jitter()).await;
    stub.clock.advance(Duration::from_secs(10 * 60));
    let reason = tokio::time::timeout(Duration::from_secs(10), client.ended())
        .await
        .unwrap();
    assert_eq!(
        reason,
        EndReason::Refused {
            status: 400,
            code: "invalid_request".into()
        }
    );
    stub.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stub.renewals.lock().unwrap().len(), 1);
}
