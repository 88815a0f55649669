//! Every way in enforces the same checks (SECURITY-CHECKLIST 7): the password login, the
//! seed's JWT login, the documentation's sign-in form and the expired-password change all
//! refuse a wrong password, a deactivated user and a deactivated membership alike.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::*;

/// The status each login path answers for these credentials.
async fn statuses(app: &TestApp, email: &str, password: &str) -> Vec<(&'static str, StatusCode)> {
    let authenticate = app.login(email, password, 0).await.status();
    let jwt = app
        .post(
            "/user/login",
            None,
            &json!({"username": email, "password": password}),
        )
        .await
        .status();
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let docs = browser
        .post(app.url("/docs/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
        .status();
    let expired = app
        .post(
            "/user/password/expired",
            None,
            &json!({"email": email, "password": password, "newPassword": "another long passphrase"}),
        )
        .await
        .status();
    vec![
        ("POST /user/authenticate", authenticate),
        ("POST /user/login", jwt),
        ("POST /docs/login", docs),
        ("POST /user/password/expired", expired),
    ]
}

#[tokio::test]
async fn every_login_path_refuses_the_same_people() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("active@acme.example", org, "admin").await;
    let gone = app.create_user("gone@acme.example", org, "member").await;
    let left = app.create_user("left@acme.example", org, "member").await;
    app.patch(
        &format!("/admin/users/{gone}"),
        Some(&app.admin_token),
        &json!({"isActive": false}),
    )
    .await;
    app.patch(
        &format!("/admin/orgs/{org}/members/{left}"),
        Some(&app.admin_token),
        &json!({"isActive": false}),
    )
    .await;

    for (path, status) in statuses(&app, "active@acme.example", "wrong password").await {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: wrong password");
    }
    for (path, status) in statuses(&app, "nobody@acme.example", PASSWORD).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: unknown email");
    }
    for (path, status) in statuses(&app, "gone@acme.example", PASSWORD).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: deactivated user");
    }
    for (path, status) in statuses(&app, "left@acme.example", PASSWORD).await {
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{path}: no active membership"
        );
    }
    let ok = statuses(&app, "active@acme.example", PASSWORD).await;
    assert_eq!(ok[0].1, StatusCode::OK);
    assert_eq!(ok[1].1, StatusCode::OK);
    assert_eq!(
        ok[2].1,
        StatusCode::SEE_OTHER,
        "the admin is signed in to the docs"
    );
    assert_eq!(
        ok[3].1,
        StatusCode::BAD_REQUEST,
        "a valid password has not expired"
    );
}
