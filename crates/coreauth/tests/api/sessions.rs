//! Renewal, logout, and the caller's own view: `/user/me`, `/user/orgs`, `/user/sessions`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn renewal_gives_a_new_token_and_the_old_one_stays_valid() {
    let app = TestApp::spawn().await;
    let old = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.advance(10 * MINUTE);
    let response = app.renew(&old.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let renewed: coreauth_proto::AuthenticateResponse = response.json().await.unwrap();
    assert_ne!(renewed.token, old.token);
    assert_eq!(
        renewed.expires_at,
        (app.now_millis() + 15 * 60_000) / 1000 * 1000
    );
    assert!(renewed.expires_at > old.expires_at);
    assert_eq!(renewed.user, old.user, "same answer shape and user");
    assert_eq!(
        claims_of(&renewed.token)["sid"],
        claims_of(&old.token)["sid"]
    );

    // The old token still works until its own expiry, then only the new one does.
    assert_eq!(app.me(&old.token).await.status(), StatusCode::OK);
    app.advance(5 * MINUTE);
    assert_eq!(app.me(&old.token).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.me(&renewed.token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_expired_token_cannot_renew() {
    let app = TestApp::spawn().await;
    let token = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    app.advance(16 * MINUTE);
    assert_error(
        app.renew(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn no_renewal_takes_a_session_past_its_cap() {
    let app = TestApp::spawn_with(|s| s.session_max = Duration::from_secs(3600)).await;
    let login = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let cap = login_time_cap(&app, 3600);
    let mut token = login.token;
    let mut last_expiry = login.expires_at;
    for _ in 0..4 {
        app.advance(14 * MINUTE);
        let renewed: coreauth_proto::AuthenticateResponse =
            app.renew(&token).await.json().await.unwrap();
        assert!(renewed.expires_at <= cap, "never past login + session max");
        token = renewed.token;
        last_expiry = renewed.expires_at;
    }
    assert_eq!(last_expiry, cap, "the last renewal is cut at the cap");
    app.advance(5 * MINUTE); // 61 minutes after login
    assert_error(
        app.renew(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    assert_eq!(app.me(&token).await.status(), StatusCode::FORBIDDEN);
}

/// Login time + the cap, in the whole seconds a token's `exp` has.
fn login_time_cap(app: &TestApp, max_secs: i64) -> i64 {
    (app.now_millis() + max_secs * 1000) / 1000 * 1000
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_session_and_only_that_session() {
    let app = TestApp::spawn().await;
    let first = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let renewed: coreauth_proto::AuthenticateResponse =
        app.renew(&first).await.json().await.unwrap();
    let other_session = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;

    let response = app.logout(&renewed.token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&first, &renewed.token] {
        assert_error(
            app.me(token).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
        assert_error(
            app.renew(token).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
    }
    assert_eq!(app.me(&other_session).await.status(), StatusCode::OK);
    assert_error(
        app.logout(&first).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn me_tells_who_which_org_role_and_how() {
    let app = TestApp::spawn().await;
    let me = body(app.me(&app.admin_token).await).await;
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["orgId"], 1);
    assert_eq!(me["orgName"], "Default");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["isAdmin"], true);
    assert_eq!(me["isPlatformAdmin"], true);
    assert_eq!(me["authMethod"], "session");
    assert_eq!(me["sessionId"], claims_of(&app.admin_token)["sid"]);
}

#[tokio::test]
async fn orgs_lists_the_callers_orgs_with_their_ids() {
    let app = TestApp::spawn().await;
    let acme = app.create_org("Acme").await;
    let globex = app.create_org("Globex").await;
    let id = app.create_user("two@example.com", acme, "member").await;
    app.add_member(globex, id, "admin").await;
    let token = app.login_ok("two@example.com", PASSWORD).await.token;
    let orgs = body(app.get("/user/orgs", Some(&token)).await).await;
    assert_eq!(
        orgs,
        json!([
            {"id": acme, "name": "Acme", "role": "member", "isAdmin": false, "isActive": true},
            {"id": globex, "name": "Globex", "role": "admin", "isAdmin": true, "isActive": true},
        ])
    );
}

#[tokio::test]
async fn a_user_lists_and_ends_their_own_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("owner@example.com", 1, "member").await;
    let laptop = app.login_ok("owner@example.com", PASSWORD).await.token;
    let phone = app.login_ok("owner@example.com", PASSWORD).await.token;

    let sessions = body(app.get("/user/sessions", Some(&laptop)).await).await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], claims_of(&laptop)["sid"]);
    assert_eq!(current[0]["client"], "core-client");
    assert_eq!(current[0]["address"], "127.0.0.1");

    let phone_sid = claims_of(&phone)["sid"].as_str().unwrap().to_owned();
    let response = app
        .delete(&format!("/user/sessions/{phone_sid}"), Some(&laptop))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&phone).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.me(&laptop).await.status(), StatusCode::OK);
    let sessions = body(app.get("/user/sessions", Some(&laptop)).await).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn someone_elses_session_is_not_found() {
    let app = TestApp::spawn().await;
    app.create_user("mallory@example.com", 1, "member").await;
    let mallory = app.login_ok("mallory@example.com", PASSWORD).await.token;
    let admin_sid = claims_of(&app.admin_token)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .delete(&format!("/user/sessions/{admin_sid}"), Some(&mallory))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&app.admin_token).await.status(), StatusCode::OK);
    let response = app
        .delete("/user/sessions/no-such-session", Some(&mallory))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn expired_sessions_drop_out_of_the_list() {
    let app = TestApp::spawn().await;
    app.create_user("list@example.com", 1, "member").await;
    app.login_ok("list@example.com", PASSWORD).await;
    app.advance(16 * MINUTE);
    let fresh = app.login_ok("list@example.com", PASSWORD).await.token;
    let sessions = body(app.get("/user/sessions", Some(&fresh)).await).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_list_shows_renewals_at_once_though_they_are_written_in_batches() {
    let app = TestApp::spawn().await;
    app.create_user("renewer@example.com", 1, "member").await;
    let mut token = app.login_ok("renewer@example.com", PASSWORD).await.token;
    // Renewed three times, each a minute before its token ends: the database's token expiry,
    // until the batch is written, is the login's, which is over by now.
    for _ in 0..3 {
        app.advance(14 * MINUTE);
        let renewed: coreauth_proto::AuthenticateResponse =
            app.renew(&token).await.json().await.unwrap();
        token = renewed.token;
    }
    let sessions = body(app.get("/user/sessions", Some(&token)).await).await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "the renewed session is live: {sessions:?}"
    );
    assert_eq!(sessions[0]["renewCount"], 3);
    assert!(sessions[0]["lastRenewedAt"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_renewals_and_a_logout_leave_no_token_of_the_session_alive() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    app.create_user("racer@example.com", 1, "member").await;
    let login = app.login_ok("racer@example.com", PASSWORD).await.token;

    let mut renewals = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (app, token) = (app.clone(), login.clone());
        renewals.spawn(async move {
            let response = app.renew(&token).await;
            let status = response.status();
            let renewed = if status == StatusCode::OK {
                let answer: coreauth_proto::AuthenticateResponse = response.json().await.unwrap();
                Some(answer.token)
            } else {
                None
            };
            (status, renewed)
        });
    }
    let logout = {
        let (app, token) = (app.clone(), login.clone());
        tokio::spawn(async move { app.logout(&token).await.status() })
    };
    let mut tokens = vec![login];
    while let Some(done) = renewals.join_next().await {
        let (status, renewed) = done.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::FORBIDDEN,
            "a renewal racing a logout answers 200 or 403, got {status}"
        );
        tokens.extend(renewed);
    }
    assert_eq!(logout.await.unwrap(), StatusCode::NO_CONTENT);
    for token in &tokens {
        assert_error(
            app.me(token).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
        assert_error(
            app.renew(token).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
    }
}

#[tokio::test]
async fn thirty_two_concurrent_renewals_and_a_logout_leave_no_5xx_and_no_live_token() {
    let app = TestApp::spawn().await;
    let token = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let renewals: Vec<_> = (0..32)
        .map(|_| {
            let request = app
                .client
                .get(app.url("/user/authenticate"))
                .bearer_auth(&token);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body["token"].as_str().map(str::to_owned))
            })
        })
        .collect();
    let logout = app.logout(&token).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let mut issued = vec![token];
    for renewal in renewals {
        let (status, token) = renewal.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::FORBIDDEN,
            "{status}"
        );
        issued.extend(token);
    }
    for token in issued {
        assert_eq!(
            app.me(&token).await.status(),
            StatusCode::FORBIDDEN,
            "every token of the session ended"
        );
    }
}
