//! `VerifyLayer` in front of an axum service, checking tokens of a real coreauth: valid ones
//! pass with their claims; expired, foreign-key, wrong-issuer and forged ones get coreauth's
//! `403 unauthenticated`; with introspection on, a revoked one is refused once the short
//! cache lapses.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use coreauth::domain::tokens::SessionClaims;
use coreauth_client::{Claims, ExposeSecret, SecretString, Verifier, VerifierBuilder};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::*;

fn verifier_for(server: &Server) -> VerifierBuilder {
    Verifier::builder(&server.url).clock(Arc::new(server.clock.clone()))
}

/// A service that answers with the claims it was given.
fn protected(verifier: &Verifier) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|claims: Claims| async move {
                format!("{} {} {}", claims.sub, claims.org, claims.role)
            }),
        )
        .layer(verifier.layer())
}

async fn call(app: &Router, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get("/whoami");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn assert_refused(app: &Router, token: &str) {
    let (status, body) = call(app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert!(body["message"].is_string());
}

async fn member_token(server: &Server, email: &str) -> String {
    server.create_member(email).await;
    let client = server.login(email, PASSWORD).await;
    let token = client.token().await.unwrap();
    token.expose_secret().to_owned()
}

/// `claims` signed with `key` under `kid`.
fn sign_with(key: &ed25519_dalek::SigningKey, kid: &str, claims: &SessionClaims) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key.to_pkcs8_der().unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_service_with_its_claims() {
    let server = Server::spawn().await;
    let token = member_token(&server, "svc@example.com").await;
    let verifier = verifier_for(&server).build().unwrap();
    let app = protected(&verifier);
    let expected = format!("{} 1 member", claims_of(&token)["sub"].as_str().unwrap());
    for authorization in [format!("Bearer {token}"), token.clone()] {
        let (status, body) = call(&app, Some(&authorization)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, expected);
    }
    assert_eq!(verifier.stats().jwks_fetches, 1, "the keys are cached");

    let (status, body) = call(&app, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unauthenticated"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let server = Server::spawn().await;
    let token = member_token(&server, "late@example.com").await;
    let verifier = verifier_for(&server).build().unwrap();
    let app = protected(&verifier);
    server.advance(15 * MINUTE - Duration::from_secs(2));
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    server.advance(Duration::from_secs(2));
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn tokens_signed_by_another_key_are_refused_and_unknown_kids_refetch_rarely() {
    let server = Server::spawn().await;
    let token = member_token(&server, "forged@example.com").await;
    let claims: SessionClaims = serde_json::from_value(claims_of(&token)).unwrap();
    let verifier = verifier_for(&server)
        .jwks_refetch_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let app = protected(&verifier);
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    assert_eq!(verifier.stats().jwks_fetches, 1);

    let attacker = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    // The server's kid, someone else's key: the signature fails.
    assert_refused(&app, &sign_with(&attacker, &kid_of(&token), &claims)).await;
    assert_eq!(
        verifier.stats().jwks_fetches,
        1,
        "a known kid needs no fetch"
    );
    // A kid coreauth does not have (a revoked or made-up key): right after the first fetch,
    // refused without asking again; a while later, one refetch, then refused.
    assert_refused(&app, &sign_with(&attacker, "retired-key", &claims)).await;
    assert_eq!(verifier.stats().jwks_fetches, 1);
    server.advance(Duration::from_secs(31));
    assert_refused(&app, &sign_with(&attacker, "retired-key", &claims)).await;
    assert_eq!(verifier.stats().jwks_fetches, 2);
    for n in 0..5 {
        assert_refused(
            &app,
            &sign_with(&attacker, &format!("made-up-{n}"), &claims),
        )
        .await;
    }
    assert_eq!(
        verifier.stats().jwks_fetches,
        2,
        "refetches are rate-limited"
    );
    server.advance(Duration::from_secs(31));
    assert_refused(&app, &sign_with(&attacker, "made-up-again", &claims)).await;
    assert_eq!(verifier.stats().jwks_fetches, 3);
    // The real token is still fine throughout.
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn wrong_issuer_audience_type_and_algorithm_are_refused() {
    let server = Server::spawn().await;
    let token = member_token(&server, "issuer@example.com").await;
    let claims: SessionClaims = serde_json::from_value(claims_of(&token)).unwrap();
    let verifier = verifier_for(&server).build().unwrap();
    let app = protected(&verifier);

    // Signed with coreauth's own key, but for another issuer or audience.
    let mut other_issuer = claims.clone();
    other_issuer.iss = "https://evil.example".into();
    assert_refused(&app, &server.state.signer.sign(&other_issuer).unwrap()).await;
    let mut other_audience = claims.clone();
    other_audience.aud = "productboard".into();
    assert_refused(&app, &server.state.signer.sign(&other_audience).unwrap()).await;

    // A verifier expecting another issuer refuses coreauth's genuine token.
    let elsewhere = verifier_for(&server)
        .issuer("https://auth.other.example")
        .build()
        .unwrap();
    assert_refused(&protected(&elsewhere), &token).await;

    // alg none, HS256 keyed with the public key, and a token of another type.
    let parts: Vec<&str> = token.split('.').collect();
    let none =
        base64_json(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid_of(&token)}));
    assert_refused(&app, &format!("{none}.{}.", parts[1])).await;
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid_of(&token));
    header.typ = Some("at+jwt".into());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    assert_refused(&app, &hs256).await;
    let typ =
        base64_json(&serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid_of(&token)}));
    assert_refused(&app, &format!("{typ}.{}.{}", parts[1], parts[2])).await;
    // An API key cannot be checked offline.
    assert_refused(&app, &server.admin_key).await;
}

fn base64_json(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn with_introspection_a_revoked_token_is_refused_once_the_cache_lapses() {
    let server = Server::spawn().await;
    server.create_member("revoke@example.com").await;
    let client = server.login("revoke@example.com", PASSWORD).await;
    let token = client.token().await.unwrap().expose_secret().to_owned();
    let verifier = verifier_for(&server)
        .introspect(
            SecretString::from(server.admin_key.as_str()),
            Duration::from_secs(5),
        )
        .build()
        .unwrap();
    let app = protected(&verifier);
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    assert_eq!(verifier.stats().introspections, 1, "answers are cached");

    client.logout().await.unwrap();
    // Within the cache's few seconds the logout is not seen yet…
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    // …after them it is.
    server.advance(Duration::from_secs(5));
    assert_refused(&app, &token).await;
    assert_eq!(verifier.stats().introspections, 2);

    // Offline only, the signature is still good until the token expires.
    let offline = protected(&verifier_for(&server).build().unwrap());
    assert_eq!(call(&offline, Some(&token)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn when_coreauth_cannot_confirm_the_answer_is_503_not_a_pass() {
    let server = Server::spawn().await;
    let token = member_token(&server, "unsure@example.com").await;
    let verifier = verifier_for(&server)
        .introspect(
            SecretString::from("cak_not-a-real-key"),
            Duration::from_secs(5),
        )
        .build()
        .unwrap();
    let (status, body) = call(&protected(&verifier), Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unavailable"
    );
    assert!(!body.contains(&token));
}
