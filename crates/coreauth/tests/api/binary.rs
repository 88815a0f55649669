//! The real `coreauth` binary, as a newcomer runs it: no configuration, logs on stderr,
//! SIGTERM to stop; and the `admin bootstrap` and `migrate` commands (on SQLite, or on
//! PostgreSQL when the tests are given a server).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::TestDatabase;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_coreauth");
const CANARY_PASSWORD: &str = "canary-Password-7f3a9c";

/// The binary in `dir`, with no COREAUTH_* variable from the test's environment.
pub(crate) fn coreauth(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command
}

/// `coreauth serve` in `dir`, with no COREAUTH_* variable from the test's environment.
pub(crate) fn serve(dir: &Path) -> Command {
    let mut command = coreauth(dir);
    command.arg("serve");
    command
}

/// A running server: its address and everything it has logged so far.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) log: Arc<Mutex<String>>,
}

pub(crate) async fn start(mut command: Command) -> Server {
    command.stderr(Stdio::piped()).stdout(Stdio::piped());
    let mut child = command.spawn().expect("coreauth starts");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let collected = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("coreauth listening") {
                let line_json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let (Some(tx), Some(address)) =
                    (address_tx.take(), line_json["address"].as_str())
                {
                    let _ = tx.send(address.to_owned());
                }
            }
            let mut log = collected.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let address = tokio::time::timeout(Duration::from_secs(60), address_rx)
        .await
        .expect("the server says where it listens")
        .expect("listening line");
    Server {
        child,
        address: format!("http://{address}"),
        log,
    }
}

impl Server {
    pub(crate) async fn sigterm_and_wait(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("pid").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // let the reader drain
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }
}

#[tokio::test]
async fn serve_needs_no_configuration_keeps_secrets_out_of_the_log_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve(dir.path());
    command
        .env("COREAUTH_LISTEN", "127.0.0.1:0") // the default 8080 may be taken on a shared machine
        .env("COREAUTH_LOG", "debug")
        .env("COREAUTH_LOG_FORMAT", "json")
        .env("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com")
        .env("COREAUTH_BOOTSTRAP_ADMIN_PASSWORD", CANARY_PASSWORD)
        .env("COREAUTH_ARGON2_MEMORY_KIB", "1024");
    let server = start(command).await;
    assert!(
        dir.path().join("coreauth.db").exists(),
        "SQLite file created in the working directory"
    );

    let client = reqwest::Client::new();
    let login = client
        .post(format!("{}/user/authenticate", server.address))
        .json(&json!({"email": "root@example.com", "password": CANARY_PASSWORD, "selectedOrg": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = client
        .post(format!("{}/user/authenticate", server.address))
        .json(&json!({"email": "root@example.com", "password": format!("{CANARY_PASSWORD}-wrong")}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let me = client
        .get(format!("{}/user/me?token={token}", server.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let (status, log) = server.sigterm_and_wait().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        log.contains("\"login\""),
        "the log has the login events:\n{log}"
    );
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
    assert!(!log.contains(CANARY_PASSWORD), "a password reached the log");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "a token reached the log");
    // What an operator copies as a backup once the server is stopped is one whole file.
    assert!(dir.path().join("coreauth.db").exists());
    assert!(
        !dir.path().join("coreauth.db-wal").exists(),
        "the write-ahead log was folded into the database at shutdown"
    );
}

#[tokio::test]
async fn admin_bootstrap_reads_the_password_from_stdin_once() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL when the tests are given a server.
    let fresh = TestDatabase::fresh().await;
    let database = fresh.url.clone();
    let bootstrap = || {
        let mut command = coreauth(dir.path());
        command
            .args([
                "admin",
                "bootstrap",
                "--email",
                "first@example.com",
                "--password-stdin",
            ])
            .args(["--database", &database])
            .env("COREAUTH_ARGON2_MEMORY_KIB", "1024")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    for expect_success in [true, false] {
        let mut child = bootstrap().spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{CANARY_PASSWORD}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(output.status.success(), expect_success, "{output:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!printed.contains(CANARY_PASSWORD));
    }

    let mut command = serve(dir.path());
    command
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_LOG_FORMAT", "json")
        .env("COREAUTH_DATABASE_URL", &database);
    let server = start(command).await;
    let login = reqwest::Client::new()
        .post(format!("{}/user/authenticate", server.address))
        .json(&json!({"email": "first@example.com", "password": CANARY_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let user = &login.json::<serde_json::Value>().await.unwrap()["user"];
    assert_eq!(user["orgId"], 1);
    assert_eq!(user["isAdmin"], true);
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
}

#[tokio::test]
async fn migrate_creates_the_schema_and_serve_can_skip_it() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL when the tests are given a server.
    let fresh = TestDatabase::fresh().await;
    let database = fresh.url.clone();
    let status = coreauth(dir.path())
        .args(["migrate", "--database", &database])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());

    let mut command = serve(dir.path());
    command
        .args(["--database", &database, "--no-migrate"])
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_LOG_FORMAT", "json");
    let server = start(command).await;
    let ready = reqwest::get(format!("{}/readyz", server.address))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
}

/// `coreauth admin signing-keys` works on the database of a running server, which takes the
/// change in within seconds without a restart.
#[tokio::test]
async fn signing_keys_rotated_and_retired_from_the_command_line_reach_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = TestDatabase::fresh().await;
    let database = fresh.url.clone();
    let mut command = serve(dir.path());
    command
        .args(["--database", &database])
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_LOG_FORMAT", "json");
    let server = start(command).await;
    let jwks_url = format!("{}/.well-known/jwks.json", server.address);
    let published = || async {
        let jwks: serde_json::Value = reqwest::get(&jwks_url).await.unwrap().json().await.unwrap();
        let kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids
    };
    let keys = |action: &[&str]| {
        let mut command = coreauth(dir.path());
        command
            .args(["admin", "signing-keys"])
            .args(action)
            .args(["--database", &database]);
        command
    };
    let first = published().await;
    assert_eq!(first.len(), 1);

    let rotated = keys(&["rotate"]).output().await.unwrap();
    assert!(rotated.status.success());
    let said = String::from_utf8(rotated.stdout).unwrap();
    assert!(said.starts_with("added "), "{said}");
    let until = Instant::now() + Duration::from_secs(20);
    while published().await.len() < 2 {
        assert!(
            Instant::now() < until,
            "the server did not publish the new key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = keys(&["list"]).output().await.unwrap();
    let table = String::from_utf8(listed.stdout).unwrap();
    let state_of = |kid: &str| {
        let line = table.lines().find(|l| l.starts_with(kid));
        line.and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    assert_eq!(state_of(&first[0]).as_deref(), Some("active"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" next ")).count(),
        1,
        "{table}"
    );

    let retired = keys(&["retire", &first[0]]).output().await.unwrap();
    assert!(retired.status.success());
    while published().await.contains(&first[0]) {
        assert!(
            Instant::now() < until,
            "the server still publishes the retired key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = published().await;
    let refused = keys(&["retire", &last[0]]).output().await.unwrap();
    assert!(!refused.status.success(), "the last key stays");
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
}

/// A server killed with SIGKILL in the middle of a write-heavy load comes back with every
/// acknowledged key and logout intact and its database consistent.
#[tokio::test]
async fn a_kill_in_the_middle_of_writes_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let configure = |command: &mut Command| {
        command
            .env("COREAUTH_LISTEN", "127.0.0.1:0")
            .env("COREAUTH_LOG_FORMAT", "json")
            .env("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com")
            .env("COREAUTH_BOOTSTRAP_ADMIN_PASSWORD", CANARY_PASSWORD)
            .env("COREAUTH_ARGON2_MEMORY_KIB", "256")
            .env("COREAUTH_ARGON2_ITERATIONS", "1")
            .env("COREAUTH_LOGIN_ATTEMPTS_PER_ACCOUNT", "100000")
            .env("COREAUTH_LOGIN_ATTEMPTS_PER_ADDRESS", "100000")
            .env("COREAUTH_LOGIN_TRAFFIC_PER_ADDRESS", "100000");
    };
    let mut command = serve(dir.path());
    configure(&mut command);
    let mut server = start(command).await;
    let client = reqwest::Client::new();
    let admin = login_root(&client, &server.address).await.unwrap();

    // Writers: API keys created and sessions logged out, each recorded once acknowledged.
    let acknowledged_keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let acknowledged_logouts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for worker in 0..4 {
        let (client, address, admin) = (client.clone(), server.address.clone(), admin.clone());
        let keys = acknowledged_keys.clone();
        let logouts = acknowledged_logouts.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..200 {
                if worker % 2 == 0 {
                    let Ok(answer) = client
                        .post(format!("{address}/authheader/add"))
                        .bearer_auth(&admin)
                        .json(&json!({"name": format!("w{worker}-{i}")}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if answer.status() == StatusCode::OK
                        && let Ok(body) = answer.json::<serde_json::Value>().await
                        && let Some(key) = body["token"].as_str()
                    {
                        keys.lock().unwrap().push(key.to_owned());
                    }
                } else {
                    let Some(token) = login_root(&client, &address).await else {
                        return;
                    };
                    let Ok(answer) = client
                        .post(format!("{address}/user/authenticate/logout"))
                        .bearer_auth(&token)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if answer.status() == StatusCode::NO_CONTENT {
                        logouts.lock().unwrap().push(token);
                    }
                }
            }
        }));
    }
    // Kill once enough writes were acknowledged, while the writers are still going.
    loop {
        let done =
            acknowledged_keys.lock().unwrap().len() + acknowledged_logouts.lock().unwrap().len();
        if done >= 40 {
            break;
        }
        tokio::task::yield_now().await;
    }
    server.child.start_kill().unwrap();
    let status = server.child.wait().await.unwrap();
    assert!(!status.success(), "killed, not stopped");
    for writer in writers {
        let _ = writer.await;
    }
    let keys = acknowledged_keys.lock().unwrap().clone();
    let logouts = acknowledged_logouts.lock().unwrap().clone();
    assert!(keys.len() + logouts.len() >= 40);

    let mut command = serve(dir.path());
    configure(&mut command);
    let server = start(command).await;
    for key in &keys {
        let me = client
            .get(format!("{}/user/me", server.address))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK, "an acknowledged key survived");
    }
    for token in &logouts {
        let me = client
            .get(format!("{}/user/me", server.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            StatusCode::FORBIDDEN,
            "an acknowledged logout stayed"
        );
    }
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("coreauth.db").display()
    ))
    .await
    .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys k LEFT JOIN audit_events e \
         ON e.subject = k.public_id AND e.event = 'apikey.added' WHERE e.id IS NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        orphans, 0,
        "every key has its audit event: nothing half-written"
    );
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
}

async fn login_root(client: &reqwest::Client, address: &str) -> Option<String> {
    let answer = client
        .post(format!("{address}/user/authenticate"))
        .json(&json!({"email": "root@example.com", "password": CANARY_PASSWORD}))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = answer.json().await.ok()?;
    body["token"].as_str().map(str::to_owned)
}

/// Under a small open-file limit (300, soft and hard, as a service manager may set it) a
/// thousand idle sockets can no longer stop the listener: the binary lowers its connection cap
/// below the limit and closes the longest-idle connection to make room, so `/healthz` answers
/// a new caller, and accepting never ends.
#[tokio::test]
async fn idle_sockets_beyond_the_open_file_limit_do_not_stop_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n 300 && exec '{BIN}' serve"))
        .current_dir(dir.path())
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_LOG_FORMAT", "json");
    let server = start(command).await;
    let address = server.address.trim_start_matches("http://").to_owned();

    // Bounded: 1,000 sockets, each opened and left silent.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        {
            Ok(Ok(stream)) => idle.push(stream),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(idle.len() > 300, "only {} sockets opened", idle.len());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..3 {
        let response = client
            .get(format!("{}/healthz", server.address))
            .send()
            .await
            .expect("/healthz answers with a thousand idle sockets open");
        assert_eq!(response.status(), StatusCode::OK);
    }
    drop(idle);
    let (status, log) = server.sigterm_and_wait().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("lowered to what the open-file limit"),
        "the cap follows the limit: {log}"
    );
}
