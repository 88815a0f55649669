//! `TestApp`: the real router on 127.0.0.1:0 with a fresh database and a clock the test moves,
//! plus one method per user action, so a test reads as a story of HTTP calls.
//!
//! The database is an SQLite file in a temporary directory, or, when `COREAUTH_TEST_POSTGRES_URL`
//! names a PostgreSQL server (`postgres://postgres@127.0.0.1:5432/postgres`), a database of its
//! own created on that server, so the same tests run against both backends, still in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coreauth::Application;
use coreauth::config::Settings;
use coreauth::domain::clock::{Clock, ManualClock, to_millis};
use coreauth_proto::AuthenticateResponse;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-password";
pub const PASSWORD: &str = "correct horse battery staple";
/// The bearer token `/metrics` answers to in tests (`COREAUTH_METRICS_TOKEN`).
pub const METRICS_TOKEN: &str = "test-metrics-token";

/// The PostgreSQL server the tests use instead of SQLite when set.
pub const POSTGRES_URL_VAR: &str = "COREAUTH_TEST_POSTGRES_URL";

/// An empty database for one test, removed when the test drops it, and a temporary directory
/// for the files that go with it (the SQLite file, the secret key file).
pub struct TestDatabase {
    pub url: String,
    dir: TempDir,
    /// The server and the database's name there, when it is on PostgreSQL.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// PostgreSQL when `COREAUTH_TEST_POSTGRES_URL` is set, SQLite otherwise.
    pub async fn fresh() -> Self {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(server) if !server.is_empty() => Self::postgres_on(&server).await,
            _ => Self::sqlite(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = key_dir();
        Self {
            url: format!("sqlite://{}", dir.path().join("coreauth.db").display()),
            dir,
            postgres: None,
        }
    }

    /// A new database on the server named by `COREAUTH_TEST_POSTGRES_URL`; panics without it,
    /// for tests that mean PostgreSQL and must not quietly test something else.
    #[allow(dead_code)] // used by tests/postgres/, which includes this file
    pub async fn postgres() -> Self {
        let server = std::env::var(POSTGRES_URL_VAR).unwrap_or_default();
        assert!(
            !server.is_empty(),
            "{POSTGRES_URL_VAR} is not set: these tests need a PostgreSQL server \
             (./scripts/test starts one)"
        );
        Self::postgres_on(&server).await
    }

    /// A fresh database on the PostgreSQL server at `server` (a cluster a test started itself).
    pub async fn postgres_on(server: &str) -> Self {
        let name = format!("coreauth_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("connecting to {POSTGRES_URL_VAR}: {e}"));
        // The name is ours (a prefix and hex digits), so formatting it into SQL is safe.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(server).expect("a postgres:// URL");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            dir: key_dir(),
            postgres: Some((server.to_owned(), name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The PostgreSQL server's URL and this database's name on it.
    #[allow(dead_code)] // used by tests/postgres/, which includes this file
    pub fn postgres_server(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// The key file that seals secrets at rest, shared by every instance on this database.
    pub fn secret_key_file(&self) -> std::path::PathBuf {
        self.dir.path().join(SECRET_KEY_FILE)
    }
}

/// A temporary directory holding the database's secret key file, written before any instance
/// starts: instances started together then all read it, instead of racing to create it.
fn key_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = coreauth::domain::secrets::SecretBox::generate_key().expect("a secret key");
    std::fs::write(dir.path().join(SECRET_KEY_FILE), key).expect("writing the secret key");
    dir
}

const SECRET_KEY_FILE: &str = "coreauth-secret.key";

impl Drop for TestDatabase {
    /// Drops a PostgreSQL test database, cutting off the pools of apps still running on it.
    /// Best effort: a leftover database only costs space on a server that tests throw away.
    fn drop(&mut self) {
        let Some((server, name)) = &self.postgres else {
            return;
        };
        let (server, name) = (server.clone(), name.clone());
        // Drop cannot await, and the test's runtime may be the current-thread kind: do it on a
        // thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    /// A session token of the bootstrap admin (platform admin, admin of org 1).
    pub admin_token: String,
    pub database: Arc<TestDatabase>,
    /// The app's state, for the few tests that drive background work (flushing usage) directly.
    pub state: coreauth::http::AppState,
    /// The store under the app, for tests that look at what it wrote.
    #[allow(dead_code)]
    pub store: Arc<dyn coreauth::store::Store>,
    /// The database this app runs on (for tests that tamper with it, as `tests/sso/` does).
    #[allow(dead_code)]
    pub database_url: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns on a fresh database with settings changed by `configure` (after the test
    /// defaults).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let database = Arc::new(TestDatabase::fresh().await);
        Self::spawn_on(&database, configure).await
    }

    /// Spawns another instance on `database`, which other apps may share: each instance
    /// migrates (a no-op after the first), bootstraps (the same) and loads the signing keys.
    pub async fn spawn_on(
        database: &Arc<TestDatabase>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: database.url.clone(),
            // Instances sharing a database share its key, as they must in production.
            secret_key_file: database.secret_key_file(),
            bootstrap_admin_email: Some(ADMIN_EMAIL.into()),
            bootstrap_admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            metrics_token: Some(METRICS_TOKEN.to_owned().into()),
            // The tests' identity providers run on loopback.
            sso_allowed_networks: Some("127.0.0.0/8".into()),
            // Mail without an SMTP server goes beside the database, on PostgreSQL too (not into
            // the working directory).
            outbox_dir: Some(database.secret_key_file().with_file_name("outbox")),
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
        let store = app.store();
        tokio::spawn(app.run_until(std::future::pending()));
        let mut test = Self {
            address,
            client: reqwest::Client::new(),
            clock,
            admin_token: String::new(),
            database: database.clone(),
            store,
            state,
            database_url,
        };
        test.admin_token = test.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
        test
    }

    /// Runs `sql` on the app's database behind its back (for tests that tamper with it).
    #[allow(dead_code)]
    pub async fn execute_sql(&self, sql: &'static str) {
        if self.database.is_postgres() {
            let mut db = PgConnection::connect(&self.database_url)
                .await
                .expect("connecting to the test database");
            sqlx::query(sql).execute(&mut db).await.expect("tampering");
            let _ = db.close().await;
        } else {
            let db = sqlx::SqlitePool::connect(&self.database_url)
                .await
                .expect("opening the test database");
            sqlx::query(sql).execute(&db).await.expect("tampering");
            db.close().await;
        }
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
        self.create_org_with_domains(name, &[]).await
    }

    /// An org holding `domains` (set by the platform admin, so verified).
    pub async fn create_org_with_domains(&self, name: &str, domains: &[&str]) -> i64 {
        let response = self
            .post(
                "/admin/orgs",
                Some(&self.admin_token),
                &json!({ "name": name, "emailDomains": domains }),
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

    /// Turns TOTP on for the caller of `token`: `(base32 secret, recovery codes)`.
    pub async fn enrol_totp(&self, token: &str) -> (String, Vec<String>) {
        let enrollment = body(
            self.post("/user/mfa/totp/enroll", Some(token), &json!({}))
                .await,
        )
        .await;
        let secret = enrollment["secret"].as_str().expect("secret").to_owned();
        let response = self
            .post(
                "/user/mfa/totp/confirm",
                Some(token),
                &json!({"code": self.totp_code(&secret, 0)}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "confirming TOTP");
        let codes = body(response).await["recoveryCodes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|c| c.as_str().expect("a code").to_owned())
            .collect();
        (secret, codes)
    }

    /// The TOTP code of `secret` at this app's clock, shifted by `steps` 30-second steps.
    pub fn totp_code(&self, secret: &str, steps: i64) -> String {
        let secret = totp_rs::Secret::try_from_base32(secret).expect("a base32 secret");
        let totp = totp_rs::Builder::new()
            .with_secret(secret.to_vec())
            .build()
            .expect("a TOTP");
        let t = self.clock_now().unix_timestamp() + steps * 30;
        totp.generate(u64::try_from(t).expect("after 1970"))
            .to_string()
    }

    /// A logged-in member of a new org: `(org id, user id, token)`.
    pub async fn member_of_new_org(&self, org: &str, email: &str) -> (i64, i64, String) {
        let org_id = self.create_org(org).await;
        let user_id = self.create_user(email, org_id, "member").await;
        let token = self.login_ok(email, PASSWORD).await.token;
        (org_id, user_id, token)
    }
}

/// A loopback port free a moment ago, for a listener started by its number (another process,
/// a second listener of the app).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `app` with `token` until it is refused, failing if it is still honoured `limit` after
/// `since` (real time: how long another instance's copy may last is what is tested).
pub async fn refused_within(app: &TestApp, token: &str, since: Instant, limit: Duration) {
    loop {
        let status = app.me(token).await.status();
        if status == StatusCode::FORBIDDEN {
            return;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            since.elapsed() < limit,
            "still honoured {:?} after the logout",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled metric in `app`'s `/metrics`, such as
/// `coreauth_session_cache_hits_total`.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .get("/metrics", Some(METRICS_TOKEN))
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
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

/// The `kid` of a token's header: which key signed it.
pub fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&bytes).expect("JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}
