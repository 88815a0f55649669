//! Integration tokens (SPEC §10), verified here without coreauth's JWT code: HMAC-SHA-256 with
//! `hmac`/`sha2`, Ed25519 with `ed25519-dalek` against the published JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

mod remote;

const SHARED: &str = "a-shared-secret-of-at-least-32-bytes!!";

async fn configure(
    app: &TestApp,
    token: &str,
    org: i64,
    name: &str,
    config: Value,
) -> reqwest::Response {
    app.send(
        reqwest::Method::PUT,
        &format!("/admin/orgs/{org}/integrations/{name}"),
        Some(token),
        Some(&config),
    )
    .await
}

fn hs256(audience: &str) -> Value {
    json!({"algorithm": "HS256", "secret": SHARED, "audience": audience, "lifetimeSeconds": 300,
           "claims": ["email", "name", "role"], "customClaims": {"portal": "acme-board"}})
}

fn parts(token: &str) -> (Value, Value, Vec<u8>, String) {
    let pieces: Vec<&str> = token.split('.').collect();
    let decode =
        |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (
        decode(pieces[0]),
        decode(pieces[1]),
        URL_SAFE_NO_PAD.decode(pieces[2]).unwrap(),
        format!("{}.{}", pieces[0], pieces[1]),
    )
}

#[tokio::test]
async fn an_hs256_token_carries_the_chosen_claims_and_verifies_with_the_shared_secret() {
    let app = TestApp::spawn().await;
    let response = configure(
        &app,
        &app.admin_token,
        1,
        "productboard",
        hs256("productboard.com"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let view = body(response).await;
    assert_eq!(view["hasSecret"], true);
    assert!(
        !view.to_string().contains(SHARED),
        "the secret is not echoed"
    );

    let response = app
        .post(
            "/user/authenticate/productboard",
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let minted = body(response).await;
    let token = minted["token"].as_str().unwrap();
    let (header, claims, signature, signed) = parts(token);
    assert_eq!(header["alg"], "HS256");
    let mut mac = Hmac::<Sha256>::new_from_slice(SHARED.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    mac.verify_slice(&signature)
        .expect("HMAC-SHA-256 with the shared secret");

    assert_eq!(claims["aud"], "productboard.com");
    assert_eq!(claims["email"], ADMIN_EMAIL);
    assert_eq!(claims["name"], "Admin");
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["portal"], "acme-board");
    assert!(claims.get("userId").is_none(), "only the chosen fields");
    let now = app.clock_now().unix_timestamp();
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 300);
    assert_eq!(minted["expiresAt"], (now + 300) * 1000);
}

#[tokio::test]
async fn an_eddsa_token_verifies_with_the_published_key_and_is_no_session_token() {
    let app = TestApp::spawn().await;
    let config = json!({"algorithm": "EdDSA", "audience": "qrvey", "issuer": "https://auth.acme.example",
                        "lifetimeSeconds": 600, "claims": ["userId", "orgId"]});
    assert_eq!(
        configure(&app, &app.admin_token, 1, "qrveyComposerToken", config)
            .await
            .status(),
        StatusCode::OK
    );
    let minted = body(
        app.post(
            "/user/authenticate/qrveyComposerToken",
            Some(&app.admin_token),
            &json!({}),
        )
        .await,
    )
    .await;
    let token = minted["token"].as_str().unwrap();
    let (header, claims, signature, signed) = parts(token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");

    let session_jwks = body(app.get("/.well-known/jwks.json", None).await).await;
    assert!(
        session_jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != header["kid"]),
        "integration tokens are never signed with a session key"
    );
    let jwks = body(app.get("/.well-known/integrations/jwks.json", None).await).await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap();
    let public: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    verifying
        .verify_strict(signed.as_bytes(), &signature)
        .expect("Ed25519 with the JWKS key");
    assert_eq!(claims["iss"], "https://auth.acme.example");
    assert_eq!(claims["aud"], "qrvey");
    assert_eq!(claims["userId"], 1);
    assert_eq!(claims["orgId"], 1);

    assert_error(
        app.me(token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn unconfigured_names_and_other_orgs_integrations_are_404() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/user/authenticate/productboard",
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let org = app.create_org("Acme").await;
    configure(&app, &app.admin_token, org, "productboard", hs256("pb")).await;
    let response = app
        .post(
            "/user/authenticate/productboard",
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .post("/user/authenticate/productboard", None, &json!({}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn api_keys_mint_only_where_the_admin_allows_it() {
    let app = TestApp::spawn().await;
    configure(&app, &app.admin_token, 1, "strict", hs256("a")).await;
    let mut open = hs256("b");
    open["allowApiKeys"] = json!(true);
    configure(&app, &app.admin_token, 1, "open", open).await;
    let (_, key) = app.add_key(&app.admin_token, "integration").await;
    let response = app
        .post("/user/authenticate/strict", Some(&key), &json!({}))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        app.post("/user/authenticate/open", Some(&key), &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn configuration_is_checked_and_admin_only() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("dev@acme.example", org, "member").await;
    let dev = app.login_ok("dev@acme.example", PASSWORD).await.token;
    assert_error(
        configure(&app, &dev, org, "pb", hs256("pb")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let bad = [
        (
            "pb",
            json!({"algorithm": "RS256", "audience": "x", "lifetimeSeconds": 60}),
        ),
        (
            "pb",
            json!({"algorithm": "HS256", "secret": "short", "audience": "x", "lifetimeSeconds": 60}),
        ),
        (
            "pb",
            json!({"algorithm": "HS256", "audience": "x", "lifetimeSeconds": 60}),
        ),
        (
            "pb",
            json!({"algorithm": "EdDSA", "secret": SHARED, "audience": "x", "lifetimeSeconds": 60}),
        ),
        (
            "pb",
            json!({"algorithm": "EdDSA", "audience": "x", "lifetimeSeconds": 3601}),
        ),
        (
            "pb",
            json!({"algorithm": "EdDSA", "audience": "", "lifetimeSeconds": 60}),
        ),
        (
            "pb",
            json!({"algorithm": "EdDSA", "audience": "x", "lifetimeSeconds": 60, "claims": ["password"]}),
        ),
        (
            "pb",
            json!({"algorithm": "EdDSA", "audience": "x", "lifetimeSeconds": 60, "customClaims": {"sub": "admin"}}),
        ),
        (
            "logout",
            json!({"algorithm": "EdDSA", "audience": "x", "lifetimeSeconds": 60}),
        ),
        (
            "bad%20name",
            json!({"algorithm": "EdDSA", "audience": "x", "lifetimeSeconds": 60}),
        ),
    ];
    for (name, config) in bad {
        let response = configure(&app, &app.admin_token, org, name, config.clone()).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let response = configure(&app, &app.admin_token, 4242, "pb", hs256("pb")).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;

    configure(&app, &app.admin_token, org, "pb", hs256("pb")).await;
    let list = body(
        app.get(
            &format!("/admin/orgs/{org}/integrations"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(SHARED));
    let path = format!("/admin/orgs/{org}/integrations/pb");
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
}

#[tokio::test]
async fn minting_is_audited_without_the_token_or_secret() {
    let app = TestApp::spawn().await;
    configure(&app, &app.admin_token, 1, "productboard", hs256("pb")).await;
    let minted = body(
        app.post(
            "/user/authenticate/productboard",
            Some(&app.admin_token),
            &json!({}),
        )
        .await,
    )
    .await;
    let page = body(app.get("/admin/audit", Some(&app.admin_token)).await).await;
    let events: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.contains(&"integration.token_issued".to_owned()));
    assert!(events.contains(&"integration.configured".to_owned()));
    let text = page.to_string();
    assert!(!text.contains(minted["token"].as_str().unwrap()) && !text.contains(SHARED));
}

#[tokio::test]
async fn an_integration_cannot_speak_as_coreauth_or_for_someone_else() {
    let app = TestApp::spawn().await;
    let base = json!({"algorithm": "EdDSA", "audience": "portal", "lifetimeSeconds": 600});
    let mut refused = Vec::new();
    for (field, value) in [
        ("audience", json!("coreauth")),
        ("issuer", json!("coreauth")),
        ("customClaims", json!({"email": "ceo@other.example"})),
        ("customClaims", json!({"orgId": 2})),
        ("customClaims", json!({"uid": 1})),
        ("customClaims", json!({"sid": "s"})),
        ("customClaims", json!({"role": "admin"})),
        ("customClaims", json!({"org": 2})),
    ] {
        let mut config = base.clone();
        config[field] = value.clone();
        let response = configure(&app, &app.admin_token, 1, "portal", config).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{field}: {value}"
        );
        refused.push(body(response).await["error"].clone());
    }
    assert!(refused.iter().all(|e| e == "invalid_request"));

    // Without an issuer of its own, the token's is not coreauth's either.
    let mut config = base.clone();
    config["claims"] = json!(["email"]);
    config["customClaims"] = json!({"tier": "gold"});
    let response = configure(&app, &app.admin_token, 1, "portal", config).await;
    assert_eq!(response.status(), StatusCode::OK);
    let minted = body(
        app.post(
            "/user/authenticate/portal",
            Some(&app.admin_token),
            &json!({}),
        )
        .await,
    )
    .await;
    let (_, claims, _, _) = parts(minted["token"].as_str().unwrap());
    assert_eq!(claims["iss"], "coreauth/integrations/portal");
    assert_eq!(claims["email"], ADMIN_EMAIL, "identity from the caller");
    assert_eq!(claims["tier"], "gold");
}
