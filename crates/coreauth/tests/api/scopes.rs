//! API key scopes over the whole router: every secured route in the OpenAPI document refuses a
//! caller without a token, refuses a key without the route's scope, and lets one with just that
//! scope past the check. The table below is the test's own statement of which route needs
//! what; a route added without a decision fails here.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, body};

/// What a key needs per route: a scope, or "session" where only a session may act.
const NEEDS: &[(&str, &str, &str)] = &[
    ("GET", "/admin/audit", "audit:read"),
    ("POST", "/admin/orgs", "org:write"),
    ("GET", "/admin/orgs/{org_id}/authheaders", "keys:read"),
    (
        "DELETE",
        "/admin/orgs/{org_id}/authheaders/{id}",
        "keys:write",
    ),
    ("GET", "/admin/orgs/{org_id}/domains", "org:read"),
    ("POST", "/admin/orgs/{org_id}/domains", "org:write"),
    (
        "DELETE",
        "/admin/orgs/{org_id}/domains/{domain}",
        "org:write",
    ),
    (
        "POST",
        "/admin/orgs/{org_id}/domains/{domain}/approve",
        "org:write",
    ),
    (
        "POST",
        "/admin/orgs/{org_id}/domains/{domain}/verify",
        "org:write",
    ),
    ("GET", "/admin/orgs/{org_id}/integrations", "org:read"),
    (
        "PUT",
        "/admin/orgs/{org_id}/integrations/{name}",
        "org:write",
    ),
    (
        "DELETE",
        "/admin/orgs/{org_id}/integrations/{name}",
        "org:write",
    ),
    ("GET", "/admin/orgs/{org_id}/email-settings", "org:read"),
    ("PUT", "/admin/orgs/{org_id}/email-settings", "org:write"),
    (
        "PUT",
        "/admin/orgs/{org_id}/email-templates/{kind}",
        "org:write",
    ),
    (
        "DELETE",
        "/admin/orgs/{org_id}/email-templates/{kind}",
        "org:write",
    ),
    ("GET", "/admin/orgs/{org_id}/group-roles", "org:read"),
    ("PUT", "/admin/orgs/{org_id}/group-roles", "org:write"),
    ("GET", "/admin/orgs/{org_id}/invitations", "users:read"),
    ("POST", "/admin/orgs/{org_id}/invitations", "users:write"),
    (
        "DELETE",
        "/admin/orgs/{org_id}/invitations/{id}",
        "users:write",
    ),
    (
        "POST",
        "/admin/orgs/{org_id}/invitations/{id}/resend",
        "users:write",
    ),
    ("POST", "/admin/orgs/{org_id}/members", "users:write"),
    ("GET", "/admin/orgs/{org_id}/scim/tokens", "org:read"),
    ("POST", "/admin/orgs/{org_id}/scim/tokens", "org:write"),
    (
        "DELETE",
        "/admin/orgs/{org_id}/scim/tokens/{id}",
        "org:write",
    ),
    (
        "PATCH",
        "/admin/orgs/{org_id}/members/{user_id}",
        "users:write",
    ),
    ("GET", "/admin/orgs/{org_id}/password-policy", "org:read"),
    ("PUT", "/admin/orgs/{org_id}/password-policy", "org:write"),
    ("GET", "/admin/orgs/{org_id}/service-accounts", "keys:read"),
    (
        "POST",
        "/admin/orgs/{org_id}/service-accounts",
        "keys:write",
    ),
    (
        "GET",
        "/admin/orgs/{org_id}/service-accounts/{id}",
        "keys:read",
    ),
    (
        "PATCH",
        "/admin/orgs/{org_id}/service-accounts/{id}",
        "keys:write",
    ),
    (
        "DELETE",
        "/admin/orgs/{org_id}/service-accounts/{id}",
        "keys:write",
    ),
    (
        "GET",
        "/admin/orgs/{org_id}/service-accounts/{id}/keys",
        "keys:read",
    ),
    (
        "POST",
        "/admin/orgs/{org_id}/service-accounts/{id}/keys",
        "keys:write",
    ),
    (
        "DELETE",
        "/admin/orgs/{org_id}/service-accounts/{id}/keys/{key_id}",
        "keys:write",
    ),
    (
        "POST",
        "/admin/orgs/{org_id}/service-accounts/{id}/keys/{key_id}/rotate",
        "keys:write",
    ),
    ("GET", "/admin/orgs/{org_id}/sso", "org:read"),
    ("PUT", "/admin/orgs/{org_id}/sso", "org:write"),
    ("DELETE", "/admin/orgs/{org_id}/sso", "org:write"),
    ("GET", "/admin/orgs/{org_id}/sso/connections", "org:read"),
    ("POST", "/admin/orgs/{org_id}/sso/connections", "org:write"),
    (
        "GET",
        "/admin/orgs/{org_id}/sso/connections/{connection_id}",
        "org:read",
    ),
    (
        "PUT",
        "/admin/orgs/{org_id}/sso/connections/{connection_id}",
        "org:write",
    ),
    (
        "DELETE",
        "/admin/orgs/{org_id}/sso/connections/{connection_id}",
        "org:write",
    ),
    ("POST", "/admin/users", "users:write"),
    ("PATCH", "/admin/users/{id}", "users:write"),
    ("POST", "/admin/users/{id}/mfa/reset", "users:write"),
    ("POST", "/admin/users/{id}/password", "users:write"),
    ("POST", "/admin/users/{id}/sessions/revoke", "users:write"),
    ("GET", "/admin/users/{user_id}/sso-identities", "users:read"),
    (
        "POST",
        "/admin/users/{user_id}/sso-identities",
        "users:write",
    ),
    (
        "DELETE",
        "/admin/users/{user_id}/sso-identities",
        "users:write",
    ),
    ("POST", "/authheader/add", "keys:write"),
    ("POST", "/authheader/delete", "keys:write"),
    ("GET", "/authheader/list", "keys:read"),
    ("POST", "/authheader/{id}/rotate", "keys:write"),
    ("POST", "/token/introspect", "tokens:introspect"),
    ("GET", "/user/authenticate", "session"),
    ("POST", "/user/authenticate/logout", "session"),
    ("POST", "/user/authenticate/sso/link", "session"),
    ("POST", "/user/authenticate/{name}", "integrations:mint"),
    ("GET", "/user/me", "users:read"),
    ("DELETE", "/user/mfa/totp", "session"),
    ("POST", "/user/mfa/totp/confirm", "session"),
    ("POST", "/user/mfa/totp/enroll", "session"),
    ("POST", "/user/mfa/verify", "session"),
    ("GET", "/user/orgs", "users:read"),
    ("POST", "/user/password", "session"),
    ("GET", "/user/sessions", "session"),
    ("DELETE", "/user/sessions/{id}", "session"),
];

const SCOPES: [&str; 10] = [
    "read",
    "keys:read",
    "keys:write",
    "users:read",
    "users:write",
    "org:read",
    "org:write",
    "audit:read",
    "tokens:introspect",
    "integrations:mint",
];

/// Secured routes that authenticate otherwise than by a session token or key, and so are not
/// the router's to scope: the metrics token, the docs' own cookie.
const NOT_BY_TOKEN: &[&str] = &["/metrics", "/docs", "/openapi.json"];

/// Every route with a security requirement, from the service's own OpenAPI document.
async fn secured_routes(app: &TestApp) -> Vec<(String, String)> {
    let doc = body(app.get("/openapi.json", Some(&app.admin_token)).await).await;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if secured && !NOT_BY_TOKEN.contains(&path.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes.sort();
    routes
}

/// A concrete URL for a route: every path parameter `1`, which parses as any id.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        out.push('1');
        rest = &rest[start + rest[start..].find('}').unwrap() + 1..];
    }
    out.push_str(rest);
    out
}

async fn call(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let payload = (method != Method::GET).then(|| json!({}));
    app.send(method, &concrete(path), key, payload.as_ref())
        .await
}

/// A key of the admin's with `scopes`, made with `maker` (a session token, or a key).
async fn key_with(app: &TestApp, maker: &str, name: &str, scopes: &[&str]) -> String {
    let response = app
        .post(
            "/authheader/add",
            Some(maker),
            &json!({"name": name, "scopes": scopes}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "key {name}");
    body(response).await["token"].as_str().unwrap().to_owned()
}

/// Whether an answer is the scope check's refusal (or the session-only one).
async fn refused_by_scope(response: reqwest::Response) -> Option<String> {
    if response.status() != StatusCode::FORBIDDEN {
        return None;
    }
    let answer: Value = response.json().await.ok()?;
    let message = answer["message"].as_str()?.to_owned();
    (message.contains("lacks the scope") || message.contains("only a session may"))
        .then_some(message)
}

#[tokio::test]
async fn every_secured_route_is_scoped_as_the_table_says() {
    let app = TestApp::spawn().await;
    let table: BTreeMap<(String, String), &str> = NEEDS
        .iter()
        .map(|(method, path, need)| ((method.to_string(), path.to_string()), *need))
        .collect();
    let routes = secured_routes(&app).await;
    let listed: Vec<(String, String)> = table.keys().cloned().collect();
    assert_eq!(
        routes, listed,
        "the table and the router list the same secured routes"
    );

    // Some calls below end the admin's sessions: keys make the keys (and keys stay).
    let everything = key_with(&app, &app.admin_token, "everything", &SCOPES).await;
    let mut only = BTreeMap::new();
    for scope in SCOPES {
        let key = key_with(&app, &everything, &format!("only {scope}"), &[scope]).await;
        only.insert(scope, key);
    }

    for ((method, path), need) in &table {
        let route = format!("{method} {path}");
        assert_error(
            call(&app, method, path, None).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
        if *need == "session" {
            let refusal = refused_by_scope(call(&app, method, path, Some(&everything)).await).await;
            assert!(
                refusal.is_some_and(|m| m.contains("session")),
                "{route}: a key with every scope is refused"
            );
            continue;
        }
        // `read` stands for every read, so the key without `read` still reads; the key
        // without the route's scope must have neither it nor `read` (nor the write above it).
        let mut lacking: Vec<&str> = SCOPES
            .iter()
            .copied()
            .filter(|s| *s != *need && *s != "read")
            .collect();
        if let Some(area) = need.strip_suffix(":read") {
            lacking.retain(|s| *s != format!("{area}:write"));
        }
        let without = key_with(&app, &everything, &format!("without {need}"), &lacking).await;
        let refusal = refused_by_scope(call(&app, method, path, Some(&without)).await).await;
        assert!(
            refusal.as_deref().is_some_and(|m| m.contains(need)),
            "{route}: a key without {need} is refused, naming it ({refusal:?})"
        );
        delete_key(&app, &everything, &without).await;
        let allowed = refused_by_scope(call(&app, method, path, Some(&only[need])).await).await;
        assert_eq!(
            allowed, None,
            "{route}: a key with just {need} passes the check"
        );
        let read_too = need.ends_with(":read") || *need == "tokens:introspect";
        if read_too {
            let by_read = refused_by_scope(call(&app, method, path, Some(&only["read"])).await);
            assert_eq!(by_read.await, None, "{route}: `read` covers every read");
        }
    }
}

async fn delete_key(app: &TestApp, maker: &str, key: &str) {
    let response = app
        .post("/authheader/delete", Some(maker), &json!({"text": key}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn read_only_is_the_read_scope_and_a_key_makes_keys_only_within_its_own() {
    let app = TestApp::spawn().await;
    let created = body(
        app.post(
            "/authheader/add",
            Some(&app.admin_token),
            &json!({"name": "ro", "readOnly": true}),
        )
        .await,
    )
    .await;
    assert_eq!(created["scopes"], json!(["read"]));
    assert_eq!(created["readOnly"], true);
    let default = body(
        app.post(
            "/authheader/add",
            Some(&app.admin_token),
            &json!({"name": "default"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        default["scopes"],
        json!(SCOPES),
        "a session's key gets every scope"
    );
    assert_eq!(default["readOnly"], false);

    let keys_writer = key_with(
        &app,
        &app.admin_token,
        "keys",
        &["keys:write", "users:read"],
    )
    .await;
    let wider = app
        .post(
            "/authheader/add",
            Some(&keys_writer),
            &json!({"name": "wider", "scopes": ["users:write"]}),
        )
        .await;
    assert_error(wider, StatusCode::FORBIDDEN, "forbidden").await;
    let inherited = body(
        app.post(
            "/authheader/add",
            Some(&keys_writer),
            &json!({"name": "child"}),
        )
        .await,
    )
    .await;
    assert_eq!(inherited["scopes"], json!(["keys:write", "users:read"]));
    let narrower = app
        .post(
            "/authheader/add",
            Some(&keys_writer),
            &json!({"name": "narrow", "scopes": ["users:read"]}),
        )
        .await;
    assert_eq!(narrower.status(), StatusCode::OK);

    for bad in [json!([]), json!(["admin"]), json!(["users:write"])] {
        let response = app
            .post(
                "/authheader/add",
                Some(&app.admin_token),
                &json!({"name": "bad", "scopes": bad, "readOnly": true}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // The list shows the scopes, and a rotation keeps them.
    let listed = body(app.get("/authheader/list", Some(&app.admin_token)).await).await;
    let ro = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ro")
        .unwrap();
    assert_eq!(ro["scopes"], json!(["read"]));
    assert_eq!(ro["state"], "active");
}

#[tokio::test]
async fn no_key_mints_integration_tokens_unless_its_scopes_say_so() {
    let app = TestApp::spawn().await;
    let configured = app
        .send(
            Method::PUT,
            "/admin/orgs/1/integrations/portal",
            Some(&app.admin_token),
            Some(&json!({
                "algorithm": "EdDSA", "audience": "portal", "lifetimeSeconds": 60,
                "claims": ["email"], "allowApiKeys": true,
            })),
        )
        .await;
    assert_eq!(configured.status(), StatusCode::OK);
    let reader = key_with(
        &app,
        &app.admin_token,
        "reader",
        &["read", "keys:write", "users:write"],
    )
    .await;
    let refused = app
        .post("/user/authenticate/portal", Some(&reader), &json!({}))
        .await;
    let message = assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(message.contains("integrations:mint"), "{message}");
    let minter = key_with(&app, &app.admin_token, "minter", &["integrations:mint"]).await;
    let minted = app
        .post("/user/authenticate/portal", Some(&minter), &json!({}))
        .await;
    assert_eq!(minted.status(), StatusCode::OK);
    assert!(body(minted).await["token"].is_string());
}
