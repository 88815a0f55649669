//! Cross-tenant isolation, generated from the service's own OpenAPI document: every admin
//! operation that names an org or a user is sent with valid bodies aimed at org A by org B's
//! admin, and none may succeed. A route added later is swept too without a line here: it only
//! needs its parameters to be named like the others' (`org_id`, `user_id`, `id`, `name`).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const INTEGRATION: &str = "portal";

/// Org A with an admin, a member holding an API key, SSO, an integration and a policy.
struct Victim {
    org: i64,
    member: i64,
    member_token: String,
    key_id: String,
    key: String,
}

async fn victim(app: &TestApp) -> Victim {
    let org = app
        .create_org_with_domains("Victim", &["victim.example"])
        .await;
    app.create_user("boss@victim.example", org, "admin").await;
    let member = app
        .create_user("member@victim.example", org, "member")
        .await;
    let member_token = app.login_ok("member@victim.example", PASSWORD).await.token;
    let (key_id, key) = app.add_key(&member_token, "ci").await;
    let admin = Some(app.admin_token.as_str());
    for (path, config) in [
        (format!("/admin/orgs/{org}/sso"), sso_config()),
        (
            format!("/admin/orgs/{org}/integrations/{INTEGRATION}"),
            integration_config(),
        ),
        (format!("/admin/orgs/{org}/password-policy"), policy()),
    ] {
        let response = app.send(Method::PUT, &path, admin, Some(&config)).await;
        assert_eq!(response.status(), StatusCode::OK, "setting up {path}");
    }
    Victim {
        org,
        member,
        member_token,
        key_id,
        key,
    }
}

fn sso_config() -> Value {
    // An address literal on a public network: no name to resolve, nothing fetched.
    json!({"issuer": "https://93.184.216.34", "clientId": "rogue", "clientSecret": "rogue-secret",
           "emailDomains": ["victim.example"], "allowJit": true, "allowPassword": true,
           "redirectAllowList": ["https://rogue.example/"]})
}

fn integration_config() -> Value {
    json!({"algorithm": "HS256", "secret": "a shared secret of at least thirty-two bytes",
           "audience": "rogue", "lifetimeSeconds": 300, "claims": ["email"]})
}

fn policy() -> Value {
    json!({"minLength": 8, "maxAgeDays": 0, "historyCount": 0, "rejectCommon": false,
           "requireMfa": false})
}

/// A body that would succeed for an admin of the victim's org, so that only the tenancy check
/// can refuse it.
fn body_for(method: &Method, template: &str, victim: &Victim) -> Option<Value> {
    let body = match (method.as_str(), template) {
        ("PUT", "/admin/orgs/{org_id}/sso") => sso_config(),
        ("PUT", "/admin/orgs/{org_id}/integrations/{name}") => integration_config(),
        ("PUT", "/admin/orgs/{org_id}/password-policy") => policy(),
        ("POST", "/admin/orgs/{org_id}/members") => {
            json!({"userId": victim.member, "role": "admin"})
        }
        ("PATCH", "/admin/orgs/{org_id}/members/{user_id}") => {
            json!({"role": "admin", "isActive": false})
        }
        ("PATCH", "/admin/users/{id}") => json!({"isActive": false, "first": "Taken"}),
        ("POST", "/admin/users/{id}/password") => {
            json!({"newPassword": "chosen by the attacker", "revokeApiKeys": true})
        }
        ("GET" | "DELETE", _) => return None,
        _ => json!({}),
    };
    Some(body)
}

/// The path with the victim's ids in place of its parameters; `None` for an operation that
/// names neither an org nor a user.
fn concrete(template: &str, victim: &Victim) -> Option<String> {
    let names_target = template.contains("{org_id}")
        || template.contains("{user_id}")
        || template.starts_with("/admin/users/{id}");
    if !names_target {
        return None;
    }
    let path = template
        .replace("{org_id}", &victim.org.to_string())
        .replace("{user_id}", &victim.member.to_string())
        .replace("{name}", INTEGRATION);
    let path = if template.starts_with("/admin/orgs/{org_id}/authheaders/{id}") {
        path.replace("{id}", &victim.key_id)
    } else {
        path.replace("{id}", &victim.member.to_string())
    };
    Some(path)
}

#[tokio::test]
async fn no_admin_operation_reaches_another_org_for_that_orgs_admin() {
    let app = TestApp::spawn().await;
    let victim = victim(&app).await;
    let rogue_org = app
        .create_org_with_domains("Rogue", &["rogue.example"])
        .await;
    app.create_user("boss@rogue.example", rogue_org, "admin")
        .await;
    let rogue = app.login_ok("boss@rogue.example", PASSWORD).await.token;
    let (_, rogue_key) = app.add_key(&rogue, "rogue").await;

    let document = body(app.get("/openapi.json", Some(&app.admin_token)).await).await;
    let mut swept = BTreeSet::new();
    for (template, operations) in document["paths"].as_object().unwrap() {
        let Some(path) = concrete(template, &victim) else {
            continue;
        };
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = body_for(&method, template, &victim);
            for credential in [&rogue, &rogue_key] {
                let response = app
                    .send(method.clone(), &path, Some(credential), body.as_ref())
                    .await;
                let status = response.status();
                assert!(
                    !status.is_success(),
                    "{method} {path} succeeded for another org's admin: {status} {}",
                    response.text().await.unwrap_or_default()
                );
                assert!(status.is_client_error(), "{method} {path}: {status}");
            }
            swept.insert(format!("{method} {template}"));
        }
    }
    // The families the audit named must be among what was swept.
    for expected in [
        "POST /admin/orgs/{org_id}/members",
        "PATCH /admin/orgs/{org_id}/members/{user_id}",
        "PUT /admin/orgs/{org_id}/sso",
        "DELETE /admin/orgs/{org_id}/sso",
        "PUT /admin/orgs/{org_id}/integrations/{name}",
        "DELETE /admin/orgs/{org_id}/integrations/{name}",
        "POST /admin/users/{id}/password",
        "POST /admin/users/{id}/sessions/revoke",
        "PATCH /admin/users/{id}",
    ] {
        assert!(swept.contains(expected), "{expected} not swept: {swept:?}");
    }

    // The operations that carry the target in their body or query, not their path.
    let create = json!({"email": "planted@victim.example", "password": PASSWORD,
                        "first": "P", "last": "Q", "orgId": victim.org, "role": "admin"});
    let pull = json!({"userId": victim.member, "role": "member"});
    for credential in [&rogue, &rogue_key] {
        let attempts = [
            app.post("/admin/users", Some(credential), &create).await,
            app.post(
                &format!("/admin/orgs/{rogue_org}/members"),
                Some(credential),
                &pull,
            )
            .await,
            app.get(
                &format!("/admin/audit?orgId={}", victim.org),
                Some(credential),
            )
            .await,
        ];
        for response in attempts {
            let status = response.status();
            let url = response.url().path().to_owned();
            assert!(status.is_client_error(), "{url}: {status}");
        }
        // Asking for the victim's events by user is answered within the caller's own org.
        let page = body(
            app.get(
                &format!("/admin/audit?userId={}", victim.member),
                Some(credential),
            )
            .await,
        )
        .await;
        let events = page["events"].as_array().unwrap();
        assert!(
            events.iter().all(|e| e["orgId"] == rogue_org),
            "another org's events: {page}"
        );
    }

    // Org A is as it was: its member, key, SSO and integration all still stand.
    assert_eq!(app.me(&victim.member_token).await.status(), StatusCode::OK);
    assert_eq!(app.me(&victim.key).await.status(), StatusCode::OK);
    let orgs = body(app.get("/user/orgs", Some(&victim.member_token)).await).await;
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");
    let sso = body(
        app.get(
            &format!("/admin/orgs/{}/sso", victim.org),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(
        sso["clientId"], "rogue",
        "the platform admin's setting, unchanged"
    );
    let integrations = body(
        app.get(
            &format!("/admin/orgs/{}/integrations", victim.org),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(integrations.as_array().unwrap().len(), 1);
    app.login_ok("member@victim.example", PASSWORD).await;
}
