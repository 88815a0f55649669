//! The session cache (`COREAUTH_SESSION_CACHE_TTL`): a request right after a change made through
//! this instance sees the change, though the state before it was just cached; a change made
//! through another instance on the same database is seen within the TTL.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error, body, refused_within};

/// An app whose cache keeps states for a minute, on either backend: whatever it answers right
/// after a change, only the change's invalidation can explain.
async fn cached_app() -> TestApp {
    TestApp::spawn_with(|s| s.session_cache_ttl = Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_logout_is_seen_at_once_though_the_session_was_cached() {
    let app = cached_app().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    assert_eq!(app.logout(&token).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    assert_error(
        app.renew(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn role_name_key_and_user_changes_are_seen_at_once() {
    let app = cached_app().await;
    let (org_id, user_id, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (key_id, key) = app.add_key(&token, "ci").await;
    assert_eq!(body(app.me(&token).await).await["role"], "member");
    assert_eq!(body(app.me(&key).await).await["role"], "member");

    let path = format!("/admin/orgs/{org_id}/members/{user_id}");
    let changed = app
        .patch(&path, Some(&app.admin_token), &json!({"role": "admin"}))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(body(app.me(&token).await).await["role"], "admin");
    assert_eq!(body(app.me(&key).await).await["role"], "admin");

    let renamed = app
        .patch(
            &format!("/admin/users/{user_id}"),
            Some(&app.admin_token),
            &json!({"first": "Renamed"}),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(body(app.me(&token).await).await["first"], "Renamed");

    let deleted = app
        .post("/authheader/delete", Some(&token), &json!({"id": key_id}))
        .await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    let deactivated = app
        .patch(
            &format!("/admin/users/{user_id}"),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(deactivated.status(), StatusCode::OK);
    assert_error(
        app.me(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn a_password_policy_change_shows_in_me_at_once() {
    let app = cached_app().await;
    let (org_id, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    assert!(body(app.me(&token).await).await["passwordExpiresAt"].is_null());
    let policy = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org_id}/password-policy"),
            Some(&app.admin_token),
            Some(&json!({"minLength": 12, "maxAgeDays": 90, "historyCount": 0, "rejectCommon": false, "requireMfa": false})),
        )
        .await;
    assert_eq!(policy.status(), StatusCode::OK);
    assert!(body(app.me(&token).await).await["passwordExpiresAt"].is_string());
}

#[tokio::test]
async fn another_instance_sees_a_logout_within_the_cache_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let ttl = Duration::from_millis(200);
    let first = TestApp::spawn_with(|s| {
        s.database_url = url.clone();
        s.session_cache_ttl = ttl;
    })
    .await;
    let second = TestApp::spawn_with(|s| {
        s.database_url = url.clone();
        s.session_cache_ttl = ttl;
    })
    .await;
    first.create_user("dev@acme.example", 1, "member").await;
    let token = first.login_ok("dev@acme.example", PASSWORD).await.token;
    assert_eq!(second.me(&token).await.status(), StatusCode::OK);
    let logged_out = Instant::now();
    assert_eq!(first.logout(&token).await.status(), StatusCode::NO_CONTENT);
    // The second instance may answer from its cache for up to the TTL, and no longer.
    refused_within(
        &second,
        &token,
        logged_out,
        ttl + Duration::from_millis(500),
    )
    .await;
}

#[tokio::test]
async fn on_sqlite_a_write_by_another_process_empties_the_cache_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    // SQLite's default: states kept for a minute, unless another process writes to the file.
    let first = TestApp::spawn_with(|s| s.database_url = url.clone()).await;
    let second = TestApp::spawn_with(|s| s.database_url = url.clone()).await;
    first.create_user("dev@acme.example", 1, "member").await;
    let token = first.login_ok("dev@acme.example", PASSWORD).await.token;
    assert_eq!(second.me(&token).await.status(), StatusCode::OK);
    let logged_out = Instant::now();
    assert_eq!(first.logout(&token).await.status(), StatusCode::NO_CONTENT);
    // The second one checks SQLite's data_version every second, and forgets what it holds
    // when another connection committed.
    refused_within(&second, &token, logged_out, Duration::from_millis(2500)).await;
}

/// A login reads its org's SSO configuration and password policy from the cache: one changed
/// through this instance applies to the very next login.
#[tokio::test]
async fn an_org_setting_changed_applies_to_the_next_login_though_it_was_cached() {
    let app = cached_app().await;
    let (org_id, _, _) = app.member_of_new_org("Acme", "dev@acme.example").await;
    // Cached: no SSO configuration, the default policy.
    let first = body(app.login("dev@acme.example", PASSWORD, org_id).await).await;
    assert!(first["token"].is_string());
    assert!(first.get("mfaEnrollmentRequired").is_none());

    let sso = json!({"issuer": "https://idp.acme.example", "clientId": "coreauth",
                     "clientSecret": "client-secret-value", "emailDomains": ["acme.example"],
                     "allowJit": false, "allowPassword": false});
    let path = format!("/admin/orgs/{org_id}/sso");
    let put = async |config: &serde_json::Value| {
        app.send(
            reqwest::Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(config),
        )
        .await
        .status()
    };
    assert_eq!(put(&sso).await, StatusCode::OK);
    assert_error(
        app.login("dev@acme.example", PASSWORD, org_id).await,
        StatusCode::FORBIDDEN,
        "sso_required",
    )
    .await;
    let mut both = sso.clone();
    both["allowPassword"] = json!(true);
    assert_eq!(put(&both).await, StatusCode::OK);
    assert_eq!(
        app.login("dev@acme.example", PASSWORD, org_id)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(put(&sso).await, StatusCode::OK);
    assert_eq!(
        app.delete(&path, Some(&app.admin_token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.login("dev@acme.example", PASSWORD, org_id)
            .await
            .status(),
        StatusCode::OK
    );

    let policy = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org_id}/password-policy"),
            Some(&app.admin_token),
            Some(&json!({"minLength": 12, "maxAgeDays": 0, "historyCount": 0, "rejectCommon": false, "requireMfa": true})),
        )
        .await;
    assert_eq!(policy.status(), StatusCode::OK);
    let after = body(app.login("dev@acme.example", PASSWORD, org_id).await).await;
    assert_eq!(after["mfaEnrollmentRequired"], true);
}
