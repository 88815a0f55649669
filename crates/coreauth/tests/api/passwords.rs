//! The password lifecycle (SPEC §5, §7): JWT login, org policies, expiry, changes, history,
//! admin resets, hash upgrades.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn set_policy(app: &TestApp, token: &str, org: i64, policy: Value) -> reqwest::Response {
    app.send(
        reqwest::Method::PUT,
        &format!("/admin/orgs/{org}/password-policy"),
        Some(token),
        Some(&policy),
    )
    .await
}

fn policy(min: u32, max_age: u32, history: u32, common: bool) -> Value {
    json!({"minLength": min, "maxAgeDays": max_age, "historyCount": history,
           "rejectCommon": common, "requireMfa": false, "requireVerifiedEmail": false})
}

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> reqwest::Response {
    app.post(
        "/user/password",
        Some(token),
        &json!({"currentPassword": current, "newPassword": new}),
    )
    .await
}

#[tokio::test]
async fn jwt_login_answers_in_the_seeds_shape() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("john.doe@acme.example", org, "member")
        .await;
    let response = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = body(response).await;
    assert_eq!(answer["Username"], "john.doe@acme.example");
    assert_eq!(answer["Email"], "john.doe@acme.example");
    assert_eq!(answer["Firstname"], "Test");
    assert_eq!(answer["Lastname"], "User");
    assert_eq!(answer["Id"].as_str().unwrap().len(), 36);
    assert!(answer["Created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        answer["PasswordExpiration"],
        Value::Null,
        "the default policy never expires"
    );
    let token = answer["Token"].as_str().unwrap();
    let me = body(app.me(token).await).await;
    assert_eq!(me["orgId"], org, "a session token of the default org");

    let response = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": "wrong one!"}),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = app
        .post(
            "/user/login",
            None,
            &json!({"username": "nobody@acme.example", "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn org_admins_read_and_set_their_policy_within_bounds() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("boss@acme.example", org, "admin").await;
    app.create_user("dev@acme.example", org, "member").await;
    let boss = app.login_ok("boss@acme.example", PASSWORD).await.token;
    let dev = app.login_ok("dev@acme.example", PASSWORD).await.token;

    let current = body(
        app.get(&format!("/admin/orgs/{org}/password-policy"), Some(&boss))
            .await,
    )
    .await;
    assert_eq!(current, policy(12, 0, 0, false), "the defaults");
    let response = set_policy(&app, &boss, org, policy(14, 90, 5, true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, policy(14, 90, 5, true));
    let current = body(
        app.get(&format!("/admin/orgs/{org}/password-policy"), Some(&boss))
            .await,
    )
    .await;
    assert_eq!(current, policy(14, 90, 5, true));

    assert_error(
        set_policy(&app, &dev, org, policy(8, 0, 0, false)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        set_policy(&app, &boss, 1, policy(8, 0, 0, false)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in [
        policy(4, 0, 0, false),
        policy(12, 99999, 0, false),
        policy(12, 0, 100, false),
    ] {
        assert_error(
            set_policy(&app, &boss, org, bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    let partial = json!({"minLength": 12});
    assert_error(
        set_policy(&app, &boss, org, partial).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        set_policy(&app, &app.admin_token, 4242, policy(12, 0, 0, false)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_password_older_than_the_policy_allows_is_expired_at_login() {
    let app = TestApp::spawn().await;
    let strict = app.create_org("Strict").await;
    let relaxed = app.create_org("Relaxed").await;
    let user = app.create_user("aging@example.com", strict, "member").await;
    app.add_member(relaxed, user, "member").await;
    assert_eq!(
        set_policy(&app, &app.admin_token, strict, policy(12, 30, 0, false))
            .await
            .status(),
        StatusCode::OK
    );

    let created = app.now_millis();
    let login = body(
        app.post(
            "/user/login",
            None,
            &json!({"username": "aging@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    let expiry = coreauth::domain::clock::iso8601(coreauth::domain::clock::from_millis(
        created + 30 * 24 * 3600 * 1000,
    ));
    assert_eq!(login["PasswordExpiration"], expiry.as_str());
    let me = body(app.me(login["Token"].as_str().unwrap()).await).await;
    assert_eq!(me["passwordExpiresAt"], expiry.as_str());

    app.advance(31 * DAY);
    let response = app.login("aging@example.com", PASSWORD, strict).await;
    assert_error(response, StatusCode::FORBIDDEN, "password_expired").await;
    let response = app
        .post(
            "/user/login",
            None,
            &json!({"username": "aging@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "password_expired").await;
    // Only with the right password does the answer say "expired".
    let response = app
        .login("aging@example.com", "not the password", strict)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Held to the org they log in to.
    let other = app.login_to("aging@example.com", PASSWORD, relaxed).await;
    assert_eq!(other.user.org_id, relaxed);
}

#[tokio::test]
async fn an_expired_password_is_replaced_without_a_token() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Strict").await;
    app.create_user("late@example.com", org, "member").await;
    set_policy(&app, &app.admin_token, org, policy(12, 30, 0, false)).await;
    let expired = |password: &str, new: &str| json!({"email": "late@example.com", "password": password, "newPassword": new, "selectedOrg": org});

    let response = app
        .post(
            "/user/password/expired",
            None,
            &expired(PASSWORD, "a brand new passphrase"),
        )
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("not expired"), "{message}");

    app.advance(31 * DAY);
    let response = app
        .post(
            "/user/password/expired",
            None,
            &expired("wrong password", "a brand new passphrase"),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = app
        .post("/user/password/expired", None, &expired(PASSWORD, "short"))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/user/password/expired",
            None,
            &expired(PASSWORD, "a brand new passphrase"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    app.login_ok("late@example.com", "a brand new passphrase")
        .await;
    assert_error(
        app.login("late@example.com", PASSWORD, 0).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn changing_ones_password_ends_the_other_sessions_only() {
    let app = TestApp::spawn().await;
    app.create_user("me@example.com", 1, "member").await;
    let here = app.login_ok("me@example.com", PASSWORD).await.token;
    let elsewhere = app.login_ok("me@example.com", PASSWORD).await.token;

    assert_error(
        change(&app, &here, "wrong current", "another long passphrase").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(
        change(&app, &here, PASSWORD, "short").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let response = change(&app, &here, PASSWORD, "another long passphrase").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.me(&here).await.status(), StatusCode::OK);
    assert_error(
        app.me(&elsewhere).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    app.login_ok("me@example.com", "another long passphrase")
        .await;
    assert_error(
        app.login("me@example.com", PASSWORD, 0).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn recent_passwords_cannot_be_reused() {
    let app = TestApp::spawn().await;
    app.create_user("cycler@example.com", 1, "member").await;
    set_policy(&app, &app.admin_token, 1, policy(12, 0, 3, false)).await;
    let token = app.login_ok("cycler@example.com", PASSWORD).await.token;
    let (a, b, c, d) = (
        PASSWORD,
        "second passphrase",
        "third passphrase",
        "fourth passphrase",
    );
    assert_eq!(
        change(&app, &token, a, b).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        change(&app, &token, b, c).await.status(),
        StatusCode::NO_CONTENT
    );
    for reused in [a, b, c] {
        let message = assert_error(
            change(&app, &token, c, reused).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert!(message.contains("last 3"), "{message}");
    }
    assert_eq!(
        change(&app, &token, c, d).await.status(),
        StatusCode::NO_CONTENT
    );
    // Now the last three are d, c, b: a is allowed again.
    assert_eq!(
        change(&app, &token, d, a).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn common_passwords_are_refused_when_the_policy_says_so() {
    let app = TestApp::spawn().await;
    set_policy(&app, &app.admin_token, 1, policy(8, 0, 0, true)).await;
    let create = |password: &str| json!({"email": "c@example.com", "password": password, "first": "C", "last": "D", "orgId": 1, "role": "member"});
    for common in ["password", "Baseball", "qwertyuiop", "1qaz2wsx"] {
        let response = app
            .post("/admin/users", Some(&app.admin_token), &create(common))
            .await;
        let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(message.contains("common"), "{message}");
    }
    let response = app
        .post(
            "/admin/users",
            Some(&app.admin_token),
            &create("violet-lantern-42"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = app
        .login_ok("c@example.com", "violet-lantern-42")
        .await
        .token;
    assert_error(
        change(&app, &token, "violet-lantern-42", "iloveyou").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn an_admin_reset_with_must_change_forces_a_new_password() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let user = app
        .create_user("forgetful@acme.example", org, "member")
        .await;
    let session = app.login_ok("forgetful@acme.example", PASSWORD).await.token;
    app.create_user("peer@acme.example", org, "member").await;
    let peer = app.login_ok("peer@acme.example", PASSWORD).await.token;
    let reset = json!({"newPassword": "temporary passphrase", "mustChange": true});

    let response = app
        .post(
            &format!("/admin/users/{user}/password"),
            Some(&peer),
            &reset,
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .post(
            &format!("/admin/users/{user}/password"),
            Some(&app.admin_token),
            &reset,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&session).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;

    let response = app
        .login("forgetful@acme.example", "temporary passphrase", 0)
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "password_expired").await;
    let response = app
        .post(
            "/user/password/expired",
            None,
            &json!({"email": "forgetful@acme.example",
            "password": "temporary passphrase", "newPassword": "my own passphrase"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.login_ok("forgetful@acme.example", "my own passphrase")
        .await;
}

#[tokio::test]
async fn a_weaker_hash_is_upgraded_at_the_next_login() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    let old = TestApp::spawn_on(&database, |s| {
        s.argon2_memory_kib = 512;
    })
    .await;
    let id = old.create_user("legacy@example.com", 1, "member").await;
    let before = old.store.user_by_id(id).await.unwrap().unwrap();
    assert!(before.password_hash.as_deref().unwrap().contains("m=512,"));

    let new = TestApp::spawn_on(&database, |s| {
        s.argon2_memory_kib = 2048;
    })
    .await;
    new.login_ok("legacy@example.com", PASSWORD).await;
    let after = new.store.user_by_id(id).await.unwrap().unwrap();
    assert!(
        after.password_hash.as_deref().unwrap().contains("m=2048,"),
        "{:?}",
        after.password_hash
    );
    assert_eq!(
        after.password_set_at, before.password_set_at,
        "the password's age is unchanged"
    );
    new.login_ok("legacy@example.com", PASSWORD).await;
}

#[tokio::test]
async fn password_events_are_audited_without_the_passwords() {
    let app = TestApp::spawn().await;
    app.create_user("audited@example.com", 1, "member").await;
    let token = app.login_ok("audited@example.com", PASSWORD).await.token;
    change(&app, &token, "wrong current pw", "audited new passphrase").await;
    change(&app, &token, PASSWORD, "audited new passphrase").await;
    set_policy(&app, &app.admin_token, 1, policy(12, 0, 2, false)).await;
    let page = body(
        app.get(
            "/admin/audit?event=password.changed",
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let outcomes: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(outcomes, vec![json!("success"), json!("failure")]);
    let all = body(app.get("/admin/audit", Some(&app.admin_token)).await)
        .await
        .to_string();
    assert!(all.contains("policy.updated"));
    assert!(!all.contains("audited new passphrase") && !all.contains(PASSWORD));
}

#[tokio::test]
async fn a_new_password_meets_the_strictest_policy_of_the_users_orgs() {
    let app = TestApp::spawn().await;
    let home = app.create_org_with_domains("Home", &["home.example"]).await;
    let strict = app.create_org("Strict").await;
    let boss_id = app.create_user("boss@home.example", home, "admin").await;
    let _ = boss_id;
    let user = app.create_user("dual@home.example", home, "member").await;
    app.add_member(strict, user, "member").await;
    assert_eq!(
        set_policy(&app, &app.admin_token, strict, policy(20, 0, 0, false))
            .await
            .status(),
        StatusCode::OK
    );
    let boss = app.login_ok("boss@home.example", PASSWORD).await.token;
    let path = format!("/admin/users/{user}/password");
    // Long enough for Home's policy, not for Strict's: one password opens both.
    let response = app
        .post(
            &path,
            Some(&boss),
            &json!({"newPassword": "fourteen chars"}),
        )
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("20"), "{message}");
    let own = app.login_ok("dual@home.example", PASSWORD).await.token;
    let response = change(&app, &own, PASSWORD, "fourteen chars").await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            &path,
            Some(&boss),
            &json!({"newPassword": "twenty characters or more"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// Seed 004 as a client written from it would call it: more fields than the seed names, and
/// a user with a second factor sending it as `mfaTokenCode`.
#[tokio::test]
async fn the_seed_login_ignores_unknown_fields_and_takes_a_second_factor() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("john.doe@acme.example", org, "member")
        .await;
    let response = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": PASSWORD,
                "rememberMe": true, "client": "legacy-portal"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = body(response).await["Token"].as_str().unwrap().to_owned();
    let (secret, _) = app.enrol_totp(&token).await;

    let without = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": PASSWORD}),
        )
        .await;
    assert_error(without, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let wrong = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": PASSWORD,
                "mfaTokenCode": "000000"}),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "mfa_invalid").await;
    app.advance(Duration::from_secs(30));
    let with = app
        .post(
            "/user/login",
            None,
            &json!({"username": "john.doe@acme.example", "password": PASSWORD,
                "mfaTokenCode": app.totp_code(&secret, 0)}),
        )
        .await;
    assert_eq!(with.status(), StatusCode::OK);
    let token = body(with).await["Token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}
