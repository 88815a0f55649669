//! The admin calls of SPEC §7 that manage orgs, users and memberships, and who may make them.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// An org with an admin and a member, each logged in.
struct Org {
    id: i64,
    admin_id: i64,
    admin: String,
    member_id: i64,
    member: String,
}

async fn org_with_people(app: &TestApp, name: &str) -> Org {
    let domain = format!("{}.example", name.to_lowercase());
    let id = app.create_org_with_domains(name, &[&domain]).await;
    let admin_email = format!("admin@{}.example", name.to_lowercase());
    let member_email = format!("member@{}.example", name.to_lowercase());
    let admin_id = app.create_user(&admin_email, id, "admin").await;
    let member_id = app.create_user(&member_email, id, "member").await;
    Org {
        id,
        admin_id,
        admin: app.login_ok(&admin_email, PASSWORD).await.token,
        member_id,
        member: app.login_ok(&member_email, PASSWORD).await.token,
    }
}

#[tokio::test]
async fn a_platform_admin_creates_orgs() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/admin/orgs",
            Some(&app.admin_token),
            &json!({"name": "  Acme ", "emailDomains": ["Acme.example", "acme.example", "corp.acme.example"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let org = body(response).await;
    assert!(org["id"].as_i64().unwrap() > 1);
    assert_eq!(org["name"], "Acme");
    assert_eq!(
        org["emailDomains"],
        json!(["acme.example", "corp.acme.example"])
    );
}

#[tokio::test]
async fn only_platform_admins_create_orgs() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    for token in [&acme.admin, &acme.member] {
        let response = app
            .post("/admin/orgs", Some(token), &json!({"name": "Rogue"}))
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let response = app
        .post("/admin/orgs", None, &json!({"name": "Rogue"}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn an_org_admin_creates_users_in_their_org_only() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    let new_user = |email: &str, org: i64| {
        json!({"email": email, "password": PASSWORD, "first": "New", "last": "Person",
               "orgId": org, "role": "member"})
    };
    let response = app
        .post(
            "/admin/users",
            Some(&acme.admin),
            &new_user("new@acme.example", acme.id),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user = body(response).await;
    assert_eq!(user["email"], "new@acme.example");
    assert_eq!(user["first"], "New");
    assert_eq!(user["last"], "Person");
    assert_eq!(user["isActive"], true);
    assert!(user.get("password").is_none());
    assert_eq!(
        app.login_ok("new@acme.example", PASSWORD).await.user.org_id,
        acme.id
    );

    let response = app
        .post(
            "/admin/users",
            Some(&acme.admin),
            &new_user("other@acme.example", globex.id),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .post(
            "/admin/users",
            Some(&acme.member),
            &new_user("other@acme.example", acme.id),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_org_admin_cannot_learn_which_addresses_have_accounts_elsewhere() {
    // Outside the org's own domains an org admin creates nobody: the answer is the same
    // refusal for an address that has an account in another org and for one that has none.
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let _globex = org_with_people(&app, "Globex").await;
    let mut answers = Vec::new();
    for email in [
        "member@globex.example",
        "nobody@globex.example",
        ADMIN_EMAIL,
    ] {
        let response = app
            .post(
                "/admin/users",
                Some(&acme.admin),
                &json!({"email": email, "password": PASSWORD, "first": "A", "last": "B",
                        "orgId": acme.id, "role": "member"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{email}");
        answers.push(body(response).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0]["error"], "forbidden");
    // Nothing was created: the address that had no account still has none.
    let response = app.login("nobody@globex.example", PASSWORD, 0).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Inside the org's domain a taken address is a conflict: the org holds that domain.
    let response = app
        .post(
            "/admin/users",
            Some(&acme.admin),
            &json!({"email": "member@acme.example", "password": PASSWORD, "first": "A",
                    "last": "B", "orgId": acme.id, "role": "member"}),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn user_creation_checks_its_input() {
    let app = TestApp::spawn().await;
    app.create_user("taken@example.com", 1, "member").await;
    let create = |email: &str, password: &str, org: i64, role: &str| {
        json!({"email": email, "password": password, "first": "A", "last": "B",
               "orgId": org, "role": role})
    };
    let token = Some(app.admin_token.as_str());
    let response = app
        .post(
            "/admin/users",
            token,
            &create("TAKEN@example.com", PASSWORD, 1, "member"),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    let response = app
        .post(
            "/admin/users",
            token,
            &create("a@example.com", "short", 1, "member"),
        )
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("12"), "{message}");
    let response = app
        .post(
            "/admin/users",
            token,
            &create("not-an-email", PASSWORD, 1, "member"),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/users",
            token,
            &create("b@example.com", PASSWORD, 1, "owner"),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .post(
            "/admin/users",
            token,
            &create("c@example.com", PASSWORD, 424242, "member"),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    // nothing half-written: the refused emails do not exist
    let response = app.login("c@example.com", PASSWORD, 0).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn an_org_admin_cannot_pull_other_orgs_users_in() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    let path = format!("/admin/orgs/{}/members", globex.id);
    let mut answers = Vec::new();
    // Another org's member, the platform admin, and an id nobody has: one answer for all.
    for user_id in [acme.member_id, 1, 987_654] {
        let response = app
            .post(
                &path,
                Some(&globex.admin),
                &json!({"userId": user_id, "role": "member"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "user {user_id}");
        answers.push(body(response).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    // The victim's logins still land in their own org, and Acme's admin keeps control.
    assert_eq!(
        app.login_ok("member@acme.example", PASSWORD)
            .await
            .user
            .org_id,
        acme.id
    );
    let response = app.login("member@acme.example", PASSWORD, globex.id).await;
    assert_error(response, StatusCode::NOT_FOUND, "no_active_org").await;
    let response = app
        .post(
            &format!("/admin/users/{}/sessions/revoke", acme.member_id),
            Some(&acme.admin),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_platform_admin_or_an_admin_of_both_orgs_adds_a_member() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    let path = format!("/admin/orgs/{}/members", globex.id);

    let response = app
        .post(
            &path,
            Some(&app.admin_token),
            &json!({"userId": acme.member_id, "role": "member"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        body(response).await,
        json!({"userId": acme.member_id, "orgId": globex.id, "role": "member", "isActive": true})
    );
    let login = app
        .login_to("member@acme.example", PASSWORD, globex.id)
        .await;
    assert_eq!(login.user.org_id, globex.id);
    let again = app
        .post(
            &path,
            Some(&app.admin_token),
            &json!({"userId": acme.member_id, "role": "admin"}),
        )
        .await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;

    // Globex's admin, made an admin of Acme too, may bring Acme's people into Globex.
    app.add_member(acme.id, globex.admin_id, "admin").await;
    let response = app
        .post(
            &path,
            Some(&globex.admin),
            &json!({"userId": acme.admin_id, "role": "member"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let foreign = app
        .post(
            &path,
            Some(&acme.admin),
            &json!({"userId": acme.admin_id, "role": "member"}),
        )
        .await;
    assert_error(foreign, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_login_without_an_org_goes_home_then_to_the_org_used_last() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    // Globex has a lower id than neither: the default must not depend on ids at all.
    app.add_member(globex.id, acme.member_id, "member").await;
    let home = app.login_ok("member@acme.example", PASSWORD).await;
    assert_eq!(home.user.org_id, acme.id, "the home org first");
    app.login_to("member@acme.example", PASSWORD, globex.id)
        .await;
    assert_eq!(
        app.login_ok("member@acme.example", PASSWORD)
            .await
            .user
            .org_id,
        acme.id,
        "still home while that membership is active"
    );
    let path = format!("/admin/orgs/{}/members/{}", acme.id, acme.member_id);
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"isActive": false}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.login_ok("member@acme.example", PASSWORD)
            .await
            .user
            .org_id,
        globex.id,
        "home inactive: the org used last"
    );
}

#[tokio::test]
async fn each_org_controls_its_membership_and_the_home_org_the_account() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    app.add_member(globex.id, acme.member_id, "member").await;
    let in_globex = app
        .login_to("member@acme.example", PASSWORD, globex.id)
        .await
        .token;
    let in_acme = app.login_ok("member@acme.example", PASSWORD).await.token;

    // Globex's admin ends the member's sessions in Globex only, and may not touch the account.
    let response = app
        .post(
            &format!("/admin/users/{}/sessions/revoke", acme.member_id),
            Some(&globex.admin),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&in_globex).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.me(&in_acme).await.status(), StatusCode::OK);
    for (path, body) in [
        (
            format!("/admin/users/{}", acme.member_id),
            json!({"isActive": false}),
        ),
        (
            format!("/admin/users/{}/password", acme.member_id),
            json!({"newPassword": "a whole new password here"}),
        ),
    ] {
        let method = if path.ends_with("password") {
            reqwest::Method::POST
        } else {
            reqwest::Method::PATCH
        };
        let response = app
            .send(method, &path, Some(&globex.admin), Some(&body))
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_eq!(app.me(&in_acme).await.status(), StatusCode::OK);

    // Acme, the home org, keeps every account-wide action.
    let response = app
        .patch(
            &format!("/admin/users/{}", acme.member_id),
            Some(&acme.admin),
            &json!({"first": "Renamed"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post(
            &format!("/admin/users/{}/sessions/revoke", acme.member_id),
            Some(&acme.admin),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&in_acme).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_role_change_takes_effect_on_live_tokens() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let path = format!("/admin/orgs/{}/members/{}", acme.id, acme.member_id);
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"role": "admin"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["role"], "admin");

    let me = body(app.me(&acme.member).await).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["isAdmin"], true);
    // ...and the promoted member can now administer the org with the same token.
    let response = app
        .patch(
            &format!("/admin/orgs/{}/members/{}", acme.id, acme.admin_id),
            Some(&acme.member),
            &json!({"role": "member"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post(
            "/admin/users",
            Some(&acme.admin),
            &json!({
        "email": "x@example.com", "password": PASSWORD, "first": "X", "last": "Y",
        "orgId": acme.id, "role": "member"}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn deactivating_a_membership_ends_the_sessions_in_that_org_only() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;
    app.add_member(globex.id, acme.member_id, "member").await;
    let in_globex = app
        .login_to("member@acme.example", PASSWORD, globex.id)
        .await
        .token;

    let path = format!("/admin/orgs/{}/members/{}", acme.id, acme.member_id);
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"isActive": false}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["isActive"], false);

    assert_error(
        app.me(&acme.member).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    assert_eq!(app.me(&in_globex).await.status(), StatusCode::OK);
    let response = app.login("member@acme.example", PASSWORD, acme.id).await;
    assert_error(response, StatusCode::NOT_FOUND, "no_active_org").await;

    // Reactivation does not bring the ended session back.
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"isActive": true}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.me(&acme.member).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_org_keeps_at_least_one_active_admin() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let path = format!("/admin/orgs/{}/members/{}", acme.id, acme.admin_id);
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"role": "member"}))
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"isActive": false}))
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.me(&acme.admin).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn deactivating_a_user_ends_all_their_sessions_at_once() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let second = app.login_ok("member@acme.example", PASSWORD).await.token;
    let path = format!("/admin/users/{}", acme.member_id);
    let response = app
        .patch(
            &path,
            Some(&acme.admin),
            &json!({"isActive": false, "first": "Former"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let user = body(response).await;
    assert_eq!(user["isActive"], false);
    assert_eq!(user["first"], "Former");
    for token in [&acme.member, &second] {
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
    let response = app
        .patch(&path, Some(&acme.admin), &json!({"isActive": true}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.me(&second).await.status(),
        StatusCode::FORBIDDEN,
        "ended for good"
    );
    app.login_ok("member@acme.example", PASSWORD).await;
}

#[tokio::test]
async fn an_admin_revokes_every_session_of_a_user() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let second = app.login_ok("member@acme.example", PASSWORD).await.token;
    let path = format!("/admin/users/{}/sessions/revoke", acme.member_id);
    let response = app.post(&path, Some(&acme.member), &json!({})).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.post(&path, Some(&acme.admin), &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&acme.member, &second] {
        assert_error(
            app.me(token).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
    }
    let fresh = app.login_ok("member@acme.example", PASSWORD).await.token;
    assert_eq!(app.me(&fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn org_admins_cannot_reach_users_beyond_their_orgs() {
    let app = TestApp::spawn().await;
    let acme = org_with_people(&app, "Acme").await;
    let globex = org_with_people(&app, "Globex").await;

    // A user only in Globex is invisible to Acme's admin.
    let response = app
        .patch(
            &format!("/admin/users/{}", globex.member_id),
            Some(&acme.admin),
            &json!({"isActive": false}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .post(
            &format!("/admin/users/{}/sessions/revoke", globex.member_id),
            Some(&acme.admin),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;

    // A user in both orgs: account-wide changes belong to their home org (Globex) alone.
    app.add_member(acme.id, globex.member_id, "member").await;
    let response = app
        .patch(
            &format!("/admin/users/{}", globex.member_id),
            Some(&acme.admin),
            &json!({"isActive": false}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.me(&globex.member).await.status(), StatusCode::OK);

    // The platform admin can, and can never be deactivated by an org admin.
    app.add_member(acme.id, 1, "admin").await;
    let response = app
        .patch(
            "/admin/users/1",
            Some(&acme.admin),
            &json!({"isActive": false}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .patch(
            &format!("/admin/users/{}", globex.member_id),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn nobody_deactivates_themselves() {
    let app = TestApp::spawn().await;
    let response = app
        .patch(
            "/admin/users/1",
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn unknown_users_and_memberships_are_404() {
    let app = TestApp::spawn().await;
    let token = Some(app.admin_token.as_str());
    let response = app
        .patch("/admin/users/4242", token, &json!({"first": "X"}))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .patch(
            "/admin/orgs/1/members/4242",
            token,
            &json!({"role": "admin"}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .post("/admin/users/4242/sessions/revoke", token, &json!({}))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn orgs_created_after_bootstrap_get_fresh_ids() {
    // Bootstrap inserts org 1 with an explicit id; the id sequence must not hand out 1 again.
    let app = TestApp::spawn().await;
    let first = app.create_org("First").await;
    let second = app.create_org("Second").await;
    assert!(first > 1, "org 1 is the bootstrap org, got {first}");
    assert!(second > first);
    let me = body(app.me(&app.admin_token).await).await;
    assert_eq!(me["orgName"], "Default", "org 1 is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_demoting_each_other_at_once_leave_one_admin() {
    // Per org, two admins are demoted at the same moment: exactly one change may win. A store
    // that checks "another admin remains" without serialising the two would let both through.
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut orgs = Vec::new();
    for n in 0..16 {
        let org = org_with_people(&app, &format!("Race{n}")).await;
        let path = format!("/admin/orgs/{}/members/{}", org.id, org.member_id);
        let promoted = app
            .patch(&path, Some(&app.admin_token), &json!({"role": "admin"}))
            .await;
        assert_eq!(promoted.status(), StatusCode::OK);
        orgs.push(org);
    }
    let mut demotions = tokio::task::JoinSet::new();
    for org in &orgs {
        for user_id in [org.admin_id, org.member_id] {
            let app = app.clone();
            let path = format!("/admin/orgs/{}/members/{user_id}", org.id);
            let org_id = org.id;
            demotions.spawn(async move {
                let response = app
                    .patch(&path, Some(&app.admin_token), &json!({"role": "member"}))
                    .await;
                (org_id, response.status())
            });
        }
    }
    let mut outcomes: std::collections::BTreeMap<i64, Vec<StatusCode>> = Default::default();
    while let Some(done) = demotions.join_next().await {
        let (org_id, status) = done.unwrap();
        outcomes.entry(org_id).or_default().push(status);
    }
    for (org_id, mut statuses) in outcomes {
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "org {org_id}: one demotion wins, the other is refused"
        );
    }
}
