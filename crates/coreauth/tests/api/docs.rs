//! `GET /openapi.json` and `GET /docs`: generated from the code, for administrators only.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json", Some(&app.admin_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_both_security_schemes() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "Authorization");
    let login = &doc["paths"]["/user/authenticate"]["post"];
    for status in ["200", "401", "404", "403"] {
        assert!(
            login["responses"][status].is_object(),
            "login documents {status}"
        );
    }
    assert!(doc["components"]["schemas"]["AuthenticateRequest"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn only_administrators_read_the_document() {
    let app = TestApp::spawn().await;
    assert_error(
        app.get("/openapi.json", None).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    let org = app.create_org("Acme").await;
    app.create_user("dev@acme.example", org, "member").await;
    app.create_user("boss@acme.example", org, "admin").await;
    let dev = app.login_ok("dev@acme.example", PASSWORD).await.token;
    let boss = app.login_ok("boss@acme.example", PASSWORD).await.token;
    assert_error(
        app.get("/openapi.json", Some(&dev)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.get("/openapi.json", Some(&boss)).await.status(),
        StatusCode::OK,
        "org admins too"
    );
}

/// Every documented operation is routed: none falls through to "no such endpoint" or 405.
#[tokio::test]
async fn every_documented_operation_is_a_real_route() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut seen = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{org_id}", "1")
            .replace("{user_id}", "1")
            .replace("{id}", "1")
            .replace("{name}", "probe");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .send(method.clone(), &concrete, Some(&app.admin_token), None)
                .await;
            let status = response.status();
            let text = response.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !text.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
            seen += 1;
        }
    }
    assert!(seen >= 30, "only {seen} operations documented");
}

/// The other direction: routes are only added through utoipa's `routes!`, which documents
/// them, so a plain `.route(` in the HTTP layer is an undocumented route. Except in the one
/// module that speaks another protocol with its own description: SCIM (`http/scim.rs`), whose
/// `/scim/v2/Schemas`, `ResourceTypes` and `ServiceProviderConfig` describe it (RFC 7644 §4).
#[test]
fn no_route_is_added_without_its_description() {
    const DESCRIBED_ELSEWHERE: [&str; 1] = ["scim.rs"];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut offenders = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if DESCRIBED_ELSEWHERE.contains(&name.as_ref()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".route(") || code.contains(".nest(") {
                offenders.insert(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "undocumented routes: {offenders:?}");
}

#[tokio::test]
async fn an_admin_signs_in_to_swagger_ui_in_a_browser() {
    let app = TestApp::spawn().await;
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();

    let form = browser.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(
        form.text()
            .await
            .unwrap()
            .contains("<form method=\"post\" action=\"/docs/login\">")
    );
    let ui = browser.get(app.url("/docs/ui/")).send().await.unwrap();
    assert_eq!(
        ui.status(),
        StatusCode::SEE_OTHER,
        "no UI without signing in"
    );

    let signed_in = browser
        .post(app.url("/docs/login"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
            ("selectedOrg", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let ui = browser
        .get(app.url("/docs/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().to_lowercase().contains("swagger"));
    let init = browser
        .get(app.url("/docs/ui/swagger-initializer.js"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let doc = browser
        .get(app.url("/openapi.json"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), StatusCode::OK);

    // The cookie opens the documentation only, never the API.
    let me = browser
        .get(app.url("/user/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_error(me, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn members_and_wrong_passwords_do_not_get_in() {
    let app = TestApp::spawn().await;
    app.create_user("dev@example.com", 1, "member").await;
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let member = browser
        .post(app.url("/docs/login"))
        .form(&[("email", "dev@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(member.status(), StatusCode::FORBIDDEN);
    assert!(member.headers().get("set-cookie").is_none());
    // Refused before a session was opened: the member's only session is the one below.
    let token = app.login_ok("dev@example.com", PASSWORD).await.token;
    let sessions = body(app.get("/user/sessions", Some(&token)).await).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    let wrong = browser
        .post(app.url("/docs/login"))
        .form(&[("email", ADMIN_EMAIL), ("password", "wrong <script>")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let page = wrong.text().await.unwrap();
    assert!(
        !page.contains("<script>"),
        "nothing from the request is echoed unescaped"
    );
}

#[tokio::test]
async fn behind_https_the_docs_cookie_is_secure() {
    let app = TestApp::spawn_with(|s| s.public_url = Some("https://auth.example.com".into())).await;
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let response = browser
        .post(app.url("/docs/login"))
        .form(&[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}
