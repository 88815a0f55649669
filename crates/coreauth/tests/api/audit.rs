//! The audit trail (SPEC §7): every security event, filtered and paged by `GET /admin/audit`,
//! never holding a secret.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn events(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/admin/audit{query}"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK, "audit {query}");
    body(response).await
}

fn named<'a>(page: &'a Value, event: &str) -> Vec<&'a Value> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .collect()
}

#[tokio::test]
async fn logins_are_recorded_with_outcome_reason_address_and_client() {
    let app = TestApp::spawn().await;
    app.create_user("user@example.com", 1, "member").await;
    app.login_ok("user@example.com", PASSWORD).await;
    app.login("user@example.com", "wrong password", 0).await;
    app.login("ghost@example.com", "whatever pw", 0).await;

    let page = events(&app, &app.admin_token, "").await;
    let succeeded = named(&page, "login.succeeded");
    assert_eq!(succeeded.len(), 2, "the admin's and the user's");
    let user_login = succeeded[0];
    assert_eq!(user_login["outcome"], "success");
    assert_eq!(user_login["orgId"], 1);
    assert_eq!(user_login["address"], "127.0.0.1");
    assert_eq!(user_login["client"], "core-client");
    assert!(user_login["requestId"].as_str().unwrap().len() > 10);
    assert!(
        user_login["subject"]
            .as_str()
            .unwrap()
            .starts_with("session:")
    );

    let failed = named(&page, "login.failed");
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|e| e["outcome"] == "failure" && e["reason"] == "invalid_credentials")
    );
    let ghost = failed
        .iter()
        .find(|e| e["details"]["email"] == "ghost@example.com")
        .unwrap();
    assert_eq!(
        ghost["subjectUserId"],
        Value::Null,
        "nothing is created for unknown emails"
    );
    let known = failed
        .iter()
        .find(|e| e["details"]["email"] == "user@example.com")
        .unwrap();
    assert!(known["subjectUserId"].is_i64());
}

#[tokio::test]
async fn logout_records_how_often_the_session_was_renewed() {
    let app = TestApp::spawn().await;
    let token = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let mut current = token;
    for _ in 0..3 {
        let renewed: coreauth_proto::AuthenticateResponse =
            app.renew(&current).await.json().await.unwrap();
        current = renewed.token;
    }
    app.logout(&current).await;
    let page = events(&app, &app.admin_token, "?event=logout").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["details"]["renewCount"], 3);
    assert_eq!(
        named(&events(&app, &app.admin_token, "").await, "session.renewed").len(),
        0,
        "renewals are counted, not one row each"
    );
}

#[tokio::test]
async fn admin_changes_and_key_events_are_recorded_without_secrets() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let user = app.create_user("dev@acme.example", org, "member").await;
    app.patch(
        &format!("/admin/orgs/{org}/members/{user}"),
        Some(&app.admin_token),
        &json!({"role": "admin"}),
    )
    .await;
    let token = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let (_, key) = app.add_key(&token, "ci").await;
    app.me(&key).await;
    app.me(&key).await; // same address again: one event only
    app.post("/authheader/delete", Some(&token), &json!({"text": key}))
        .await;
    app.post(
        &format!("/admin/users/{user}/sessions/revoke"),
        Some(&app.admin_token),
        &json!({}),
    )
    .await;

    let page = events(&app, &app.admin_token, "").await;
    for (event, count) in [
        ("admin.bootstrapped", 1),
        ("org.created", 1),
        ("user.created", 1),
        ("member.updated", 1),
        ("apikey.added", 1),
        ("apikey.new_address", 1),
        ("apikey.deleted", 1),
        ("sessions.revoked", 1),
    ] {
        assert_eq!(named(&page, event).len(), count, "{event} in {page}");
    }
    let updated = named(&page, "member.updated")[0];
    assert_eq!(updated["actorUserId"], 1);
    assert_eq!(updated["subjectUserId"], user);
    assert_eq!(updated["details"]["role"], "admin");
    assert_eq!(
        named(&page, "sessions.revoked")[0]["details"]["sessionsRevoked"],
        1
    );
    let deleted = named(&page, "apikey.deleted")[0];
    assert_eq!(deleted["details"]["name"], "ci");

    let text = page.to_string();
    assert!(!text.contains(&key), "no API key in the audit trail");
    assert!(!text.contains(&key[4..12]), "not even its prefix");
    assert!(
        !text.contains(PASSWORD) && !text.contains(ADMIN_PASSWORD),
        "no password"
    );
    assert!(!text.contains(&token), "no token");
}

#[tokio::test]
async fn org_admins_see_their_org_and_members_see_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.create_org("Acme").await;
    let globex = app.create_org("Globex").await;
    app.create_user("boss@acme.example", acme, "admin").await;
    app.create_user("dev@acme.example", acme, "member").await;
    app.create_user("boss@globex.example", globex, "admin")
        .await;
    let boss = app.login_ok("boss@acme.example", PASSWORD).await.token;
    let dev = app.login_ok("dev@acme.example", PASSWORD).await.token;
    app.login_ok("boss@globex.example", PASSWORD).await;

    let page = events(&app, &boss, "").await;
    let all = page["events"].as_array().unwrap();
    assert!(!all.is_empty());
    assert!(all.iter().all(|e| e["orgId"] == acme), "{page}");
    let response = app
        .get(&format!("/admin/audit?orgId={globex}"), Some(&boss))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("/admin/audit", Some(&dev)).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let everything = events(&app, &app.admin_token, "").await;
    let orgs: std::collections::HashSet<_> = everything["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["orgId"].clone())
        .collect();
    assert!(
        orgs.contains(&json!(acme)) && orgs.contains(&json!(globex)) && orgs.contains(&json!(1))
    );
}

#[tokio::test]
async fn pages_are_stable_while_new_events_arrive() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.login(&format!("nobody{i}@example.com"), "pw-wrong", 0)
            .await;
    }
    let first = events(&app, &app.admin_token, "?event=login.failed&limit=2").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        first["events"][0]["details"]["email"], "nobody4@example.com",
        "newest first"
    );
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();

    app.login("latecomer@example.com", "pw-wrong", 0).await; // arrives between pages

    let second = events(
        &app,
        &app.admin_token,
        &format!("?event=login.failed&limit=2&cursor={cursor}"),
    )
    .await;
    let emails: Vec<_> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["email"].clone())
        .collect();
    assert_eq!(
        emails,
        vec![json!("nobody2@example.com"), json!("nobody1@example.com")]
    );
    let cursor = second["nextCursor"].as_str().unwrap();
    let third = events(
        &app,
        &app.admin_token,
        &format!("?event=login.failed&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(third["events"].as_array().unwrap().len(), 1);
    assert_eq!(third["nextCursor"], Value::Null);
}

#[tokio::test]
async fn filters_by_user_and_time() {
    let app = TestApp::spawn().await;
    let user = app.create_user("u@example.com", 1, "member").await;
    let start = coreauth::domain::clock::iso8601(app.clock_now());
    app.advance(std::time::Duration::from_secs(3600));
    let later = coreauth::domain::clock::iso8601(app.clock_now());
    app.login_ok("u@example.com", PASSWORD).await;
    let admin = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token; // the first one expired

    let mine = events(&app, &admin, &format!("?userId={user}")).await;
    let names: Vec<_> = mine["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    // An account an admin creates is sent a link to prove its address.
    assert_eq!(
        names,
        vec!["login.succeeded", "email.verification_sent", "user.created"]
    );
    let since = events(&app, &admin, &format!("?since={later}")).await;
    assert_eq!(
        since["events"].as_array().unwrap().len(),
        2,
        "the two logins after the hour"
    );
    assert_eq!(named(&since, "login.succeeded").len(), 2);
    let window = format!("?userId={user}&since={start}&until={later}");
    let until = events(&app, &admin, &window).await;
    assert_eq!(until["events"].as_array().unwrap().len(), 2);
    assert_eq!(until["events"][0]["event"], "email.verification_sent");
    assert_eq!(until["events"][1]["event"], "user.created");
}

#[tokio::test]
async fn bad_audit_queries_are_400() {
    let app = TestApp::spawn().await;
    for query in [
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?since=yesterday",
        "?cursor=abc",
        "?orgId=one",
        "?bogus=1",
    ] {
        let response = app
            .get(&format!("/admin/audit{query}"), Some(&app.admin_token))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn events_older_than_the_retention_are_pruned() {
    let app =
        TestApp::spawn_with(|s| s.audit_retention = std::time::Duration::from_secs(30 * 24 * 3600))
            .await;
    app.login("nobody@example.com", "guess", 0).await;
    app.advance(std::time::Duration::from_secs(31 * 24 * 3600));
    let pruned = app.state.audit.prune(app.clock_now()).await.unwrap();
    assert!(
        pruned >= 3,
        "bootstrap, login and the failed login: {pruned}"
    );
    let admin = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let page = events(&app, &admin, "").await;
    let names: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("login.succeeded")],
        "only what happened since"
    );
}

#[tokio::test]
async fn events_are_exported_as_json_lines_without_secrets() {
    use coreauth::audit_export::{AuditExport, ExportTarget};
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut export = AuditExport::start(ExportTarget::File(path.clone()), &app.state.audit)
        .await
        .unwrap();
    assert_eq!(
        export.run_once(&app.state.audit).await.unwrap(),
        0,
        "starts after what exists"
    );

    app.login("nobody@example.com", "a-secret-guess", 0).await;
    let token = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    assert_eq!(export.run_once(&app.state.audit).await.unwrap(), 2);
    assert_eq!(
        export.run_once(&app.state.audit).await.unwrap(),
        0,
        "each event once"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "login.failed");
    assert_eq!(lines[1]["event"], "login.succeeded");
    assert!(
        !text.contains("a-secret-guess")
            && !text.contains(ADMIN_PASSWORD)
            && !text.contains(&token)
    );
}
