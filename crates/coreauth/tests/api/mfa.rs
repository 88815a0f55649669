//! TOTP second factor and recovery codes (SPEC §8). Codes are computed from the enrolment secret
//! at the server's (moved) clock; nothing sleeps to wait for a window.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use totp_rs::Secret;

use crate::helpers::*;

const STEP: Duration = Duration::from_secs(30);

/// A user with TOTP on: `(user id, base32 secret, recovery codes)`.
async fn enrolled_user(app: &TestApp, email: &str) -> (i64, String, Vec<String>) {
    let id = app.create_user(email, 1, "member").await;
    let token = app.login_ok(email, PASSWORD).await.token;
    let (secret, codes) = app.enrol_totp(&token).await;
    (id, secret, codes)
}

/// The code for the server's current time shifted by `steps` steps.
fn code_at(secret: &str, app: &TestApp, steps: i64) -> String {
    app.totp_code(secret, steps)
}

async fn login_with(
    app: &TestApp,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> reqwest::Response {
    app.post(
        "/user/authenticate",
        None,
        &json!({"email": email, "password": password, "selectedOrg": 0, "mfaTokenCode": code}),
    )
    .await
}

#[tokio::test]
async fn enrolment_gives_secret_url_and_qr_and_needs_a_confirming_code() {
    let app = TestApp::spawn().await;
    app.create_user("new@example.com", 1, "member").await;
    let token = app.login_ok("new@example.com", PASSWORD).await.token;
    let enrollment = body(
        app.post("/user/mfa/totp/enroll", Some(&token), &json!({}))
            .await,
    )
    .await;
    let secret = enrollment["secret"].as_str().unwrap();
    assert_eq!(
        Secret::try_from_base32(secret).unwrap().to_vec().len(),
        20,
        "160-bit secret"
    );
    let url = enrollment["otpauthUrl"].as_str().unwrap();
    assert!(
        url.starts_with("otpauth://totp/coreauth:new%40example.com?"),
        "{url}"
    );
    assert!(url.contains(&format!("secret={secret}")));
    assert!(
        enrollment["qrCode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    assert_eq!(body(app.me(&token).await).await["mfaEnabled"], false);

    // Not active until confirmed: logging in needs no code yet.
    app.login_ok("new@example.com", PASSWORD).await;
    let wrong = app
        .post(
            "/user/mfa/totp/confirm",
            Some(&token),
            &json!({"code": "000000"}),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "mfa_invalid").await;
    let right = app
        .post(
            "/user/mfa/totp/confirm",
            Some(&token),
            &json!({"code": code_at(secret, &app, 0)}),
        )
        .await;
    assert_eq!(right.status(), StatusCode::OK);
    let codes = body(right).await["recoveryCodes"].as_array().unwrap().len();
    assert_eq!(codes, 10);
    assert_eq!(body(app.me(&token).await).await["mfaEnabled"], true);
    let again = app
        .post("/user/mfa/totp/enroll", Some(&token), &json!({}))
        .await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn login_asks_for_the_code_only_after_the_password() {
    let app = TestApp::spawn().await;
    let (_, secret, _) = enrolled_user(&app, "mfa@example.com").await;
    app.advance(STEP);

    let response = login_with(&app, "mfa@example.com", PASSWORD, None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let response = login_with(&app, "mfa@example.com", "wrong password", None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = login_with(
        &app,
        "mfa@example.com",
        "wrong password",
        Some(&code_at(&secret, &app, 0)),
    )
    .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = login_with(&app, "mfa@example.com", PASSWORD, Some("123456")).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "mfa_invalid").await;

    let code = code_at(&secret, &app, 0);
    let response = login_with(&app, "mfa@example.com", PASSWORD, Some(&code)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let replay = login_with(&app, "mfa@example.com", PASSWORD, Some(&code)).await;
    assert_error(replay, StatusCode::UNAUTHORIZED, "mfa_invalid").await;

    // One step of clock drift either way is tolerated; the next window's code works once.
    app.advance(STEP);
    let ahead = code_at(&secret, &app, 1);
    assert_eq!(
        login_with(&app, "mfa@example.com", PASSWORD, Some(&ahead))
            .await
            .status(),
        StatusCode::OK
    );
    app.advance(3 * STEP);
    let stale = code_at(&secret, &app, -2);
    let response = login_with(&app, "mfa@example.com", PASSWORD, Some(&stale)).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "mfa_invalid").await;
}

#[tokio::test]
async fn parallel_replays_of_one_code_succeed_once() {
    let app = TestApp::spawn().await;
    let (_, secret, _) = enrolled_user(&app, "race@example.com").await;
    app.advance(STEP);
    let body = json!({"email": "race@example.com", "password": PASSWORD, "mfaTokenCode": code_at(&secret, &app, 0)});
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let request = app.client.post(app.url("/user/authenticate")).json(&body);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    // The rest are refused: a reused code, or throttled (failed codes count as guesses).
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS];
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || refused.contains(s))
    );
}

#[tokio::test]
async fn recovery_codes_work_once_each_and_are_audited() {
    let app = TestApp::spawn().await;
    let (user, _, codes) = enrolled_user(&app, "lost@example.com").await;
    let response = login_with(
        &app,
        "lost@example.com",
        PASSWORD,
        Some(&codes[0].to_lowercase()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "case-insensitive");
    let again = login_with(&app, "lost@example.com", PASSWORD, Some(&codes[0])).await;
    assert_error(again, StatusCode::UNAUTHORIZED, "mfa_invalid").await;
    assert_eq!(
        login_with(&app, "lost@example.com", PASSWORD, Some(&codes[1]))
            .await
            .status(),
        StatusCode::OK
    );
    let made_up = login_with(&app, "lost@example.com", PASSWORD, Some("ABCDEF-GHJKMN")).await;
    assert_error(made_up, StatusCode::UNAUTHORIZED, "mfa_invalid").await;

    let page = body(
        app.get(
            &format!("/admin/audit?userId={user}&event=mfa.recovery_code_used"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let all = body(app.get("/admin/audit", Some(&app.admin_token)).await)
        .await
        .to_string();
    assert!(
        !all.contains(&codes[0]) && !all.contains(&codes[2]),
        "no recovery code in the trail"
    );
}

#[tokio::test]
async fn turning_totp_off_needs_a_code_or_the_password() {
    let app = TestApp::spawn().await;
    let (_, secret, _) = enrolled_user(&app, "off@example.com").await;
    app.advance(STEP);
    let token: Value = body(
        login_with(
            &app,
            "off@example.com",
            PASSWORD,
            Some(&code_at(&secret, &app, 0)),
        )
        .await,
    )
    .await;
    let token = token["token"].as_str().unwrap().to_owned();
    let delete = async |body: Value| {
        app.send(
            reqwest::Method::DELETE,
            "/user/mfa/totp",
            Some(&token),
            Some(&body),
        )
        .await
    };

    assert_error(
        delete(json!({"password": "wrong password"})).await,
        StatusCode::UNAUTHORIZED,
        "mfa_invalid",
    )
    .await;
    assert_error(
        delete(json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        delete(json!({"password": PASSWORD})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        delete(json!({"password": PASSWORD})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.login_ok("off@example.com", PASSWORD).await;
}

#[tokio::test]
async fn an_admin_resets_a_lost_second_factor() {
    let app = TestApp::spawn().await;
    let (user, _, _) = enrolled_user(&app, "phone-lost@example.com").await;
    app.create_user("peer@example.com", 1, "member").await;
    let peer = app.login_ok("peer@example.com", PASSWORD).await.token;
    let path = format!("/admin/users/{user}/mfa/reset");
    assert_error(
        app.post(&path, Some(&peer), &json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.post(&path, Some(&app.admin_token), &json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.login_ok("phone-lost@example.com", PASSWORD).await;
    let page = body(
        app.get("/admin/audit?event=mfa.reset", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(page["events"][0]["subjectUserId"], user);
}

#[tokio::test]
async fn an_org_that_requires_mfa_lets_members_only_enrol_until_they_do() {
    let app = TestApp::spawn().await;
    let policy = json!({"minLength": 12, "maxAgeDays": 0, "historyCount": 0, "rejectCommon": false, "requireMfa": true});
    let response = app
        .send(
            reqwest::Method::PUT,
            "/admin/orgs/1/password-policy",
            Some(&app.admin_token),
            Some(&policy),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.create_user("forced@example.com", 1, "member").await;
    let login = body(app.login("forced@example.com", PASSWORD, 0).await).await;
    assert_eq!(login["mfaEnrollmentRequired"], true);
    let token = login["token"].as_str().unwrap().to_owned();

    assert_error(
        app.get("/user/orgs", Some(&token)).await,
        StatusCode::FORBIDDEN,
        "mfa_enrollment_required",
    )
    .await;
    assert_error(
        app.post("/authheader/add", Some(&token), &json!({"name": "sneaky"}))
            .await,
        StatusCode::FORBIDDEN,
        "mfa_enrollment_required",
    )
    .await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    let enrollment = body(
        app.post("/user/mfa/totp/enroll", Some(&token), &json!({}))
            .await,
    )
    .await;
    let secret = enrollment["secret"].as_str().unwrap();
    let confirm = app
        .post(
            "/user/mfa/totp/confirm",
            Some(&token),
            &json!({"code": code_at(secret, &app, 0)}),
        )
        .await;
    assert_eq!(confirm.status(), StatusCode::OK);
    assert_eq!(
        app.get("/user/orgs", Some(&token)).await.status(),
        StatusCode::OK,
        "the same token, now unrestricted"
    );
    app.advance(STEP);
    let full = body(
        login_with(
            &app,
            "forced@example.com",
            PASSWORD,
            Some(&code_at(secret, &app, 0)),
        )
        .await,
    )
    .await;
    assert!(full.get("mfaEnrollmentRequired").is_none());
}

#[tokio::test]
async fn the_expired_password_path_asks_for_the_second_factor_too() {
    let app = TestApp::spawn().await;
    let (user, secret, _) = enrolled_user(&app, "both@example.com").await;
    let reset = json!({"newPassword": "temporary passphrase", "mustChange": true});
    app.post(
        &format!("/admin/users/{user}/password"),
        Some(&app.admin_token),
        &reset,
    )
    .await;
    let change = |code: Option<String>| {
        json!({"email": "both@example.com", "password": "temporary passphrase",
               "newPassword": "chosen passphrase", "mfaTokenCode": code})
    };
    let response = app
        .post("/user/password/expired", None, &change(None))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "mfa_required").await;
    app.advance(STEP);
    let response = app
        .post(
            "/user/password/expired",
            None,
            &change(Some(code_at(&secret, &app, 0))),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_secret_is_sealed_at_rest_and_survives_a_key_rotation() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    let old_key = coreauth::domain::secrets::SecretBox::generate_key().unwrap();
    let new_key = coreauth::domain::secrets::SecretBox::generate_key().unwrap();
    let first = TestApp::spawn_on(&database, |s| {
        s.secret_key = Some(old_key.clone().into());
    })
    .await;
    let (user, secret, _) = enrolled_user(&first, "sealed@example.com").await;
    let stored = first.store.totp_of(user).await.unwrap().unwrap();
    assert!(!stored.sealed_secret.contains(&secret), "not in clear");

    let rotated = TestApp::spawn_on(&database, |s| {
        s.secret_key = Some(new_key.clone().into());
        s.previous_secret_keys = Some(old_key.clone());
    })
    .await;
    rotated.advance(STEP);
    let code = code_at(&secret, &rotated, 0);
    assert_eq!(
        login_with(&rotated, "sealed@example.com", PASSWORD, Some(&code))
            .await
            .status(),
        StatusCode::OK
    );
    let resealed = rotated.store.totp_of(user).await.unwrap().unwrap();
    assert_ne!(
        resealed.sealed_secret.split('.').nth(1),
        stored.sealed_secret.split('.').nth(1),
        "re-sealed with the new key"
    );

    let new_only = TestApp::spawn_on(&database, |s| {
        s.secret_key = Some(new_key.clone().into());
    })
    .await;
    new_only.advance(3 * STEP);
    let code = code_at(&secret, &new_only, 0);
    assert_eq!(
        login_with(&new_only, "sealed@example.com", PASSWORD, Some(&code))
            .await
            .status(),
        StatusCode::OK
    );
}
