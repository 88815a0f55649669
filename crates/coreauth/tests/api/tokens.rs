//! What counts as a valid token: the signature, the header, the expiry, and the session behind
//! it. Everything else is `403 unauthenticated`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn assert_unauthenticated(app: &TestApp, authorization: Option<&str>) {
    let mut request = app.client.get(app.url("/user/me"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn bearer_and_bare_authorization_headers_both_work() {
    let app = TestApp::spawn().await;
    let token = &app.admin_token;
    for value in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        token.clone(),
    ] {
        let response = app
            .client
            .get(app.url("/user/me"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn missing_garbage_and_foreign_scheme_credentials_are_refused() {
    let app = TestApp::spawn().await;
    assert_unauthenticated(&app, None).await;
    for value in [
        "",
        "Bearer",
        "Bearer ",
        "garbage",
        "Bearer a.b.c",
        "Basic YWRtaW46cHc=",
    ] {
        assert_unauthenticated(&app, Some(value)).await;
    }
}

/// Header bytes outside ASCII (UTF-8 text, or bytes that are not UTF-8 at all) never make a
/// credential, not even around a real token: the server reads the header as UTF-8, not with
/// the stricter visible-ASCII check.
#[tokio::test]
async fn credentials_with_bytes_outside_ascii_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.as_bytes();
    let values: [Vec<u8>; 5] = [
        [b"Bearer ", token, "é".as_bytes()].concat(),
        [b"Bearer ".as_slice(), "é".as_bytes(), token].concat(),
        [token, b"\xff"].concat(),
        b"Bearer \xff\xfe".to_vec(),
        "Bearer cak_ümlaut".as_bytes().to_vec(),
    ];
    for value in values {
        let header = reqwest::header::HeaderValue::from_bytes(&value).unwrap();
        let response = app
            .client
            .get(app.url("/user/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "unauthenticated").await;
    }
    // The token itself still works.
    let response = app
        .client
        .get(app.url("/user/me"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("member@example.com", org, "member").await;
    let token = app.login_ok("member@example.com", PASSWORD).await.token;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(&token);
    claims["role"] = json!("admin");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_unauthenticated(&app, Some(&format!("Bearer {forged}"))).await;

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_unauthenticated(&app, Some(&format!("Bearer {flipped}"))).await;
}

#[tokio::test]
async fn alg_none_and_embedded_keys_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let payload = token.split('.').nth(1).unwrap();
    let none = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string());
    assert_unauthenticated(&app, Some(&format!("Bearer {none}.{payload}."))).await;

    // A token signed with the attacker's own key, which it embeds in the header.
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let x = URL_SAFE_NO_PAD.encode(attacker.verifying_key().to_bytes());
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid,
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
    let signing_input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
    use ed25519_dalek::Signer;
    let signature = attacker.sign(signing_input.as_bytes());
    let forged = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    assert_unauthenticated(&app, Some(&format!("Bearer {forged}"))).await;
}

#[tokio::test]
async fn a_token_expires_after_fifteen_minutes() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    app.advance(Duration::from_secs(15 * 60 - 1));
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    app.advance(Duration::from_secs(1));
    assert_unauthenticated(&app, Some(&format!("Bearer {token}"))).await;
}

#[tokio::test]
async fn the_token_lifetime_is_a_setting() {
    let app = TestApp::spawn_with(|s| s.token_ttl = Duration::from_secs(60)).await;
    let answer = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(answer.expires_at, (app.now_millis() + 60_000) / 1000 * 1000);
    app.advance(Duration::from_secs(61));
    assert_eq!(app.me(&answer.token).await.status(), StatusCode::FORBIDDEN);
}
