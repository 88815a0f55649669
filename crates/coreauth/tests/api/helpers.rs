//! `TestApp`: the real router on 127.0.0.1:0 with a fresh SQLite file and a clock the test moves,
//! plus one method per user action, so a test reads as a story of HTTP calls.

use std::sync::Arc;
use std::time::Duration;

use coreauth::Application;
use coreauth::config::Settings;
use coreauth::domain::clock::{Clock, ManualClock, to_millis};
use coreauth_proto::AuthenticateResponse;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-password";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    /// A session token of the bootstrap admin (platform admin, admin of org 1).
    pub admin_token: String,
    /// The app's state, for the few tests that drive background work (flushing usage) directly.
    pub state: coreauth::http::AppState,
    /// The database this app runs on (for tests that tamper with it, as `tests/sso.rs` does).
    #[allow(dead_code)]
    pub database_url: String,
    _dir: TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with settings changed by `configure` (after the test defaults).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", dir.path().join("coreauth.db").display()),
            secret_key_file: dir.path().join("coreauth-secret.key"),
            bootstrap_admin_email: Some(ADMIN_EMAIL.into()),
            bootstrap_admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            // Cheap hashes: these tests are about behaviour, not hash strength.
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Settings::default()
        };
        configure(&mut settings);
        let database_url = settings.database_url.clone();
        let clock = ManualClock::starting_now();
        let app = Application::build(settings, Arc::new(clock.clone()))
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let mut test = Self {
            address,
            client: reqwest::Client::new(),
            clock,
            admin_token: String::new(),
            state,
            database_url,
            _dir: dir,
        };
        test.admin_token = test.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
        test
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn now_millis(&self) -> i64 {
        to_millis(self.clock.now())
    }

    pub fn clock_now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// `POST /user/authenticate` with the seeds' body.
    pub async fn login(&self, email: &str, password: &str, selected_org: i64) -> Response {
        let body = json!({
            "email": email,
            "password": password,
            "selectedOrg": selected_org,
            "client": "core-client",
            "mfaTokenCode": null,
        });
        self.post("/user/authenticate", None, &body).await
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> AuthenticateResponse {
        self.login_to(email, password, 0).await
    }

    pub async fn login_to(&self, email: &str, password: &str, org: i64) -> AuthenticateResponse {
        let response = self.login(email, password, org).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        response.json().await.expect("login body")
    }

    pub async fn renew(&self, token: &str) -> Response {
        self.get("/user/authenticate", Some(token)).await
    }

    pub async fn logout(&self, token: &str) -> Response {
        self.post("/user/authenticate/logout", Some(token), &json!({}))
            .await
    }

    pub async fn me(&self, token: &str) -> Response {
        self.get("/user/me", Some(token)).await
    }

    pub async fn create_org(&self, name: &str) -> i64 {
        let response = self
            .post(
                "/admin/orgs",
                Some(&self.admin_token),
                &json!({ "name": name }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        body(response).await["id"].as_i64().expect("org id")
    }

    /// Creates a user with `PASSWORD` in `org_id` as `role`; returns the user id.
    pub async fn create_user(&self, email: &str, org_id: i64, role: &str) -> i64 {
        let response = self
            .post(
                "/admin/users",
                Some(&self.admin_token),
                &json!({
                    "email": email, "password": PASSWORD, "first": "Test", "last": "User",
                    "orgId": org_id, "role": role,
                }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {email}");
        body(response).await["id"].as_i64().expect("user id")
    }

    pub async fn add_member(&self, org_id: i64, user_id: i64, role: &str) {
        let response = self
            .post(
                &format!("/admin/orgs/{org_id}/members"),
                Some(&self.admin_token),
                &json!({ "userId": user_id, "role": role }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

impl TestApp {
    /// `POST /authheader/add`; returns `(id, full key)`.
    pub async fn add_key(&self, token: &str, name: &str) -> (String, String) {
        let response = self
            .post("/authheader/add", Some(token), &json!({ "name": name }))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "add key {name}");
        let created = body(response).await;
        (
            created["id"].as_str().expect("id").to_owned(),
            created["token"].as_str().expect("token").to_owned(),
        )
    }

    /// A logged-in member of a new org: `(org id, user id, token)`.
    pub async fn member_of_new_org(&self, org: &str, email: &str) -> (i64, i64, String) {
        let org_id = self.create_org(org).await;
        let user_id = self.create_user(email, org_id, "member").await;
        let token = self.login_ok(email, PASSWORD).await.token;
        (org_id, user_id, token)
    }
}

pub async fn body(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts the status and the spec's error body, returning the message.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(
        response.status(),
        status,
        "status for expected error {code}"
    );
    let body = body(response).await;
    assert_eq!(body["error"], code, "error body: {body}");
    body["message"].as_str().expect("message").to_owned()
}

/// The payload of a JWT, decoded without verification (to look at the claims).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
