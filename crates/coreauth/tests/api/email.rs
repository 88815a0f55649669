//! Mail flows as a user meets them, on the default transport (the outbox folder beside the
//! database): password reset, invitations, address verification, an org's templates. The same
//! flows against a real SMTP server are in `tests/mail/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The messages in the app's outbox, oldest first, with quoted-printable undone (soft line
/// breaks joined, `=3D` read back as `=`), which is all a link needs.
pub(crate) fn outbox(app: &TestApp) -> Vec<String> {
    let dir: PathBuf = app.database.secret_key_file().with_file_name("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

/// Waits for the worker (it runs every second) to have written `count` messages that
/// contain `about` (a subject, say: accounts an admin creates get a verification link too).
pub(crate) async fn mail(app: &TestApp, about: &str, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let messages: Vec<String> = outbox(app)
            .into_iter()
            .filter(|m| m.contains(about))
            .collect();
        if messages.len() >= count {
            return messages;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {count} messages in 20 s",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token of the link to `page` in a message.
pub(crate) fn token_in(message: &str, page: &str) -> String {
    let marker = format!("{page}#token=");
    let start = message.find(&marker).expect("a link in the message") + marker.len();
    message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post("/user/password/forgot", None, &json!({ "email": email }))
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post(
        "/user/password/reset",
        None,
        &json!({ "token": token, "newPassword": password }),
    )
    .await
}

pub(crate) const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn forgot_then_reset_ends_the_old_sessions_and_the_new_password_signs_in() {
    let app = TestApp::spawn().await;
    let (_, _, old_session) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let response = forgot(&app, "Dev@Acme.example").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let messages = mail(&app, "Reset your Acme password", 1).await;
    let message = messages.last().unwrap();
    assert!(message.contains("To: dev@acme.example"), "{message}");
    assert!(message.contains("Reset your Acme password"), "{message}");
    let token = token_in(message, "/user/password/reset");
    assert_eq!(token.len(), 43, "256 bits");

    let done = reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(
        done.status(),
        StatusCode::NO_CONTENT,
        "{:?}",
        done.text().await
    );
    assert_error(
        app.me(&old_session).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    assert_error(
        app.login("dev@acme.example", PASSWORD, 0).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    app.login_ok("dev@acme.example", NEW_PASSWORD).await;
    // The page the link opens is coreauth's own, with no inline script.
    let page = app.get("/user/password/reset", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
}

#[tokio::test]
async fn a_reset_link_works_once_expires_and_dies_with_a_newer_one_or_a_password_change() {
    let app = TestApp::spawn().await;
    let (_, user, _) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let page = "/user/password/reset";
    forgot(&app, "dev@acme.example").await;
    let first = token_in(
        mail(&app, "Reset your Acme password", 1)
            .await
            .last()
            .unwrap(),
        page,
    );
    forgot(&app, "dev@acme.example").await;
    let second = token_in(
        mail(&app, "Reset your Acme password", 2)
            .await
            .last()
            .unwrap(),
        page,
    );
    assert_error(
        reset(&app, &first, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "token_superseded",
    )
    .await;
    assert_error(
        reset(&app, "made-up", NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "token_invalid",
    )
    .await;
    assert_eq!(
        reset(&app, &second, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        reset(&app, &second, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "token_used",
    )
    .await;

    forgot(&app, "dev@acme.example").await;
    let late = token_in(
        mail(&app, "Reset your Acme password", 3)
            .await
            .last()
            .unwrap(),
        page,
    );
    app.advance(Duration::from_secs(30 * 60 + 1));
    assert_error(
        reset(&app, &late, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "token_expired",
    )
    .await;

    forgot(&app, "dev@acme.example").await;
    let before_change = token_in(
        mail(&app, "Reset your Acme password", 4)
            .await
            .last()
            .unwrap(),
        page,
    );
    // The clock moved past the admin's token: a new session.
    let admin = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let admin_reset = app
        .post(
            &format!("/admin/users/{user}/password"),
            Some(&admin),
            &json!({ "newPassword": "set by the admin now" }),
        )
        .await;
    assert_eq!(admin_reset.status(), StatusCode::NO_CONTENT);
    assert_error(
        reset(&app, &before_change, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "token_superseded",
    )
    .await;
    // The policy holds for a reset as for any change.
    forgot(&app, "dev@acme.example").await;
    let short = token_in(
        mail(&app, "Reset your Acme password", 5)
            .await
            .last()
            .unwrap(),
        page,
    );
    assert_error(
        reset(&app, &short, "short").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn forgot_answers_alike_for_known_and_unknown_addresses() {
    let app = TestApp::spawn_with(|s| s.mails_per_recipient = 1000).await;
    app.member_of_new_org("Acme", "dev@acme.example").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..40 {
        for (email, times) in [
            ("dev@acme.example", &mut known),
            ("nobody@acme.example", &mut unknown),
        ] {
            let started = Instant::now();
            let response = forgot(&app, email).await;
            let took = started.elapsed();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            assert_eq!(response.text().await.unwrap(), "", "the same (empty) body");
            // The first rounds warm the caches and the connection up.
            if round >= 5 {
                times.push(took);
            }
        }
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.75..=1.25).contains(&ratio),
        "median known {known:?} vs unknown {unknown:?} (ratio {ratio:.2})"
    );
    // And the unknown address got nothing.
    let messages = mail(&app, "Reset your Acme password", 35).await;
    assert!(messages.iter().all(|m| !m.contains("nobody@acme.example")));
}

#[tokio::test]
async fn requests_for_one_address_are_throttled_whether_or_not_it_has_an_account() {
    let app = TestApp::spawn_with(|s| s.mails_per_recipient = 2).await;
    app.member_of_new_org("Acme", "dev@acme.example").await;
    for email in ["dev@acme.example", "nobody@acme.example"] {
        for _ in 0..2 {
            assert_eq!(forgot(&app, email).await.status(), StatusCode::ACCEPTED);
        }
        assert_error(
            forgot(&app, email).await,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
        )
        .await;
    }
    assert_error(
        forgot(&app, "not an address").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn an_org_may_require_a_verified_address_which_a_link_proves() {
    let app = TestApp::spawn().await;
    let org = app.create_org_with_domains("Acme", &["acme.example"]).await;
    let policy = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/password-policy"),
            Some(&app.admin_token),
            Some(&json!({"minLength": 12, "maxAgeDays": 0, "historyCount": 0,
                "rejectCommon": false, "requireVerifiedEmail": true})),
        )
        .await;
    assert_eq!(body(policy).await["requireVerifiedEmail"], true);
    app.create_user("dev@acme.example", org, "member").await;
    let message = mail(&app, "Confirm your address", 1).await.pop().unwrap();
    assert!(
        message.contains("Confirm your address for Acme"),
        "{message}"
    );
    assert_error(
        app.login("dev@acme.example", PASSWORD, 0).await,
        StatusCode::FORBIDDEN,
        "email_unverified",
    )
    .await;

    let resend = app
        .post(
            "/user/email/verify/resend",
            None,
            &json!({"email": "dev@acme.example"}),
        )
        .await;
    assert_eq!(resend.status(), StatusCode::ACCEPTED);
    let newer = token_in(
        &mail(&app, "Confirm your address", 2).await.pop().unwrap(),
        "/user/email/verify",
    );
    let older = token_in(&outbox(&app)[0], "/user/email/verify");
    let verify = |token: String| {
        let app = &app;
        async move {
            app.post("/user/email/verify", None, &json!({"token": token}))
                .await
        }
    };
    assert_error(
        verify(older).await,
        StatusCode::BAD_REQUEST,
        "token_superseded",
    )
    .await;
    assert_eq!(verify(newer.clone()).await.status(), StatusCode::NO_CONTENT);
    assert_error(verify(newer).await, StatusCode::BAD_REQUEST, "token_used").await;
    app.login_ok("dev@acme.example", PASSWORD).await;
}

#[tokio::test]
async fn an_orgs_template_and_sender_shape_its_mail_and_are_escaped() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme <& Co>").await;
    let settings = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/email-settings"),
            Some(&app.admin_token),
            Some(&json!({"fromName": "Acme People", "replyTo": "people@acme.example"})),
        )
        .await;
    assert_eq!(settings.status(), StatusCode::OK);
    let template = format!("/admin/orgs/{org}/email-templates/invitation");
    let set = app
        .send(
            reqwest::Method::PUT,
            &template,
            Some(&app.admin_token),
            Some(
                &json!({"subject": "Join {{ org }}", "textBody": "Welcome! {{ link }}",
                "htmlBody": "<p>Welcome to {{ org }}: <a href=\"{{ link }}\">join</a></p>"}),
            ),
        )
        .await;
    assert_eq!(body(set).await["custom"], true);
    for bad in [
        json!({"subject": "x", "textBody": "{{ nope }}"}),
        json!({"subject": "", "textBody": "x"}),
    ] {
        let refused = app
            .send(
                reqwest::Method::PUT,
                &template,
                Some(&app.admin_token),
                Some(&bad),
            )
            .await;
        assert_error(refused, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    crate::invitations::invite(&app, &app.admin_token, org, "ann@elsewhere.example").await;
    let message = mail(&app, "Join Acme", 1).await.pop().unwrap();
    assert!(message.contains("Join Acme <& Co>"), "{message}");
    assert!(
        message.contains("Welcome to Acme &lt;&amp; Co&gt;"),
        "{message}"
    );
    assert!(message.contains("Acme People"), "{message}");
    assert!(
        message.contains("Reply-To: people@acme.example"),
        "{message}"
    );
    let shown: Value = body(
        app.get(
            &format!("/admin/orgs/{org}/email-settings"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(shown["fromName"], "Acme People");
    let kinds: Vec<&str> = shown["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "invitation",
            "password_reset",
            "password_reset_sso",
            "email_verification"
        ]
    );
    let back = app.delete(&template, Some(&app.admin_token)).await;
    assert_eq!(body(back).await["custom"], false);
}

#[tokio::test]
async fn someone_whose_org_signs_them_in_through_sso_is_told_so_and_invitees_there_use_it() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("dev@acme.example", org, "member").await;
    let config = crate::sso::sso_config("https://idp.acme.example", &["acme.example"]);
    let configured = crate::sso::put_sso(&app, &app.admin_token, org, &config).await;
    assert_eq!(configured.status(), StatusCode::OK);
    assert_eq!(
        forgot(&app, "dev@acme.example").await.status(),
        StatusCode::ACCEPTED
    );
    let message = mail(&app, "Signing in to Acme", 1).await.pop().unwrap();
    assert!(message.contains("single sign-on"), "{message}");
    assert!(!message.contains("#token="), "no reset link: {message}");

    crate::invitations::invite(&app, &app.admin_token, org, "new@acme.example").await;
    let token = token_in(
        &mail(&app, "You are invited", 1).await.pop().unwrap(),
        "/user/invitations/accept",
    );
    assert_error(
        crate::invitations::accept(&app, &token, None).await,
        StatusCode::FORBIDDEN,
        "sso_required",
    )
    .await;
}
