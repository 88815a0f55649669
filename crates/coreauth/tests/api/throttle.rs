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
    // 19 failures: the bootstrap admin's login from this address was right and was given back.
    let app = TestApp::spawn_with(|s| s.login_attempts_per_address = 19).await;
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

#[tokio::test]
async fn an_office_behind_one_address_signs_in_while_a_guesser_is_stopped() {
    // The defaults: 10 failures per account, 100 per address, 3000 attempts per address.
    let app = TestApp::spawn().await;
    let people: Vec<String> = (0..20)
        .map(|i| format!("person{i}@office.example"))
        .collect();
    for email in &people {
        app.create_user(email, 1, "member").await;
    }
    // 200 sign-ins from 127.0.0.1, all in the same minute of the server's clock, eight at a
    // time as people arrive.
    let app = std::sync::Arc::new(app);
    let mut statuses = Vec::new();
    for arrivals in (0..200).collect::<Vec<usize>>().chunks(8) {
        let mut logins = tokio::task::JoinSet::new();
        for &i in arrivals {
            let (app, email) = (app.clone(), people[i % people.len()].clone());
            logins.spawn(async move { app.login(&email, PASSWORD, 0).await.status() });
        }
        statuses.extend(logins.join_all().await);
    }
    assert_eq!(statuses.len(), 200);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every sign-in succeeded: {statuses:?}"
    );
    for _ in 0..10 {
        let response = app.login(&people[0], "a wrong guess", 0).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.login(&people[0], "a wrong guess", 0).await).await;
    // The guesser's account is locked, not the office.
    app.login_ok(&people[1], PASSWORD).await;
}

#[tokio::test]
async fn a_right_password_awaiting_its_second_factor_spends_no_address_guess() {
    let app = TestApp::spawn_with(|s| s.login_attempts_per_address = 3).await;
    app.create_user("two@example.com", 1, "member").await;
    let token = app.login_ok("two@example.com", PASSWORD).await.token;
    app.enrol_totp(&token).await;
    for _ in 0..6 {
        let response = app.login("two@example.com", PASSWORD, 0).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "mfa_required").await;
    }
    // Wrong codes are guesses: they count, against the account and the address.
    let wrong_code =
        json!({"email": "two@example.com", "password": PASSWORD, "mfaTokenCode": "000000"});
    for _ in 0..3 {
        let response = app.post("/user/authenticate", None, &wrong_code).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.post("/user/authenticate", None, &wrong_code).await).await;
}

#[tokio::test]
async fn all_attempts_from_one_address_have_a_cap_of_their_own() {
    let app = TestApp::spawn_with(|s| s.login_traffic_per_address = 6).await;
    app.create_user("busy@example.com", 1, "member").await;
    // The bootstrap admin's login at spawn was the first of the six.
    for _ in 0..5 {
        app.login_ok("busy@example.com", PASSWORD).await;
    }
    let wait = assert_throttled(app.login("busy@example.com", PASSWORD, 0).await).await;
    assert_throttled(app.login("other@example.com", "a guess", 0).await).await;
    app.advance(Duration::from_secs(wait));
    app.login_ok("busy@example.com", PASSWORD).await;
}

#[tokio::test]
async fn guesses_by_username_and_by_email_count_against_one_account() {
    let app = TestApp::spawn_with(|s| s.login_attempts_per_account = 3).await;
    let created = app
        .post(
            "/admin/users",
            Some(&app.admin_token),
            &json!({
                "email": "john.doe@example.com", "password": PASSWORD, "first": "John",
                "last": "Doe", "orgId": 1, "role": "member", "username": "john.doe",
            }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    app.login("john.doe", "wrong", 0).await;
    app.login("John.Doe", "wrong", 0).await;
    app.login("john.doe@example.com", "wrong", 0).await;
    // Neither name gets more guesses: the account is locked under both.
    assert_throttled(app.login("john.doe@example.com", PASSWORD, 0).await).await;
    assert_throttled(app.login("john.doe", PASSWORD, 0).await).await;
}
