//! API keys ("auth headers", SPEC §6, seed 004).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_key_is_shown_once_and_authenticates_like_a_session_token() {
    let app = TestApp::spawn().await;
    let (org, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "production-api-key"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created = body(response).await;
    let key = created["token"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cak_"));
    assert!(key.len() >= 4 + 43, "256 bits, base64url");
    assert_eq!(created["name"], "production-api-key");
    assert!(created["created"].as_str().unwrap().ends_with('Z'));

    for authorization in [key.clone(), format!("Bearer {key}")] {
        let response = app
            .client
            .get(app.url("/user/me"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let me = body(response).await;
        assert_eq!(me["id"], user);
        assert_eq!(me["orgId"], org);
        assert_eq!(me["role"], "member");
        assert_eq!(me["authMethod"], "api_key");
        assert_eq!(me["sessionId"], serde_json::Value::Null);
    }

    let list = body(app.get("/authheader/list", Some(&token)).await).await;
    let listed = &list.as_array().unwrap()[0];
    assert_eq!(listed["id"], created["id"]);
    assert_eq!(listed["name"], "production-api-key");
    let shown = listed["token"].as_str().unwrap();
    assert!(
        key.starts_with(shown) && shown.len() < 20,
        "only a recognisable prefix: {shown}"
    );
    assert!(
        !list.to_string().contains(&key),
        "the full key is never listed"
    );
}

#[tokio::test]
async fn a_key_lists_when_it_was_last_used() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, key) = app.add_key(&token, "ci").await;
    let list = body(app.get("/authheader/list", Some(&token)).await).await;
    assert_eq!(list[0]["lastUsed"], serde_json::Value::Null);
    app.advance(Duration::from_secs(30));
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);
    let list = body(app.get("/authheader/list", Some(&token)).await).await;
    let expected = coreauth::domain::clock::iso8601(app.clock_now());
    assert_eq!(list[0]["lastUsed"], expected.as_str());
}

#[tokio::test]
async fn key_usage_is_written_in_batches_and_survives_a_restart() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    let first = TestApp::spawn_on(&database, |_| {}).await;
    let (_, key) = first.add_key(&first.admin_token, "batch").await;
    assert_eq!(first.me(&key).await.status(), StatusCode::OK);
    first.state.keys.flush_usage().await.unwrap();

    let second = TestApp::spawn_on(&database, |_| {}).await;
    let list = body(second.get("/authheader/list", Some(&key)).await).await;
    // the second instance's own use of the key is pending; the first one's was written
    assert!(list[0]["lastUsed"].is_string());
    let stored = second.store.api_keys_of(1, 1).await.unwrap();
    assert!(stored[0].last_used_at.is_some(), "written to the database");
    assert_eq!(stored[0].last_used_address.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_key_is_not_subject_to_token_expiry_but_to_its_own() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, forever) = app.add_key(&token, "forever").await;
    let expires_at = app.now_millis() + 3_600_000;
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "hour", "expiresAt": expires_at}),
        )
        .await;
    let hour = body(response).await["token"].as_str().unwrap().to_owned();
    app.advance(Duration::from_secs(59 * 60));
    assert_eq!(app.me(&hour).await.status(), StatusCode::OK);
    app.advance(Duration::from_secs(2 * 60));
    assert_error(
        app.me(&hour).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    app.advance(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        app.me(&forever).await.status(),
        StatusCode::OK,
        "keys outlive sessions"
    );

    let past = app.now_millis() - 1;
    let fresh = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let response = app
        .post(
            "/authheader/add",
            Some(&fresh),
            &json!({"name": "past", "expiresAt": past}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn deleting_a_key_stops_it_at_once_by_text_or_by_id() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, by_text) = app.add_key(&token, "one").await;
    let (id, by_id) = app.add_key(&token, "two").await;

    let response = app
        .post(
            "/authheader/delete",
            Some(&token),
            &json!({"text": by_text}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, json!({"message": "Success"}));
    assert_error(
        app.me(&by_text).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;

    let response = app
        .post("/authheader/delete", Some(&token), &json!({"id": id}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error(
        app.me(&by_id).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;

    let again = app
        .post("/authheader/delete", Some(&token), &json!({"id": id}))
        .await;
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;
    let both = app
        .post(
            "/authheader/delete",
            Some(&token),
            &json!({"id": id, "text": by_text}),
        )
        .await;
    assert_error(both, StatusCode::BAD_REQUEST, "invalid_request").await;
    let neither = app
        .post("/authheader/delete", Some(&token), &json!({}))
        .await;
    assert_error(neither, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(
        body(app.get("/authheader/list", Some(&token)).await).await,
        json!([])
    );
}

#[tokio::test]
async fn someone_elses_key_cannot_be_deleted_or_even_detected() {
    let app = TestApp::spawn().await;
    let (_, _, alice) = app.member_of_new_org("Acme", "alice@acme.example").await;
    let (_, _, bob) = app.member_of_new_org("Globex", "bob@globex.example").await;
    let (alice_id, alice_key) = app.add_key(&alice, "alice's").await;

    let by_text = app
        .post(
            "/authheader/delete",
            Some(&bob),
            &json!({"text": alice_key}),
        )
        .await;
    let unknown = app
        .post(
            "/authheader/delete",
            Some(&bob),
            &json!({"text": "cak_doesnotexist"}),
        )
        .await;
    let by_id = app
        .post("/authheader/delete", Some(&bob), &json!({"id": alice_id}))
        .await;
    let (a, b, c) = (body(by_text).await, body(unknown).await, body(by_id).await);
    assert_eq!(a, b, "an existing key and a made-up one look the same");
    assert_eq!(a, c);
    assert_eq!(a["error"], "not_found");
    assert_eq!(app.me(&alice_key).await.status(), StatusCode::OK);
    assert_eq!(
        body(app.get("/authheader/list", Some(&bob)).await).await,
        json!([])
    );
}

#[tokio::test]
async fn a_key_acts_with_the_owners_current_role_in_its_org() {
    let app = TestApp::spawn().await;
    let org = app.create_org_with_domains("Acme", &["acme.example"]).await;
    let user = app.create_user("dev@acme.example", org, "member").await;
    let token = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let (_, key) = app.add_key(&token, "ops").await;
    let create_user = json!({"email": "x@acme.example", "password": PASSWORD, "first": "X",
        "last": "Y", "orgId": org, "role": "member"});
    let response = app.post("/admin/users", Some(&key), &create_user).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let promote = app
        .patch(
            &format!("/admin/orgs/{org}/members/{user}"),
            Some(&app.admin_token),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promote.status(), StatusCode::OK);
    let response = app.post("/admin/users", Some(&key), &create_user).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(body(app.me(&key).await).await["isAdmin"], true);
}

#[tokio::test]
async fn a_key_stops_when_its_owner_or_membership_is_deactivated() {
    let app = TestApp::spawn().await;
    let (org, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, key) = app.add_key(&token, "k").await;

    let path = format!("/admin/orgs/{org}/members/{user}");
    app.patch(&path, Some(&app.admin_token), &json!({"isActive": false}))
        .await;
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    app.patch(&path, Some(&app.admin_token), &json!({"isActive": true}))
        .await;
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);

    let path = format!("/admin/users/{user}");
    app.patch(&path, Some(&app.admin_token), &json!({"isActive": false}))
        .await;
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn a_read_only_key_may_only_read() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "reader", "readOnly": true}),
        )
        .await;
    let created = body(response).await;
    assert_eq!(created["readOnly"], true);
    let key = created["token"].as_str().unwrap();
    assert_eq!(app.me(key).await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/authheader/list", Some(key)).await.status(),
        StatusCode::OK
    );
    let response = app
        .post("/authheader/add", Some(key), &json!({"name": "escalate"}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .post("/authheader/delete", Some(key), &json!({"text": key}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_key_is_not_a_session() {
    let app = TestApp::spawn().await;
    let (_, key) = app.add_key(&app.admin_token, "k").await;
    // Renewal and logout are for sessions: the route table closes them to every key.
    assert_error(app.renew(&key).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.logout(&key).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.me(&key).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn names_are_checked_and_keys_are_capped_per_user() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    for name in [String::new(), "  ".into(), "n".repeat(101)] {
        let response = app
            .post("/authheader/add", Some(&token), &json!({"name": name}))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    app.add_key(&token, &"n".repeat(100)).await;
    for i in 1..50 {
        app.add_key(&token, &format!("key {i}")).await;
    }
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "one too many"}),
        )
        .await;
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("50"), "{message}");
    assert_eq!(
        body(app.get("/authheader/list", Some(&token)).await)
            .await
            .as_array()
            .unwrap()
            .len(),
        50
    );
}

#[tokio::test]
async fn admins_list_and_delete_the_keys_of_their_orgs_members() {
    let app = TestApp::spawn().await;
    let (org, member, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let admin_id = app.create_user("boss@acme.example", org, "admin").await;
    let boss = app.login_ok("boss@acme.example", PASSWORD).await.token;
    let (_, _, outsider) = app.member_of_new_org("Globex", "eve@globex.example").await;
    let (id, key) = app.add_key(&token, "member's key").await;

    let list = body(
        app.get(&format!("/admin/orgs/{org}/authheaders"), Some(&boss))
            .await,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["userId"], member);
    assert_ne!(list[0]["userId"], admin_id);
    let response = app
        .get(&format!("/admin/orgs/{org}/authheaders"), Some(&token))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .delete(
            &format!("/admin/orgs/{org}/authheaders/{id}"),
            Some(&outsider),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let response = app
        .delete(&format!("/admin/orgs/{org}/authheaders/{id}"), Some(&boss))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    let response = app
        .delete(&format!("/admin/orgs/{org}/authheaders/{id}"), Some(&boss))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn made_up_keys_are_refused() {
    let app = TestApp::spawn().await;
    for key in [
        "cak_",
        "cak_x",
        &format!("cak_{}", "A".repeat(43)),
        &format!("cak_{}", "é".repeat(5000)),
    ] {
        assert_error(app.me(key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    }
}

#[tokio::test]
async fn a_platform_admins_key_has_no_platform_power() {
    // Platform power belongs to sessions opened with the platform admin's own password: a key
    // could have been made in a session that lacked it.
    let app = TestApp::spawn().await;
    let (_, key) = app.add_key(&app.admin_token, "ops").await;
    let response = app
        .post("/admin/orgs", Some(&key), &json!({"name": "Rogue"}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let me = body(app.me(&key).await).await;
    assert_eq!(me["isPlatformAdmin"], false);
    assert_eq!(me["isAdmin"], true, "still the admin of its own org");
    let response = app
        .post(
            "/admin/orgs",
            Some(&app.admin_token),
            &json!({"name": "Real"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_key_mints_keys_only_within_its_life_and_never_touches_the_accounts_security() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let expires_at = app.now_millis() + 60_000;
    let response = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "short", "expiresAt": expires_at}),
        )
        .await;
    let key = body(response).await["token"].as_str().unwrap().to_owned();
    let session_id = body(app.get("/user/sessions", Some(&token)).await).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A key may make keys (within its scopes: tests/api/scopes.rs), never one that outlives it.
    let forever = app
        .post(
            "/authheader/add",
            Some(&key),
            &json!({"name": "forever", "expiresAt": expires_at + 1}),
        )
        .await;
    assert_error(forever, StatusCode::BAD_REQUEST, "invalid_request").await;
    let child = app
        .post("/authheader/add", Some(&key), &json!({"name": "child"}))
        .await;
    assert_eq!(body(child).await["expiresAt"], expires_at);
    let attempts = [
        app.post("/user/mfa/totp/enroll", Some(&key), &json!({}))
            .await,
        app.post(
            "/user/password",
            Some(&key),
            &json!({"currentPassword": PASSWORD, "newPassword": "another long password"}),
        )
        .await,
        app.get("/user/sessions", Some(&key)).await,
        app.delete(&format!("/user/sessions/{session_id}"), Some(&key))
            .await,
        app.send(
            reqwest::Method::DELETE,
            "/user/mfa/totp",
            Some(&key),
            Some(&json!({"password": PASSWORD})),
        )
        .await,
    ];
    for response in attempts {
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Nothing else changed: the session lives, the password is the old one, two keys exist.
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    app.login_ok("dev@acme.example", PASSWORD).await;
    let keys = body(app.get("/authheader/list", Some(&token)).await).await;
    assert_eq!(keys.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn ending_every_session_leaves_keys_unless_asked_to_take_them_too() {
    let app = TestApp::spawn().await;
    let (_, user, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, key) = app.add_key(&token, "ci").await;
    let revoke = format!("/admin/users/{user}/sessions/revoke");
    let response = app.post(&revoke, Some(&app.admin_token), &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&token).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.me(&key).await.status(),
        StatusCode::OK,
        "keys stay by default"
    );

    let response = app
        .post(
            &format!("{revoke}?apiKeys=true"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;

    // A password reset may take them as well.
    let token = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let (_, key) = app.add_key(&token, "ci-2").await;
    let response = app
        .post(
            &format!("/admin/users/{user}/password"),
            Some(&app.admin_token),
            &json!({"newPassword": "a brand new password", "revokeApiKeys": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    let audit = body(
        app.get("/admin/audit?event=key.deleted", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(
        audit["events"][0]["details"]["keysDeleted"], 1,
        "the revoke's"
    );
    let audit = body(
        app.get("/admin/audit?event=password.reset", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(
        audit["events"][0]["details"]["keysDeleted"], 1,
        "the reset's, in its own transaction and event"
    );
}

/// Seed 004 as a client written from it would call it: add (with a field the seed does not
/// name), list, then delete with the `token` the list showed.
#[tokio::test]
async fn a_seed_client_lists_then_deletes_by_the_listed_token() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let added = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "production-api-key", "description": "the nightly export"}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::OK);
    let key = body(added).await["token"].as_str().unwrap().to_owned();
    let listed = body(app.get("/authheader/list", Some(&token)).await).await;
    let shown = listed[0]["token"].as_str().unwrap().to_owned();
    assert!(
        key.starts_with(&shown) && shown.len() < key.len(),
        "{shown}"
    );

    let deleted = app
        .post("/authheader/delete", Some(&token), &json!({"text": shown}))
        .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(body(deleted).await["message"], "Success");
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
    let again = app
        .post("/authheader/delete", Some(&token), &json!({"text": shown}))
        .await;
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_listed_token_that_names_several_keys_deletes_none() {
    let app = TestApp::spawn().await;
    let (_, _, token) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let (_, first) = app.add_key(&token, "one").await;
    let (_, second) = app.add_key(&token, "two").await;
    // Eight random characters alike: made so behind the app's back.
    app.execute_sql("UPDATE api_keys SET prefix = 'cak_00000000'")
        .await;
    let response = app
        .post(
            "/authheader/delete",
            Some(&token),
            &json!({"text": "cak_00000000"}),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.me(&first).await.status(), StatusCode::OK);
    assert_eq!(app.me(&second).await.status(), StatusCode::OK);
}
