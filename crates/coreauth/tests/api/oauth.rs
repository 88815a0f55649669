//! OAuth 2.0 client credentials at `POST /oauth/token`: a service account's id and key give a
//! short-lived JWT, checked here with jsonwebtoken against the published JWKS, that the API
//! accepts within the scopes granted.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A service account of org 1 with a key of `scopes`: `(client id, client secret)`.
async fn client(app: &TestApp, role: &str, scopes: &[&str]) -> (String, String) {
    let account = body(
        app.post(
            "/admin/orgs/1/service-accounts",
            Some(&app.admin_token),
            &json!({"name": "terraform", "role": role}),
        )
        .await,
    )
    .await;
    let id = account["id"].as_str().unwrap().to_owned();
    let key = body(
        app.post(
            &format!("/admin/orgs/1/service-accounts/{id}/keys"),
            Some(&app.admin_token),
            &json!({"name": "oauth", "scopes": scopes}),
        )
        .await,
    )
    .await;
    (id, key["token"].as_str().unwrap().to_owned())
}

/// A token request's form fields.
type Form<'a> = Vec<(&'a str, &'a str)>;

async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn oauth_error(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "{code}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], code, "{answer}");
    assert!(answer["error_description"].is_string());
}

#[tokio::test]
async fn a_service_account_gets_a_jwt_that_an_independent_library_verifies() {
    let app = TestApp::spawn().await;
    let (id, secret) = client(&app, "admin", &["keys:read", "users:read", "audit:read"]).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "keys:read users:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 900);
    assert_eq!(answer["scope"], "keys:read users:read");
    let token = answer["access_token"].as_str().unwrap().to_owned();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwks = body(app.get("/.well-known/jwks.json", None).await).await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header.kid.as_deref().unwrap())
        .expect("the token's key is published");
    let decoding = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["coreauth"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["scope"], "keys:read users:read");
    assert_eq!(claims["org"], 1);

    // The API takes it within its scopes, and never as a session.
    let listed = app
        .get("/admin/orgs/1/service-accounts", Some(&token))
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let me = body(app.me(&token).await).await;
    assert_eq!(me["authMethod"], "client_credentials");
    let audit = app.get("/admin/audit", Some(&token)).await;
    let message = assert_error(audit, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(message.contains("audit:read"), "{message}");
    assert_error(app.renew(&token).await, StatusCode::FORBIDDEN, "forbidden").await;

    // Disabling the account ends its tokens at once.
    let disabled = app
        .patch(
            &format!("/admin/orgs/1/service-accounts/{id}"),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_error(
        app.me(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn the_form_may_carry_the_client_and_the_scopes_default_to_the_keys() {
    let app = TestApp::spawn().await;
    let (id, secret) = client(&app, "member", &["read"]).await;
    let response = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["scope"], "read");
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(app.me(token).await.status(), StatusCode::OK);
    // The token expires with its session; the clock moves, nothing sleeps.
    app.advance(std::time::Duration::from_secs(901));
    assert_error(
        app.me(token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn the_token_endpoint_refuses_in_rfc_6749s_words() {
    let app = TestApp::spawn().await;
    let (id, secret) = client(&app, "member", &["read"]).await;
    let grant = ("grant_type", "client_credentials");
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (vec![grant], StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            vec![grant, ("client_id", &id), ("client_secret", "cak_wrong")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                grant,
                ("client_id", "someone-else"),
                ("client_secret", &secret),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                grant,
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "users:write"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![
                grant,
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "admin"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![grant, grant, ("client_id", &id), ("client_secret", &secret)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, status, code) in cases {
        oauth_error(token_request(&app, &form).await, status, code).await;
    }
    // JSON is not the protocol's form.
    let json_body = app
        .post(
            "/oauth/token",
            None,
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .await;
    oauth_error(json_body, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A wrong Basic secret is challenged.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:cak_nope"));
    let challenged = app
        .client
        .post(app.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[grant])
        .send()
        .await
        .unwrap();
    assert!(
        challenged.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    oauth_error(challenged, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A person's key is no OAuth client.
    let (_, personal) = app.add_key(&app.admin_token, "mine").await;
    let admin = body(app.me(&app.admin_token).await).await;
    let person = token_request(
        &app,
        &[
            grant,
            ("client_id", admin["uuid"].as_str().unwrap()),
            ("client_secret", &personal),
        ],
    )
    .await;
    oauth_error(person, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}
