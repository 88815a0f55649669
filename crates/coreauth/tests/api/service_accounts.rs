//! Service accounts, their keys, and key rotation with an overlap, on the injected clock.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, body};

/// An org with an admin who is not a platform admin: `(org id, admin's user id, their token)`.
async fn org_with_admin(app: &TestApp, name: &str) -> (i64, i64, String) {
    let domain = format!("{}.example", name.to_lowercase());
    let org = app.create_org_with_domains(name, &[&domain]).await;
    let email = format!("boss@{domain}");
    let admin = app.create_user(&email, org, "admin").await;
    let token = app.login_ok(&email, PASSWORD).await.token;
    (org, admin, token)
}

async fn create_account(app: &TestApp, token: &str, org: i64, role: &str) -> Value {
    let response = app
        .post(
            &format!("/admin/orgs/{org}/service-accounts"),
            Some(token),
            &json!({"name": "billing sync", "role": role}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await
}

/// A new service account's id.
async fn account_id(app: &TestApp, token: &str, org: i64, role: &str) -> String {
    let account = create_account(app, token, org, role).await;
    account["id"].as_str().unwrap().to_owned()
}

/// A key of service account `id`: `(key id, full key)`.
async fn account_key(
    app: &TestApp,
    token: &str,
    org: i64,
    id: &str,
    scopes: &[&str],
) -> (String, String) {
    let response = app
        .post(
            &format!("/admin/orgs/{org}/service-accounts/{id}/keys"),
            Some(token),
            &json!({"name": "prod", "scopes": scopes}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = body(response).await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_service_accounts_key_outlives_its_creator_but_a_persons_key_does_not() {
    let app = TestApp::spawn().await;
    let (org, boss, boss_token) = org_with_admin(&app, "Acme").await;
    // A second admin stays, so the org is still administered when the first leaves.
    app.create_user("deputy@acme.example", org, "admin").await;
    let account = create_account(&app, &boss_token, org, "admin").await;
    assert_eq!(account["role"], "admin");
    assert_eq!(account["isActive"], true);
    assert_eq!(account["orgId"], org);
    let id = account["id"].as_str().unwrap();
    let (_, service_key) = account_key(&app, &boss_token, org, id, &["keys:read"]).await;
    let (_, personal_key) = app.add_key(&boss_token, "mine").await;
    let listing = format!("/admin/orgs/{org}/service-accounts");
    assert_eq!(
        app.get(&listing, Some(&service_key)).await.status(),
        StatusCode::OK
    );

    let leaves = app
        .patch(
            &format!("/admin/users/{boss}"),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(leaves.status(), StatusCode::OK);
    assert_error(
        app.me(&personal_key).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    let listed = app.get(&listing, Some(&service_key)).await;
    assert_eq!(
        listed.status(),
        StatusCode::OK,
        "the integration keeps working"
    );
    assert_eq!(body(listed).await[0]["id"], id);
}

#[tokio::test]
async fn disabling_or_deleting_a_service_account_stops_its_keys_at_once() {
    let app = TestApp::spawn().await;
    let (org, _, token) = org_with_admin(&app, "Acme").await;
    let id = account_id(&app, &token, org, "member").await;
    let (_, key) = account_key(&app, &token, org, &id, &["read"]).await;
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);
    let account = format!("/admin/orgs/{org}/service-accounts/{id}");
    let disabled = app
        .patch(&account, Some(&token), &json!({"isActive": false}))
        .await;
    assert_eq!(body(disabled).await["isActive"], false);
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    let enabled = app
        .patch(
            &account,
            Some(&token),
            &json!({"isActive": true, "name": "renamed"}),
        )
        .await;
    assert_eq!(body(enabled).await["name"], "renamed");
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);

    let deleted = app.delete(&account, Some(&token)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    assert_error(
        app.get(&account, Some(&token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = body(
        app.get(&format!("/admin/orgs/{org}/service-accounts"), Some(&token))
            .await,
    )
    .await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_service_account_acts_with_its_role_and_is_no_person() {
    let app = TestApp::spawn().await;
    let (org, _, token) = org_with_admin(&app, "Acme").await;
    let id = account_id(&app, &token, org, "member").await;
    let (_, key) = account_key(&app, &token, org, &id, &["read", "keys:write"]).await;
    // Every scope, but a member's role: no admin calls.
    assert_error(
        app.get(&format!("/admin/orgs/{org}/service-accounts"), Some(&key))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let me = body(app.me(&key).await).await;
    assert_eq!(me["role"], "member");
    // It has no email to log in with, and a bad role or name is refused.
    for bad in [
        json!({"name": "x", "role": "owner"}),
        json!({"name": "", "role": "member"}),
    ] {
        let response = app
            .post(
                &format!("/admin/orgs/{org}/service-accounts"),
                Some(&token),
                &bad,
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Its keys are the org's keys too: an admin sees and deletes them there.
    let keys = body(
        app.get(&format!("/admin/orgs/{org}/authheaders"), Some(&token))
            .await,
    )
    .await;
    assert!(keys.as_array().unwrap().iter().any(|k| k["name"] == "prod"));
}

#[tokio::test]
async fn service_accounts_are_their_orgs_alone() {
    let app = TestApp::spawn().await;
    let (acme, _, acme_token) = org_with_admin(&app, "Acme").await;
    let (globex, _, globex_token) = org_with_admin(&app, "Globex").await;
    let id = account_id(&app, &acme_token, acme, "admin").await;
    let (key_id, _) = account_key(&app, &acme_token, acme, &id, &["read"]).await;
    // Globex's admin, through Acme's paths: forbidden; through Globex's: not found.
    for path in [
        format!("/admin/orgs/{acme}/service-accounts"),
        format!("/admin/orgs/{acme}/service-accounts/{id}"),
        format!("/admin/orgs/{acme}/service-accounts/{id}/keys"),
    ] {
        assert_error(
            app.get(&path, Some(&globex_token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let theirs = [
        app.get(
            &format!("/admin/orgs/{globex}/service-accounts/{id}"),
            Some(&globex_token),
        )
        .await,
        app.post(
            &format!("/admin/orgs/{globex}/service-accounts/{id}/keys"),
            Some(&globex_token),
            &json!({"name": "stolen"}),
        )
        .await,
        app.post(
            &format!("/admin/orgs/{globex}/service-accounts/{id}/keys/{key_id}/rotate"),
            Some(&globex_token),
            &json!({}),
        )
        .await,
        app.delete(
            &format!("/admin/orgs/{globex}/service-accounts/{id}"),
            Some(&globex_token),
        )
        .await,
    ];
    for response in theirs {
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let (_, _, member) = app
        .member_of_new_org("Initech", "dev@initech.example")
        .await;
    let created = app
        .post(
            &format!("/admin/orgs/{acme}/service-accounts"),
            Some(&member),
            &json!({"name": "x", "role": "member"}),
        )
        .await;
    assert_error(created, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        app.get(
            &format!("/admin/orgs/{acme}/service-accounts/{id}"),
            Some(&acme_token)
        )
        .await
        .status(),
        StatusCode::OK
    );
}

fn state_of<'a>(keys: &'a Value, id: &str) -> &'a Value {
    &keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()["state"]
}

#[tokio::test]
async fn a_rotated_key_works_until_its_overlap_ends_then_stops() {
    let app = TestApp::spawn().await;
    let (org, _, token) = org_with_admin(&app, "Acme").await;
    let id = account_id(&app, &token, org, "admin").await;
    let (old_id, old_key) = account_key(&app, &token, org, &id, &["keys:write"]).await;
    let keys_path = format!("/admin/orgs/{org}/service-accounts/{id}/keys");
    let rotate = format!("{keys_path}/{old_id}/rotate");

    let too_long = app
        .post(
            &rotate,
            Some(&token),
            &json!({"overlapSeconds": 7 * 24 * 3600 + 1}),
        )
        .await;
    assert_error(too_long, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The integration rotates its own key, with itself.
    let rotated = app
        .post(&rotate, Some(&old_key), &json!({"overlapSeconds": 3600}))
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated = body(rotated).await;
    let new_id = rotated["key"]["id"].as_str().unwrap().to_owned();
    let new_key = rotated["key"]["token"].as_str().unwrap().to_owned();
    assert_eq!(rotated["key"]["scopes"], json!(["keys:write"]));
    assert_eq!(rotated["replaced"]["state"], "rotating");
    assert_eq!(rotated["replaced"]["replacedBy"], new_id.as_str());
    assert_eq!(
        rotated["replaced"]["expiresAt"],
        app.now_millis() + 3_600_000
    );
    let again = app.post(&rotate, Some(&token), &json!({})).await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;

    for key in [&old_key, &new_key] {
        assert_eq!(
            app.get(&keys_path, Some(key)).await.status(),
            StatusCode::OK
        );
    }
    let keys = body(app.get(&keys_path, Some(&token)).await).await;
    assert_eq!(state_of(&keys, &old_id), "rotating");
    assert_eq!(state_of(&keys, &new_id), "active");

    app.advance(Duration::from_secs(3601));
    assert_error(
        app.get(&keys_path, Some(&old_key)).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    let keys = body(app.get(&keys_path, Some(&new_key)).await).await;
    assert_eq!(state_of(&keys, &old_id), "expired");
    assert_eq!(state_of(&keys, &new_id), "active");
}

#[tokio::test]
async fn a_persons_key_rotates_with_a_default_day_of_overlap_or_none() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (id, key) = app.add_key(&token, "ci").await;
    let rotated = body(
        app.post(
            &format!("/authheader/{id}/rotate"),
            Some(&token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        rotated["replaced"]["expiresAt"],
        app.now_millis() + 86_400_000
    );
    let next_id = rotated["key"]["id"].as_str().unwrap().to_owned();
    let next = rotated["key"]["token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);

    let now = body(
        app.post(
            &format!("/authheader/{next_id}/rotate"),
            Some(&token),
            &json!({"overlapSeconds": 0}),
        )
        .await,
    )
    .await;
    assert_error(
        app.me(&next).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    let newest = now["key"]["token"].as_str().unwrap();
    assert_eq!(app.me(newest).await.status(), StatusCode::OK);
    let unknown = app
        .post("/authheader/nope/rotate", Some(&token), &json!({}))
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    // Someone else's key, even in another org an admin runs, is not yours to rotate.
    let (theirs, _) = app.add_key(&app.admin_token, "admin's").await;
    let stolen = app
        .post(
            &format!("/authheader/{theirs}/rotate"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_error(stolen, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_key_survives_its_owners_password_expiry() {
    let app = TestApp::spawn().await;
    let (org, _, token) = org_with_admin(&app, "Acme").await;
    let (_, key) = app.add_key(&token, "ci").await;
    let policy = app
        .send(
            Method::PUT,
            &format!("/admin/orgs/{org}/password-policy"),
            Some(&token),
            Some(&json!({"minLength": 12, "maxAgeDays": 1, "historyCount": 0, "rejectCommon": false})),
        )
        .await;
    assert_eq!(policy.status(), StatusCode::OK);
    app.advance(Duration::from_secs(2 * 24 * 3600));
    let login = app.login("boss@acme.example", PASSWORD, 0).await;
    assert_error(login, StatusCode::FORBIDDEN, "password_expired").await;
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);
}
