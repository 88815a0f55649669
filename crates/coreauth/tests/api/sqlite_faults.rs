//! The real binary on SQLite when the machine refuses writes: a full disk, a read-only database.
//! Writes answer `503` with `Retry-After` and a log line naming the cause, reads go on, and the
//! file stays whole.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;
use tokio::process::Command;

use crate::binary::{BIN, Server, serve, start};

const ROOT_PASSWORD: &str = "refused-writes-pw";

/// The settings every server of these tests runs with.
fn configured(mut command: Command) -> Command {
    command
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_LOG_FORMAT", "json")
        .env("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com")
        .env("COREAUTH_BOOTSTRAP_ADMIN_PASSWORD", ROOT_PASSWORD)
        .env("COREAUTH_ARGON2_MEMORY_KIB", "256")
        .env("COREAUTH_ARGON2_ITERATIONS", "1")
        .env("COREAUTH_LOGIN_TRAFFIC_PER_ADDRESS", "100000");
    command
}

async fn login_root(client: &reqwest::Client, server: &Server) -> reqwest::Response {
    client
        .post(format!("{}/user/authenticate", server.address))
        .json(&json!({"email": "root@example.com", "password": ROOT_PASSWORD, "selectedOrg": 0}))
        .send()
        .await
        .unwrap()
}

async fn add_key(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    name: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/authheader/add", server.address))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

async fn me(client: &reqwest::Client, server: &Server, token: &str) -> StatusCode {
    client
        .get(format!("{}/user/me", server.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// `503 unavailable` with `Retry-After`.
async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
}

/// A server started once and stopped: a database with the bootstrap admin and, in one file,
/// everything it wrote; the admin's token and a key of theirs.
async fn prepared(dir: &Path, client: &reqwest::Client) -> (String, String) {
    let server = start(configured(serve(dir))).await;
    let login: serde_json::Value = login_root(client, &server).await.json().await.unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let key: serde_json::Value = add_key(client, &server, &token, "before")
        .await
        .json()
        .await
        .unwrap();
    let key = key["token"].as_str().unwrap().to_owned();
    // A key's first use from an address is audited, so it needs a write: done here.
    assert_eq!(me(client, &server, &key).await, StatusCode::OK);
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
    (token, key)
}

async fn integrity_of(database: &Path) -> (String, i64) {
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    let keys_without_event: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys k LEFT JOIN audit_events e \
         ON e.subject = k.public_id AND e.event = 'apikey.added' WHERE e.id IS NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    db.close().await;
    (check, keys_without_event)
}

/// The disk fills up under a running server. A file-size limit (`ulimit -f`, with `SIGXFSZ`
/// ignored as a service manager's `LimitFSIZE` leaves it) makes the disk full for this process
/// alone: past it the system refuses every write that would grow a file.
#[tokio::test]
async fn a_full_disk_answers_503_keeps_reads_going_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (token, _) = prepared(dir.path(), &client).await;
    let database = dir.path().join("coreauth.db");
    // Room for a few hundred KiB more, in the 512-byte blocks of POSIX `ulimit -f`.
    let room = (std::fs::metadata(&database).unwrap().len() + 256 * 1024) / 512;
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!(
            r#"trap "" XFSZ; ulimit -f {room}; exec "$0" serve"#
        ))
        .arg(BIN)
        .current_dir(dir.path())
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            limited.env_remove(key);
        }
    }
    let server = start(configured(limited)).await;

    let mut acknowledged = Vec::new();
    let refused = loop {
        assert!(acknowledged.len() < 2000, "the disk never filled up");
        let name = format!("key {}", acknowledged.len());
        let response = add_key(&client, &server, &token, &name).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        let key: serde_json::Value = response.json().await.unwrap();
        acknowledged.push(key["token"].as_str().unwrap().to_owned());
        // A session and its audit event with each key: more of what a server writes.
        let login = login_root(&client, &server).await;
        if login.status() != StatusCode::OK {
            break login;
        }
    };
    assert!(acknowledged.len() >= 5, "some writes fitted");
    assert_unavailable(refused).await;
    // It stays so, for a login too, rather than turning into 500s; reads go on.
    for n in 0..5 {
        assert_unavailable(add_key(&client, &server, &token, &format!("after {n}")).await).await;
        assert_unavailable(login_root(&client, &server).await).await;
    }
    assert_eq!(me(&client, &server, &token).await, StatusCode::OK);
    let listed = client
        .get(format!("{}/authheader/list", server.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let (status, log) = server.sigterm_and_wait().await;
    assert!(status.success());
    assert!(
        log.contains("writing the SQLite database failed: its disk may be full")
            || log.contains("the disk holding the SQLite database is full"),
        "the log names the cause:\n{log}"
    );

    // With room again (no limit), everything acknowledged is there and writes go through.
    let server = start(configured(serve(dir.path()))).await;
    for key in &acknowledged {
        assert_eq!(me(&client, &server, key).await, StatusCode::OK);
    }
    assert_eq!(
        add_key(&client, &server, &token, "with room")
            .await
            .status(),
        StatusCode::OK
    );
    let (status, _) = server.sigterm_and_wait().await;
    assert!(status.success());
    assert_eq!(integrity_of(&database).await, ("ok".to_owned(), 0));
}

/// The database file is read-only to the server (restored with the wrong owner, or on a
/// read-only volume): it starts, serves what only reads, and answers every write `503` with a
/// log line that says why.
#[tokio::test]
async fn a_read_only_database_serves_reads_and_answers_writes_503() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (token, key) = prepared(dir.path(), &client).await;
    let database = dir.path().join("coreauth.db");
    let before = std::fs::read(&database).unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o444)).unwrap();
    // The directory stays writable: SQLite makes its lock files (`-shm`, `-wal`) there even to
    // read a database in WAL mode.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret_key = std::fs::read_to_string(dir.path().join("coreauth-secret.key")).unwrap();

    let root = Command::new("id").arg("-u").output().await.unwrap();
    let mut command = if String::from_utf8_lossy(&root.stdout).trim() == "0" {
        // Root writes whatever the mode says: run as `nobody`, from a copy of the binary it can
        // reach (the test's target directory may sit in a directory only root enters).
        let copy = dir.path().join("coreauth");
        if std::fs::hard_link(BIN, &copy).is_err() {
            std::fs::copy(BIN, &copy).unwrap();
        }
        let mut command = Command::new(&copy);
        command.uid(65534).gid(65534);
        command
    } else {
        Command::new(BIN)
    };
    command
        .arg("serve")
        .current_dir(dir.path())
        .kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("COREAUTH_") {
            command.env_remove(name);
        }
    }
    command.env("COREAUTH_SECRET_KEY", secret_key.trim());
    let server = start(configured(command)).await;

    assert_eq!(me(&client, &server, &token).await, StatusCode::OK);
    assert_eq!(me(&client, &server, &key).await, StatusCode::OK);
    let ready = client
        .get(format!("{}/readyz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the database answers");
    assert_unavailable(login_root(&client, &server).await).await;
    assert_unavailable(add_key(&client, &server, &token, "refused").await).await;
    let logout = client
        .post(format!("{}/user/authenticate/logout", server.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_unavailable(logout).await;
    assert_eq!(
        me(&client, &server, &token).await,
        StatusCode::OK,
        "a refused logout changed nothing"
    );
    let (status, log) = server.sigterm_and_wait().await;
    assert!(status.success());
    assert!(
        log.contains("the SQLite database is read-only"),
        "the log names the cause:\n{log}"
    );
    assert_eq!(
        std::fs::read(&database).unwrap(),
        before,
        "the file is as it was"
    );
    assert_eq!(integrity_of(&database).await, ("ok".to_owned(), 0));
}
