//! Remote integrations: the portal's own endpoint mints the token. Each test starts that
//! endpoint on loopback (which the test settings allow, as for the SSO tests' providers) and
//! looks at what coreauth sent it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::configure;
use crate::helpers::*;

const KEY: &str = "qrvey-customer-api-key-1234";

/// What the portal was sent: the headers and the JSON body of each request.
type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A portal answering every POST with `status` and `answer`; returns its token URL.
async fn portal(status: StatusCode, answer: String) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let status = axum::http::StatusCode::from_u16(status.as_u16()).unwrap();
    let router = axum::Router::new()
        .route(
            "/devapi/v4/core/login/token",
            axum::routing::post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((headers, body));
                    (status, answer)
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/devapi/v4/core/login/token"), seen)
}

fn remote(url: &str) -> Value {
    json!({"remote": {"url": url, "apiKey": KEY}, "lifetimeSeconds": 600,
           "claims": ["email", "userId"], "customClaims": {"appId": "app-1"}})
}

async fn mint(app: &TestApp, token: &str, name: &str) -> reqwest::Response {
    app.post(
        &format!("/user/authenticate/{name}"),
        Some(token),
        &json!({}),
    )
    .await
}

#[tokio::test]
async fn a_remote_integration_returns_the_token_its_endpoint_answers() {
    let app = TestApp::spawn().await;
    let expires = app.clock_now().unix_timestamp() + 900;
    let (url, seen) = portal(
        StatusCode::OK,
        json!({"token": "qrvey-composer-token", "expiresAt": expires}).to_string(),
    )
    .await;
    let response = configure(
        &app,
        &app.admin_token,
        1,
        "qrveyComposerToken",
        remote(&url),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let view = body(response).await;
    assert_eq!(view["hasSecret"], true);
    assert_eq!(view["remote"]["url"], url.as_str());
    assert_eq!(view["remote"]["apiKeyHeader"], "x-api-key");
    assert_eq!(view["remote"]["timeoutSeconds"], 5);
    assert_eq!(view["remote"]["tokenField"], "token");
    assert!(view.get("algorithm").is_none() && view.get("audience").is_none());

    let response = mint(&app, &app.admin_token, "qrveyComposerToken").await;
    assert_eq!(response.status(), StatusCode::OK);
    let minted = body(response).await;
    assert_eq!(minted["token"], "qrvey-composer-token");
    assert_eq!(minted["expiresAt"], expires * 1000, "the answer's expiry");

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (headers, sent) = &requests[0];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        sent,
        &json!({"email": ADMIN_EMAIL, "userId": 1, "appId": "app-1"}),
        "the chosen user fields and the custom ones, nothing else"
    );

    let list = body(
        app.get("/admin/orgs/1/integrations", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(list[0]["name"], "qrveyComposerToken");
    assert!(!list.to_string().contains(KEY), "the key is not echoed");
    let audit = body(app.get("/admin/audit", Some(&app.admin_token)).await).await;
    let events: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"integration.token_issued"), "{events:?}");
    assert!(events.contains(&"integration.configured"), "{events:?}");
    let text = audit.to_string();
    assert!(!text.contains(KEY) && !text.contains("qrvey-composer-token"));
}

#[tokio::test]
async fn the_header_the_token_path_and_the_lifetime_are_the_admins_choice() {
    let app = TestApp::spawn().await;
    let (url, seen) = portal(
        StatusCode::OK,
        json!({"data": {"jwt": "nested-token"}}).to_string(),
    )
    .await;
    let config = json!({"remote": {"url": url, "apiKey": KEY, "apiKeyHeader": "X-Qrvey-Key",
                                   "tokenField": "data.jwt", "timeoutSeconds": 2},
                        "lifetimeSeconds": 120, "claims": ["role"]});
    let response = configure(&app, &app.admin_token, 1, "composer", config).await;
    assert_eq!(response.status(), StatusCode::OK);
    let minted = body(mint(&app, &app.admin_token, "composer").await).await;
    assert_eq!(minted["token"], "nested-token");
    let now = app.clock_now().unix_timestamp();
    assert_eq!(
        minted["expiresAt"],
        (now + 120) * 1000,
        "no expiry in the answer"
    );
    let (headers, sent) = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-qrvey-key"], KEY);
    assert!(headers.get("x-api-key").is_none());
    assert_eq!(sent, json!({"role": "admin"}));
}

#[tokio::test]
async fn a_remote_that_fails_answers_502_integration_unavailable_and_is_audited() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "remote stack trace: db password hunter2".to_owned(),
            "HTTP 500",
        ),
        (StatusCode::OK, "<html>oops</html>".to_owned(), "not JSON"),
        (
            StatusCode::OK,
            json!({"error": "no such app"}).to_string(),
            "no token at 'token'",
        ),
        (
            StatusCode::OK,
            json!({"token": "x".repeat(70 * 1024)}).to_string(),
            "larger than 64 KiB",
        ),
    ];
    for (i, (status, answer, said)) in cases.into_iter().enumerate() {
        let (url, _) = portal(status, answer).await;
        let name = format!("portal{i}");
        configure(&app, &app.admin_token, 1, &name, remote(&url)).await;
        let message = assert_error(
            mint(&app, &app.admin_token, &name).await,
            StatusCode::BAD_GATEWAY,
            "integration_unavailable",
        )
        .await;
        assert!(message.contains(said), "{said}: {message}");
        assert!(!message.contains("hunter2") && !message.contains(KEY));
    }

    let audit = body(
        app.get(
            "/admin/audit?event=integration.token_failed",
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let reasons: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "bad_status",
        "answer_not_json",
        "no_token",
        "answer_too_large",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    let text = audit.to_string();
    assert!(!text.contains("hunter2") && !text.contains(KEY));
}

#[tokio::test]
async fn a_remote_that_never_answers_is_502_after_its_timeout() {
    let app = TestApp::spawn().await;
    // Connections are accepted by the kernel into the backlog and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", silent.local_addr().unwrap());
    let mut config = remote(&url);
    config["remote"]["timeoutSeconds"] = json!(1);
    configure(&app, &app.admin_token, 1, "silent", config).await;
    let started = Instant::now();
    let message = assert_error(
        mint(&app, &app.admin_token, "silent").await,
        StatusCode::BAD_GATEWAY,
        "integration_unavailable",
    )
    .await;
    let took = started.elapsed();
    assert!(message.contains("did not answer within 1 s"), "{message}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // Nothing listening at all: a connect error, said as such.
    let closed = format!("http://127.0.0.1:{}/token", free_port());
    configure(&app, &app.admin_token, 1, "closed", remote(&closed)).await;
    let message = assert_error(
        mint(&app, &app.admin_token, "closed").await,
        StatusCode::BAD_GATEWAY,
        "integration_unavailable",
    )
    .await;
    assert!(message.contains("could not be reached"), "{message}");
    drop(silent);
}

#[tokio::test]
async fn a_remote_endpoint_must_be_https_on_a_reachable_network_with_a_sane_config() {
    let app = TestApp::spawn().await;
    let (loopback, _) = portal(StatusCode::OK, "{}".into()).await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut config = remote(&loopback);
        change(&mut config);
        config
    };
    let bad = [
        with(&|c| c["remote"]["url"] = json!("http://portal.example/token")),
        with(&|c| c["remote"]["url"] = json!("ftp://portal.example/token")),
        with(&|c| c["remote"]["url"] = json!("https://10.1.2.3/token")),
        with(&|c| c["remote"]["url"] = json!("https://169.254.169.254/latest")),
        with(&|c| c["remote"]["url"] = json!("https://user:pw@portal.example/token")),
        with(&|c| c["remote"]["url"] = json!("not a url")),
        with(&|c| c["remote"]["apiKeyHeader"] = json!("content-type")),
        with(&|c| c["remote"]["apiKeyHeader"] = json!("bad header")),
        with(&|c| c["remote"]["apiKey"] = json!("")),
        with(&|c| c["remote"]["apiKey"] = json!("line\nbreak")),
        with(&|c| c["remote"]["timeoutSeconds"] = json!(31)),
        with(&|c| c["remote"]["timeoutSeconds"] = json!(0)),
        with(&|c| c["remote"]["tokenField"] = json!("data..token")),
        with(&|c| c["algorithm"] = json!("HS256")),
        with(&|c| c["audience"] = json!("qrvey")),
        with(&|c| c["customClaims"] = json!({"email": "ceo@other.example"})),
        with(&|c| c["lifetimeSeconds"] = json!(3601)),
        with(&|c| {
            c["remote"].as_object_mut().unwrap().remove("apiKey");
        }),
    ];
    for config in bad {
        let response = configure(&app, &app.admin_token, 1, "qrvey", config.clone()).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert_eq!(
        configure(&app, &app.admin_token, 1, "qrvey", remote(&loopback))
            .await
            .status(),
        StatusCode::OK,
        "loopback over http, as the test settings allow"
    );

    // Without the operator's allowance, loopback is neither plain http nor reachable.
    let strict = TestApp::spawn_with(|s| s.sso_allowed_networks = None).await;
    for url in [loopback.clone(), loopback.replace("http:", "https:")] {
        let response = configure(&strict, &strict.admin_token, 1, "qrvey", remote(&url)).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_admin_of_another_org_can_neither_configure_nor_mint_its_integrations() {
    let app = TestApp::spawn().await;
    let (url, seen) = portal(StatusCode::OK, json!({"token": "a-token"}).to_string()).await;
    let org_a = app.create_org("Acme").await;
    let org_b = app.create_org("Beta").await;
    app.create_user("admin@acme.example", org_a, "admin").await;
    app.create_user("admin@beta.example", org_b, "admin").await;
    let admin_a = app
        .login_to("admin@acme.example", PASSWORD, org_a)
        .await
        .token;
    let admin_b = app
        .login_to("admin@beta.example", PASSWORD, org_b)
        .await
        .token;

    let response = configure(&app, &admin_a, org_a, "qrvey", remote(&url)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mint(&app, &admin_a, "qrvey").await.status(), StatusCode::OK);

    assert_error(
        configure(&app, &admin_b, org_a, "qrvey", remote(&url)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.get(&format!("/admin/orgs/{org_a}/integrations"), Some(&admin_b))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.delete(
            &format!("/admin/orgs/{org_a}/integrations/qrvey"),
            Some(&admin_b),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        mint(&app, &admin_b, "qrvey").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only A's own call reached the portal"
    );
}

#[tokio::test]
async fn the_api_document_describes_remote_integrations() {
    let app = TestApp::spawn().await;
    let doc = body(app.get("/openapi.json", Some(&app.admin_token)).await).await;
    let schemas = &doc["components"]["schemas"];
    let config = &schemas["RemoteIntegrationConfig"]["properties"];
    for field in [
        "url",
        "apiKey",
        "apiKeyHeader",
        "timeoutSeconds",
        "tokenField",
    ] {
        assert!(config[field].is_object(), "RemoteIntegrationConfig.{field}");
    }
    assert!(schemas["IntegrationConfig"]["properties"]["remote"].is_object());
    assert!(schemas["Integration"]["properties"]["remote"].is_object());
    let mint = &doc["paths"]["/user/authenticate/{name}"]["post"];
    assert!(mint["responses"]["502"].is_object(), "502 documented");
}
