//! Throttling of guesses (issue 9, SECURITY-CHECKLIST 5 and 6): counted per account and per
//! address before any hashing, shared through the database, bounded in time.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const WINDOW: Duration = Duration::from_secs(15 * 60);

async fn assert_throttled(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after >= 1 && retry_after <= WINDOW.as_secs() + 1,
        "{retry_after}"
    );
    let body = body(response).await;
    assert_eq!(body["error"], "rate_limited");
    retry_after
}

#[tokio::test]
async fn a_parallel_burst_never_gets_more_guesses_than_the_limit() {
    let app = TestApp::spawn().await;
    app.create_user("target@example.com", 1, "member").await;
    let request = json!({"email": "target@example.com", "password": "guess guess guess"});
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/user/authenticate"))
                .json(&request);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in burst {
        statuses.push(attempt.await.unwrap());
    }
    let guessed = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        guessed, 10,
        "exactly the limit reached the password check: {statuses:?}"
    );
    assert_eq!(throttled, 40);
}

#[tokio::test]
async fn a_locked_account_opens_again_after_the_window_and_success_resets_it() {
    let app = TestApp::spawn().await;
    app.create_user("locked@example.com", 1, "member").await;
    for _ in 0..10 {
        let response = app.login("locked@example.com", "wrong password", 0).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let wait = assert_throttled(app.login("locked@example.com", "wrong password", 0).await).await;
    // Even the right password waits: the lock is bounded, not bypassable.
    assert_throttled(app.login("locked@example.com", PASSWORD, 0).await).await;
    app.advance(Duration::from_secs(wait));
    app.login_ok("locked@example.com", PASSWORD).await;

    // A success clears the account's count.
    for _ in 0..9 {
        app.login("locked@example.com", "wrong password", 0).await;
    }
    app.login_ok("locked@example.com", PASSWORD).await;
    for _ in 0..9 {
        let response = app.login("locked@example.com", "wrong password", 0).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn unknown_emails_are_counted_like_known_ones() {
    let app = TestApp::spawn().await;
    for _ in 0..10 {
        let response = app.login("nobody@example.com", "guess", 0).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.login("nobody@example.com", "guess", 0).await).await;
    assert_throttled(app.login("NOBODY@example.com", "guess", 0).await).await;
}

#[tokio::test]
async fn one_address_spraying_many_accounts_is_throttled() {
    let app = TestApp::spawn_with(|s| s.login_attempts_per_address = 20).await;
    // The bootstrap admin's login from this address was the first of the 20.
    for i in 0..19 {
        let response = app
            .login(&format!("user{i}@example.com"), "Winter2026!", 0)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.login("user99@example.com", "Winter2026!", 0).await).await;
}

#[tokio::test]
async fn password_change_guesses_are_throttled_too() {
    let app = TestApp::spawn().await;
    app.create_user("changer@example.com", 1, "member").await;
    let token = app.login_ok("changer@example.com", PASSWORD).await.token;
    let guess = json!({"currentPassword": "guess guess", "newPassword": "a new long passphrase"});
    for _ in 0..10 {
        let response = app.post("/user/password", Some(&token), &guess).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.post("/user/password", Some(&token), &guess).await).await;
    let expired = json!({"email": "changer@example.com", "password": "guess", "newPassword": "x y z long enough"});
    assert_throttled(app.post("/user/password/expired", None, &expired).await).await;
}

#[tokio::test]
async fn the_limits_and_window_are_settings() {
    let app = TestApp::spawn_with(|s| {
        s.login_attempts_per_account = 2;
        s.throttle_window = Duration::from_secs(60);
    })
    .await;
    app.login("a@example.com", "x", 0).await;
    app.login("a@example.com", "x", 0).await;
    let wait = assert_throttled(app.login("a@example.com", "x", 0).await).await;
    assert!(wait <= 61);
    app.advance(Duration::from_secs(61));
    assert_eq!(
        app.login("a@example.com", "x", 0).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
