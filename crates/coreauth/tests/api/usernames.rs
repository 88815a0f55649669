//! Usernames (seed 004's `john.doe`): optional, unique without regard to case, and a login name
//! as good as the email at `/user/login` and `/user/authenticate`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn create_with_username(app: &TestApp, email: &str, username: &str) -> reqwest::Response {
    app.post(
        "/admin/users",
        Some(&app.admin_token),
        &json!({
            "email": email, "password": PASSWORD, "first": "John", "last": "Doe",
            "orgId": 1, "role": "member", "username": username,
        }),
    )
    .await
}

async fn seed_login(app: &TestApp, username: &str) -> reqwest::Response {
    app.post(
        "/user/login",
        None,
        &json!({"username": username, "password": PASSWORD}),
    )
    .await
}

#[tokio::test]
async fn the_seeds_client_logs_in_as_john_doe_then_lists_and_deletes_a_key() {
    let app = TestApp::spawn().await;
    let created = create_with_username(&app, "john.doe@example.com", "john.doe").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(body(created).await["username"], "john.doe");

    let response = seed_login(&app, "john.doe").await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = body(response).await;
    assert_eq!(answer["Username"], "john.doe");
    assert_eq!(answer["Email"], "john.doe@example.com");
    let token = answer["Token"].as_str().unwrap().to_owned();
    // By email too, and the answer still names the username.
    let by_email = body(seed_login(&app, "john.doe@example.com").await).await;
    assert_eq!(by_email["Username"], "john.doe");
    assert_eq!(
        seed_login(&app, "John.Doe").await.status(),
        StatusCode::OK,
        "usernames differ by more than case"
    );

    // The rest of the seed's flow: add a key, list, delete with what the list shows.
    let added = app
        .post(
            "/authheader/add",
            Some(&token),
            &json!({"name": "production-api-key"}),
        )
        .await;
    let key = body(added).await["token"].as_str().unwrap().to_owned();
    let listed = body(app.get("/authheader/list", Some(&token)).await).await;
    let shown = listed[0]["token"].as_str().unwrap().to_owned();
    let deleted = app
        .post("/authheader/delete", Some(&token), &json!({"text": shown}))
        .await;
    assert_eq!(body(deleted).await["message"], "Success");
    assert_error(app.me(&key).await, StatusCode::FORBIDDEN, "unauthenticated").await;
}

#[tokio::test]
async fn usernames_are_unique_checked_and_removable() {
    let app = TestApp::spawn().await;
    let created = create_with_username(&app, "john.doe@example.com", "john.doe").await;
    let john = body(created).await["id"].as_i64().unwrap();
    let taken = create_with_username(&app, "other@example.com", "JOHN.DOE").await;
    assert_error(taken, StatusCode::CONFLICT, "conflict").await;
    for bad in ["john@doe", ".john", "jo hn", &"j".repeat(65)] {
        let response = create_with_username(&app, "bad@example.com", bad).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let other = app.create_user("jane@example.com", 1, "member").await;
    let clash = app
        .patch(
            &format!("/admin/users/{other}"),
            Some(&app.admin_token),
            &json!({"username": "John.Doe"}),
        )
        .await;
    assert_error(clash, StatusCode::CONFLICT, "conflict").await;
    let renamed = app
        .patch(
            &format!("/admin/users/{other}"),
            Some(&app.admin_token),
            &json!({"username": "jane"}),
        )
        .await;
    assert_eq!(body(renamed).await["username"], "jane");
    assert_eq!(seed_login(&app, "jane").await.status(), StatusCode::OK);

    let removed = app
        .patch(
            &format!("/admin/users/{john}"),
            Some(&app.admin_token),
            &json!({"username": ""}),
        )
        .await;
    assert_eq!(body(removed).await["username"], Value::Null);
    assert_error(
        seed_login(&app, "john.doe").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let by_email = body(seed_login(&app, "john.doe@example.com").await).await;
    assert_eq!(
        by_email["Username"], "john.doe@example.com",
        "no username: the email"
    );
}

#[tokio::test]
async fn a_username_login_fails_like_an_email_login() {
    let app = TestApp::spawn().await;
    create_with_username(&app, "john.doe@example.com", "john.doe").await;
    let wrong = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": "john.doe", "password": "not the password at all"}),
        )
        .await;
    let unknown = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": "nobody.here", "password": PASSWORD}),
        )
        .await;
    let wrong_message = assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let unknown_message =
        assert_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(wrong_message, unknown_message);
    let right = app
        .post(
            "/user/authenticate",
            None,
            &json!({"email": "john.doe", "password": PASSWORD}),
        )
        .await;
    assert_eq!(right.status(), StatusCode::OK);
}
