//! Strategy discovery and SSO settings (SPEC §4) without an identity provider; the full
//! sign-in against a real OpenID provider is in `tests/sso/`, run by `scripts/test`.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) fn sso_config(issuer: &str, domains: &[&str]) -> Value {
    json!({"issuer": issuer, "clientId": "coreauth", "clientSecret": "client-secret-value",
           "emailDomains": domains, "allowJit": false,
           "redirectAllowList": ["https://app.acme.example/"]})
}

pub(crate) async fn put_sso(
    app: &TestApp,
    token: &str,
    org: i64,
    config: &Value,
) -> reqwest::Response {
    app.send(
        reqwest::Method::PUT,
        &format!("/admin/orgs/{org}/sso"),
        Some(token),
        Some(config),
    )
    .await
}

async fn strategy(app: &TestApp, email: &str) -> Value {
    let response = app
        .post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": email}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

#[tokio::test]
async fn the_strategy_depends_on_the_domain_only() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("known@acme.example", org, "member").await;
    assert_eq!(
        strategy(&app, "known@acme.example").await,
        json!({"strategy": "password"})
    );

    let response = put_sso(
        &app,
        &app.admin_token,
        org,
        &sso_config("http://127.0.0.1:9/", &["acme.example"]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let known = strategy(&app, "known@acme.example").await;
    let unknown = strategy(&app, "Nobody@ACME.example").await;
    assert_eq!(known, unknown, "no user enumeration");
    assert_eq!(known["strategy"], "sso");
    assert_eq!(known["provider"], "oidc");
    assert_eq!(known["orgId"], org);
    let connection = known["connectionId"].as_i64().unwrap();
    assert_eq!(
        known["redirectUrl"],
        format!(
            "{}/user/authenticate/sso/start?org={org}&connection={connection}",
            app.address
        )
    );
    assert_eq!(
        strategy(&app, "someone@other.example").await,
        json!({"strategy": "password"})
    );

    let response = app
        .post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "not-an-email"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn strategy_lookups_are_rate_limited_per_address() {
    let app = TestApp::spawn_with(|s| s.login_traffic_per_address = 5).await;
    // Look-ups have a budget of their own: the admin's login at spawn spent none of it.
    for i in 0..5 {
        strategy(&app, &format!("probe{i}@example.com")).await;
    }
    let response = app
        .post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "x@example.com"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn sso_settings_are_admin_only_checked_and_keep_the_secret() {
    let app = TestApp::spawn().await;
    let acme = app.create_org("Acme").await;
    let globex = app.create_org("Globex").await;
    app.create_user("dev@acme.example", acme, "member").await;
    let dev = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let config = sso_config(
        "https://login.acme.example/tenant/v2.0",
        &["acme.example", "Corp.Acme.Example"],
    );

    assert_error(
        put_sso(&app, &dev, acme, &config).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let response = put_sso(&app, &app.admin_token, acme, &config).await;
    assert_eq!(response.status(), StatusCode::OK);
    let view = body(response).await;
    assert!(
        !view.to_string().contains("client-secret-value"),
        "the secret is not echoed"
    );
    assert_eq!(
        view["emailDomains"],
        json!(["acme.example", "corp.acme.example"])
    );
    assert_eq!(
        view["redirectUri"],
        format!("{}/user/authenticate/sso/callback", app.address)
    );
    let read = body(
        app.get(&format!("/admin/orgs/{acme}/sso"), Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(read, view);

    let taken = put_sso(
        &app,
        &app.admin_token,
        globex,
        &sso_config("https://idp.globex.example", &["acme.example"]),
    )
    .await;
    assert_error(taken, StatusCode::CONFLICT, "conflict").await;
    for bad in [
        sso_config("not a url", &["acme.example"]),
        sso_config("ftp://idp.example", &["acme.example"]),
        sso_config("https://idp.example", &[]),
        sso_config("https://idp.example", &["not a domain"]),
        json!({"issuer": "https://idp.example", "clientId": "", "clientSecret": "s", "emailDomains": ["x.example"]}),
        json!({"issuer": "https://idp.example", "clientId": "c", "clientSecret": "s", "emailDomains": ["x.example"], "redirectAllowList": ["javascript:alert(1)"]}),
    ] {
        assert_error(
            put_sso(&app, &app.admin_token, globex, &bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }

    let path = format!("/admin/orgs/{acme}/sso");
    assert_eq!(
        app.delete(&path, Some(&app.admin_token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.delete(&path, Some(&app.admin_token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        strategy(&app, "dev@acme.example").await["strategy"],
        "password"
    );
}

#[tokio::test]
async fn an_sso_org_cannot_be_entered_with_a_password_unless_it_allows_both() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("dev@acme.example", org, "member").await;
    let mut config = sso_config("https://idp.acme.example", &["acme.example"]);
    put_sso(&app, &app.admin_token, org, &config).await;
    let response = app.login("dev@acme.example", PASSWORD, 0).await;
    assert_error(response, StatusCode::FORBIDDEN, "sso_required").await;
    let response = app.login("dev@acme.example", "wrong password", 0).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    config["allowPassword"] = json!(true);
    put_sso(&app, &app.admin_token, org, &config).await;
    app.login_ok("dev@acme.example", PASSWORD).await;
}

#[tokio::test]
async fn starting_checks_the_org_the_return_target_and_the_provider() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let start = |query: String| {
        browser
            .get(app.url(&format!("/user/authenticate/sso/start?{query}")))
            .send()
    };

    assert_error(
        start(format!("org={org}")).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // A provider that is not there (nothing listens on port 9).
    put_sso(
        &app,
        &app.admin_token,
        org,
        &sso_config("http://127.0.0.1:9", &["acme.example"]),
    )
    .await;
    let evil = format!("org={org}&returnTo=https%3A%2F%2Fevil.example%2Fsteal");
    assert_error(
        start(evil).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let down = start(format!(
        "org={org}&returnTo=https%3A%2F%2Fapp.acme.example%2Fdone"
    ))
    .await
    .unwrap();
    let message = assert_error(down, StatusCode::BAD_GATEWAY, "idp_unreachable").await;
    assert!(message.contains("could not be reached"), "{message}");
    assert_error(
        start("org=abc".into()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    let audit = body(
        app.get("/admin/audit?event=sso.login", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(audit["events"][0]["reason"], "idp_unreachable");
}

#[tokio::test]
async fn a_callback_with_an_unknown_state_is_refused_and_audited() {
    let app = TestApp::spawn().await;
    let response = app
        .get(
            "/user/authenticate/sso/callback?code=abc&state=forged",
            None,
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "sso_state_invalid").await;
    let response = app.get("/user/authenticate/sso/callback", None).await;
    assert_error(response, StatusCode::BAD_REQUEST, "sso_state_invalid").await;
    let audit = body(
        app.get("/admin/audit?event=sso.login", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2);
    assert_eq!(audit["events"][0]["reason"], "sso_state_invalid");
}

/// Applies the schema as it was before SSO connections (migrations 0001–0013) to `database`.
async fn migrate_to_0013(database: &TestDatabase) {
    let backend = if database.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let older = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0014" {
            std::fs::copy(&path, older.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(older.path()).await.unwrap();
    if database.is_postgres() {
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in OLD_SSO_ROWS {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = database.url.parse().unwrap();
        let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in OLD_SSO_ROWS {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
}

/// An org's SSO settings as coreauth stored them before connections: one verified domain, one
/// pending.
const OLD_SSO_ROWS: [&str; 3] = [
    "INSERT INTO orgs (id, name, created_at) VALUES (7, 'Acme', 0)",
    "INSERT INTO sso_configs (org_id, issuer, client_id, client_secret, allow_jit, \
     allow_password, redirect_allow_list, updated_at, pending_domains) \
     VALUES (7, 'https://idp.acme.example', 'coreauth', 'sealed', true, false, \
     '[\"https://app.acme.example/\"]', 1000, '[\"acme-labs.example\"]')",
    "INSERT INTO sso_domains (domain, org_id) VALUES ('acme.example', 7)",
];

#[tokio::test]
async fn sso_settings_stored_before_connections_become_the_orgs_default_connection() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    migrate_to_0013(&database).await;
    let app = TestApp::spawn_on(&database, |_| {}).await;

    let config = body(app.get("/admin/orgs/7/sso", Some(&app.admin_token)).await).await;
    assert_eq!(config["issuer"], "https://idp.acme.example");
    assert_eq!(config["emailDomains"], json!(["acme.example"]));
    assert_eq!(config["pendingDomains"], json!(["acme-labs.example"]));
    assert_eq!(config["allowJit"], true);
    assert_eq!(config["allowPassword"], false);
    assert_eq!(
        config["redirectAllowList"],
        json!(["https://app.acme.example/"])
    );
    let connections = body(
        app.get("/admin/orgs/7/sso/connections", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(connections[0]["name"], "default");
    assert_eq!(connections[0]["preset"], "generic");
    assert_eq!(connections[0]["claims"]["emailClaims"], json!(["email"]));
    let claims = body(
        app.get("/admin/orgs/7/domains", Some(&app.admin_token))
            .await,
    )
    .await;
    let statuses: Vec<(&str, &str)> = claims
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["domain"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("acme-labs.example", "pending"),
            ("acme.example", "verified")
        ]
    );
    let strategy = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "ann@acme.example"}),
        )
        .await,
    )
    .await;
    assert_eq!(strategy["orgId"], 7);
    assert_eq!(strategy["connectionId"], connections[0]["id"]);
}

/// The plain build (`cargo run`, no `saml` feature) refuses SAML connections, saying how to
/// get a build that takes them; `tests/saml/` tests the build that does.
#[cfg(not(feature = "saml"))]
#[tokio::test]
async fn a_build_without_saml_refuses_saml_connections_and_says_why() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
            &json!({"name": "adfs", "emailDomains": ["acme.example"],
                "saml": {"entityId": "urn:idp", "ssoUrl": "https://idp.acme.example/sso",
                    "certificates": ["MIIB"]}}),
        )
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(message.contains("--features saml"), "{message}");
    // And the ACS says so too rather than failing.
    let acs = app
        .client
        .post(app.url("/user/authenticate/saml/acs"))
        .form(&[("SAMLResponse", "PHNhbWxwOlJlc3BvbnNlLz4=")])
        .send()
        .await
        .unwrap();
    assert_error(acs, StatusCode::BAD_REQUEST, "saml_unsupported").await;
}
