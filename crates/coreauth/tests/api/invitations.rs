//! Invitations: an admin invites an address, the invitee follows the mailed link (here from the
//! outbox) and joins as a new account or signed in to their own.

use reqwest::StatusCode;
use serde_json::json;

use crate::email::{NEW_PASSWORD, mail, token_in};
use crate::helpers::*;

pub(crate) async fn invite(app: &TestApp, token: &str, org: i64, email: &str) -> reqwest::Response {
    app.post(
        &format!("/admin/orgs/{org}/invitations"),
        Some(token),
        &json!({ "email": email, "role": "member" }),
    )
    .await
}

pub(crate) async fn accept(app: &TestApp, token: &str, session: Option<&str>) -> reqwest::Response {
    let body = match session {
        Some(_) => json!({ "token": token }),
        None => json!({ "token": token, "password": NEW_PASSWORD, "first": "Ann", "last": "Lee" }),
    };
    app.post("/user/invitations/accept", session, &body).await
}

#[tokio::test]
async fn an_invitee_accepts_sets_a_password_and_signs_in_with_the_role() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let response = invite(&app, &app.admin_token, org, "ann@elsewhere.example").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invitation = body(response).await;
    assert_eq!(invitation["state"], "pending");
    let message = mail(&app, "You are invited", 1).await.pop().unwrap();
    assert!(message.contains("You are invited to Acme"), "{message}");
    let token = token_in(&message, "/user/invitations/accept");

    let accepted = accept(&app, &token, None).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_eq!(body(accepted).await["orgId"], org);
    let session = app
        .login_to("ann@elsewhere.example", NEW_PASSWORD, org)
        .await;
    assert_eq!(session.user.role, "member");
    assert_error(
        accept(&app, &token, None).await,
        StatusCode::BAD_REQUEST,
        "token_used",
    )
    .await;
    let listed = body(
        app.get(
            &format!("/admin/orgs/{org}/invitations"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(listed[0]["state"], "accepted");
}

#[tokio::test]
async fn an_existing_account_accepts_signed_in_and_invitations_are_resent_and_revoked() {
    let app = TestApp::spawn().await;
    let (_, _, dev) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let globex = app.create_org("Globex").await;
    let invitation = body(invite(&app, &app.admin_token, globex, "dev@acme.example").await).await;
    let first = token_in(
        &mail(&app, "You are invited", 1).await.pop().unwrap(),
        "/user/invitations/accept",
    );
    let id = invitation["id"].as_str().unwrap();
    let resent = app
        .post(
            &format!("/admin/orgs/{globex}/invitations/{id}/resend"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::OK);
    let second = token_in(
        &mail(&app, "You are invited", 2).await.pop().unwrap(),
        "/user/invitations/accept",
    );
    assert_error(
        accept(&app, &first, Some(&dev)).await,
        StatusCode::BAD_REQUEST,
        "token_superseded",
    )
    .await;
    // Without signing in, the account's password cannot be chosen by whoever holds the link.
    assert_error(
        accept(&app, &second, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        accept(&app, &second, Some(&dev)).await.status(),
        StatusCode::CREATED
    );
    app.login_to("dev@acme.example", PASSWORD, globex).await;

    let other = body(invite(&app, &app.admin_token, globex, "zed@elsewhere.example").await).await;
    let token = token_in(
        &mail(&app, "You are invited", 3).await.pop().unwrap(),
        "/user/invitations/accept",
    );
    let revoked = app
        .delete(
            &format!(
                "/admin/orgs/{globex}/invitations/{}",
                other["id"].as_str().unwrap()
            ),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_error(
        accept(&app, &token, None).await,
        StatusCode::BAD_REQUEST,
        "token_used",
    )
    .await;
}

#[tokio::test]
async fn invitations_are_their_orgs_alone() {
    let app = TestApp::spawn().await;
    let acme = app.create_org_with_domains("Acme", &["acme.example"]).await;
    app.create_user("boss@acme.example", acme, "admin").await;
    let acme_admin = app.login_ok("boss@acme.example", PASSWORD).await.token;
    let globex = app
        .create_org_with_domains("Globex", &["globex.example"])
        .await;
    app.create_user("boss@globex.example", globex, "admin")
        .await;
    let globex_admin = app.login_ok("boss@globex.example", PASSWORD).await.token;
    let invitation = body(invite(&app, &acme_admin, acme, "new@elsewhere.example").await).await;
    let id = invitation["id"].as_str().unwrap();
    assert_error(
        invite(&app, &globex_admin, acme, "x@elsewhere.example").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let path = format!("/admin/orgs/{acme}/invitations");
    assert_error(
        app.get(&path, Some(&globex_admin)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let theirs = app
        .delete(
            &format!("/admin/orgs/{globex}/invitations/{id}"),
            Some(&globex_admin),
        )
        .await;
    assert_error(theirs, StatusCode::NOT_FOUND, "not_found").await;
    let (_, _, member) = app
        .member_of_new_org("Initech", "dev@initech.example")
        .await;
    assert_error(
        invite(&app, &member, acme, "y@elsewhere.example").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let again = invite(&app, &acme_admin, acme, "new@elsewhere.example").await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;
}
