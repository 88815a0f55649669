//! A coreauth on 127.0.0.1:0 with a fresh SQLite file and two clocks that move together: the
//! server's `ManualClock` and the client's.

use std::sync::Arc;
use std::time::Duration;

use coreauth::Application;
use coreauth::config::Settings;
use coreauth::domain::clock::{Clock as _, ManualClock as ServerClock, to_millis};
use coreauth_client::clock::{Clock as _, ManualClock};
use coreauth_client::{Client, ClientBuilder, Login, SecretString, SessionStatus};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-password";
pub const PASSWORD: &str = "correct horse battery staple";
pub const MINUTE: Duration = Duration::from_secs(60);

pub struct Server {
    pub url: String,
    pub server_clock: ServerClock,
    pub clock: ManualClock,
    pub state: coreauth::http::AppState,
    pub store: std::sync::Arc<dyn coreauth::store::Store>,
    /// An API key of the bootstrap admin: unlike a token, it outlives any clock move.
    pub admin_key: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Server {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", dir.path().join("coreauth.db").display()),
            bootstrap_admin_email: Some(ADMIN_EMAIL.into()),
            bootstrap_admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Settings::default()
        };
        configure(&mut settings);
        let server_clock = ServerClock::starting_now();
        let app = Application::build(settings, Arc::new(server_clock.clone()))
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let store = app.store();
        tokio::spawn(app.run_until(std::future::pending()));
        let clock = ManualClock::new(to_millis(server_clock.now()));
        let mut server = Self {
            url,
            server_clock,
            clock,
            state,
            store,
            admin_key: String::new(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let admin = server.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        server.admin_key = admin.add_api_key("test-admin").await.unwrap().token;
        admin.logout().await.unwrap();
        server
    }

    /// Moves both clocks.
    pub fn advance(&self, by: Duration) {
        self.server_clock.advance(by);
        self.clock.advance(by);
    }

    /// A client builder on the test clock.
    pub fn client(&self) -> ClientBuilder {
        Client::builder(&self.url).clock(Arc::new(self.clock.clone()))
    }

    pub async fn login(&self, email: &str, password: &str) -> Client {
        self.client()
            .login(Login::new(email, SecretString::from(password)))
            .await
            .unwrap()
    }

    pub async fn admin_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let text = response.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A member of org 1; returns the user id. Made in a session of the platform admin's own:
    /// an API key holds no platform power, and org 1 holds no email domain of its own.
    pub async fn create_member(&self, email: &str) -> i64 {
        let login = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
        let session: Value = self
            .http
            .post(format!("{}/user/authenticate", self.url))
            .json(&login)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = session["token"].as_str().unwrap();
        let body = json!({
            "email": email, "password": PASSWORD, "first": "Test", "last": "User",
            "orgId": 1, "role": "member",
        });
        let response = self
            .http
            .post(format!("{}/admin/users", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED, "{email}");
        let user: Value = response.json().await.unwrap();
        user["id"].as_i64().unwrap()
    }

    /// How often the session has been renewed, as the server recorded it (renewals are
    /// written in batches: the pending ones are written first).
    pub async fn renewals(&self, sid: &str) -> i64 {
        self.state.auth.flush_renewals().await.unwrap();
        self.store
            .session_context(sid)
            .await
            .unwrap()
            .unwrap()
            .session
            .renew_count
    }

    /// Waits (in real time, briefly) until the client's renewer has nothing due: the next
    /// renewal is in the future, or none will be made.
    pub async fn settled(&self, client: &Client) {
        let clock = self.clock.clone();
        let idle = async {
            loop {
                match client.status() {
                    SessionStatus::Active {
                        renew_at: Some(at), ..
                    } if at > clock.now_millis() => return,
                    SessionStatus::Active { renew_at: None, .. } => return,
                    SessionStatus::Ended(reason) => panic!("the session ended: {reason}"),
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), idle)
            .await
            .expect("the renewer renewed");
    }
}

/// The payload of a JWT, decoded without verification.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub async fn session_id(client: &Client) -> String {
    use coreauth_client::ExposeSecret;
    let token = client.token().await.unwrap();
    claims_of(token.expose_secret())["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}
