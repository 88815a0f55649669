//! `POST /user/authenticate` (SPEC §3, seeds 000–003).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn login_answers_token_expiry_and_user() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let user_id = app
        .create_user("Jane.Doe@Acme.example", org, "member")
        .await;

    let response = app.login("Jane.Doe@Acme.example", PASSWORD, 0).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer = body(response).await;
    assert!(answer["token"].as_str().unwrap().len() > 20);
    let expected_expiry = (app.now_millis() + 15 * 60 * 1000) / 1000 * 1000;
    assert_eq!(answer["expiresAt"], expected_expiry, "15 minutes, epoch ms");
    let user = &answer["user"];
    assert_eq!(user["id"], user_id);
    assert_eq!(user["email"], "Jane.Doe@acme.example");
    assert_eq!(user["first"], "Test");
    assert_eq!(user["last"], "User");
    assert_eq!(user["isActive"], true);
    assert_eq!(user["isAdmin"], false);
    assert_eq!(user["orgId"], org);
    assert_eq!(user["role"], "member");
    assert!(user["uuid"].as_str().unwrap().len() == 36);
}

#[tokio::test]
async fn email_is_case_insensitive() {
    let app = TestApp::spawn().await;
    app.create_user("mixed.Case@example.com", 1, "member").await;
    let answer = app.login_ok("  MIXED.case@EXAMPLE.com ", PASSWORD).await;
    assert_eq!(answer.user.email, "mixed.Case@example.com");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.create_user("known@example.com", 1, "member").await;

    let wrong = app.login("known@example.com", "not the password", 0).await;
    let unknown = app.login("nobody@example.com", PASSWORD, 0).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (wrong, unknown) = (body(wrong).await, body(unknown).await);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_credentials");
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in_and_gets_the_same_answer() {
    let app = TestApp::spawn().await;
    let id = app.create_user("gone@example.com", 1, "member").await;
    let response = app
        .patch(
            &format!("/admin/users/{id}"),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.login("gone@example.com", PASSWORD, 0).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn no_active_membership_is_404_but_only_with_the_right_password() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let id = app.create_user("left@example.com", org, "member").await;
    let response = app
        .patch(
            &format!("/admin/orgs/{org}/members/{id}"),
            Some(&app.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app.login("left@example.com", PASSWORD, 0).await;
    assert_error(response, StatusCode::NOT_FOUND, "no_active_org").await;
    let response = app.login("left@example.com", "wrong password!", 0).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn selected_org_picks_among_the_users_orgs() {
    let app = TestApp::spawn().await;
    let acme = app.create_org("Acme").await;
    let globex = app.create_org("Globex").await;
    let other = app.create_org("Initech").await;
    let id = app.create_user("multi@example.com", acme, "member").await;
    app.add_member(globex, id, "admin").await;

    let first = app.login_ok("multi@example.com", PASSWORD).await;
    assert_eq!(
        first.user.org_id, acme,
        "no selectedOrg: the first membership"
    );
    let picked = app.login_to("multi@example.com", PASSWORD, globex).await;
    assert_eq!(picked.user.org_id, globex);
    assert_eq!(picked.user.role, "admin");
    assert!(picked.user.is_admin);

    let response = app.login("multi@example.com", PASSWORD, other).await;
    assert_error(response, StatusCode::NOT_FOUND, "no_active_org").await;
    let response = app.login("multi@example.com", PASSWORD, 9999).await;
    assert_error(response, StatusCode::NOT_FOUND, "no_active_org").await;
}

#[tokio::test]
async fn the_token_is_an_eddsa_jwt_verifiable_with_the_published_key() {
    let app = TestApp::spawn().await;
    let answer = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let header = jsonwebtoken::decode_header(&answer.token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("kid");

    let jwks = body(app.get("/.well-known/jwks.json", None).await).await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's kid is published");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["coreauth"]);
    let verified =
        jsonwebtoken::decode::<serde_json::Value>(&answer.token, &decoding, &validation).unwrap();
    let claims = verified.claims;
    for claim in ["iss", "sub", "org", "role", "sid", "iat", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "claim {claim} in {claims}");
    }
    assert_eq!(claims["sub"], answer.user.uuid.as_str());
    assert_eq!(claims["org"], 1);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["exp"].as_i64().unwrap() * 1000, answer.expires_at);
}

#[tokio::test]
async fn every_login_opens_a_new_session() {
    let app = TestApp::spawn().await;
    let a = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let b = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_ne!(claims_of(&a.token)["sid"], claims_of(&b.token)["sid"]);
    assert_ne!(claims_of(&a.token)["jti"], claims_of(&b.token)["jti"]);
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let database = std::sync::Arc::new(TestDatabase::fresh().await);
    let first = TestApp::spawn_on(&database, |_| {}).await;
    let token = first.admin_token.clone();
    drop(first);
    let second = TestApp::spawn_on(&database, |_| {}).await;
    let response = second.me(&token).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a token from the first instance"
    );
}

#[tokio::test]
async fn the_tests_use_postgres_when_a_server_is_given() {
    // Guards the test setup itself: with COREAUTH_TEST_POSTGRES_URL set, TestApp must really be
    // on PostgreSQL (and log in there), or a green PostgreSQL run would prove nothing.
    let wanted = std::env::var(POSTGRES_URL_VAR).is_ok_and(|url| !url.is_empty());
    let app = TestApp::spawn().await;
    assert_eq!(app.database.is_postgres(), wanted);
    let scheme = if wanted { "postgres://" } else { "sqlite://" };
    assert!(app.database.url.starts_with(scheme), "{}", scheme);
    assert_eq!(app.me(&app.admin_token).await.status(), StatusCode::OK);
}
