//! PostgreSQL only: several instances on one database, the real binary on PostgreSQL, and what
//! only a shared database can get wrong (instances starting together, migrations from a newer
//! coreauth).
//!
//! Needs `COREAUTH_TEST_POSTGRES_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) and fails without it rather than passing
//! without testing. Plain `cargo test` does not build this target (`test = false` in Cargo.toml);
//! `./scripts/test` starts a throwaway server and runs it with `cargo test --test postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use helpers::*;

/// Three instances on one fresh PostgreSQL database, started one after the other.
async fn three_instances() -> (TestApp, TestApp, TestApp) {
    let database = Arc::new(TestDatabase::postgres().await);
    let a = TestApp::spawn_on(&database, |_| {}).await;
    let b = TestApp::spawn_on(&database, |_| {}).await;
    let c = TestApp::spawn_on(&database, |_| {}).await;
    (a, b, c)
}

#[tokio::test]
async fn a_token_works_on_every_instance_and_revocation_reaches_all_at_once() {
    let (a, b, c) = three_instances().await;
    a.create_user("alice@example.com", 1, "member").await;

    // Logged in through A, used on B and C: the signing key is shared through the database.
    let alice = a.login_ok("alice@example.com", PASSWORD).await.token;
    for instance in [&a, &b, &c] {
        let me = instance.me(&alice).await;
        assert_eq!(me.status(), StatusCode::OK);
        assert_eq!(body(me).await["email"], "alice@example.com");
    }
    // Renewed on C, the new token works on A.
    let renewed: coreauth_proto::AuthenticateResponse = c.renew(&alice).await.json().await.unwrap();
    assert_eq!(a.me(&renewed.token).await.status(), StatusCode::OK);

    // Logged out through B: every token of the session fails on A and C at once.
    assert_eq!(b.logout(&alice).await.status(), StatusCode::NO_CONTENT);
    for instance in [&a, &c] {
        for token in [&alice, &renewed.token] {
            assert_error(
                instance.me(token).await,
                StatusCode::FORBIDDEN,
                "unauthenticated",
            )
            .await;
        }
    }

    // Deactivated through C: the user's token fails on A.
    let again = a.login_ok("alice@example.com", PASSWORD).await.token;
    assert_eq!(a.me(&again).await.status(), StatusCode::OK);
    let alice_id = claims_of(&again)["uid"].as_i64().unwrap();
    let response = c
        .patch(
            &format!("/admin/users/{alice_id}"),
            Some(&c.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for instance in [&a, &b, &c] {
        assert_error(
            instance.me(&again).await,
            StatusCode::FORBIDDEN,
            "unauthenticated",
        )
        .await;
    }
    assert_error(
        a.login("alice@example.com", PASSWORD, 0).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewals_on_three_instances_racing_a_logout_leave_no_token_alive() {
    let (a, b, c) = three_instances().await;
    a.create_user("racer@example.com", 1, "member").await;
    let login = a.login_ok("racer@example.com", PASSWORD).await.token;
    let instances = [Arc::new(a), Arc::new(b), Arc::new(c)];

    let mut renewals = tokio::task::JoinSet::new();
    for n in 0..32 {
        let (app, token) = (instances[n % 3].clone(), login.clone());
        renewals.spawn(async move {
            let response = app.renew(&token).await;
            let status = response.status();
            let renewed = if status == StatusCode::OK {
                let answer: coreauth_proto::AuthenticateResponse = response.json().await.unwrap();
                Some(answer.token)
            } else {
                None
            };
            (status, renewed)
        });
    }
    let logout = {
        let (app, token) = (instances[1].clone(), login.clone());
        tokio::spawn(async move { app.logout(&token).await.status() })
    };
    let mut tokens = vec![login];
    let mut renewed = 0;
    while let Some(done) = renewals.join_next().await {
        let (status, token) = done.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::FORBIDDEN,
            "a renewal racing a logout answers 200 or 403, got {status}"
        );
        renewed += usize::from(token.is_some());
        tokens.extend(token);
    }
    assert_eq!(logout.await.unwrap(), StatusCode::NO_CONTENT);
    eprintln!("{renewed} of 32 renewals got in before the logout");
    for token in &tokens {
        for instance in &instances {
            assert_error(
                instance.me(token).await,
                StatusCode::FORBIDDEN,
                "unauthenticated",
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_an_empty_database_agree() {
    // Migrations, bootstrap and the first signing key all race here; each must happen once.
    // A few rounds, each on a fresh database, because a lost race does not show every time.
    for _ in 0..4 {
        let database = Arc::new(TestDatabase::postgres().await);
        let (a, b, c) = tokio::join!(
            TestApp::spawn_on(&database, |_| {}),
            TestApp::spawn_on(&database, |_| {}),
            TestApp::spawn_on(&database, |_| {}),
        );
        let instances = [&a, &b, &c];
        for issuer in instances {
            for verifier in instances {
                assert_eq!(
                    verifier.me(&issuer.admin_token).await.status(),
                    StatusCode::OK,
                    "a token of one instance works on every other"
                );
            }
        }
        let jwks = body(a.get("/.well-known/jwks.json", None).await).await;
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");

        let mut db = PgConnection::connect(&database.url).await.unwrap();
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM orgs), \
             (SELECT COUNT(*) FROM signing_keys)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(counts, (1, 1, 1), "one admin, one org, one key");
        db.close().await.unwrap();
        assert!(c.create_org("After").await > 1);
    }
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_coreauth_is_refused() {
    let database = Arc::new(TestDatabase::postgres().await);
    let app = TestApp::spawn_on(&database, |_| {}).await;
    drop(app);
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer coreauth', TRUE, '\\x00', 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();

    let settings = coreauth::config::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: database.url.clone(),
        ..coreauth::config::Settings::default()
    };
    let clock = Arc::new(coreauth::domain::clock::SystemClock);
    let refused = coreauth::Application::build(settings, clock).await;
    let error = refused.err().expect("start refused").to_string();
    assert!(error.contains("migrations"), "{error}");
}

// ---- the real binary on PostgreSQL ----

const BIN: &str = env!("CARGO_BIN_EXE_coreauth");

/// `coreauth <args>` with no COREAUTH_* variable from the test's environment but `env`.
fn coreauth(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// Starts `coreauth serve` and waits for its "listening" log line; the address it names.
async fn serve(mut command: Command) -> (Child, String) {
    command.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = command.spawn().expect("coreauth starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let (true, Some(address)) = (
                line.contains("coreauth listening"),
                json["address"].as_str(),
            ) {
                return address.to_owned();
            }
        }
        panic!("coreauth exited without listening");
    })
    .await
    .expect("the server says where it listens");
    // Keep reading so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

async fn sigterm_and_wait(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap()
}

#[tokio::test]
async fn the_binary_migrates_serves_and_logs_in_on_postgres() {
    let database = TestDatabase::postgres().await;
    let url = database.url.as_str();
    let status = coreauth(&["migrate", "--database", url], &[])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "coreauth migrate on PostgreSQL");

    let (child, address) = serve(coreauth(
        &["serve", "--no-migrate"],
        &[
            ("COREAUTH_DATABASE_URL", url),
            ("COREAUTH_LISTEN", "127.0.0.1:0"),
            ("COREAUTH_LOG_FORMAT", "json"),
            ("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
            ("COREAUTH_BOOTSTRAP_ADMIN_PASSWORD", "binary-on-postgres-pw"),
            ("COREAUTH_ARGON2_MEMORY_KIB", "1024"),
        ],
    ))
    .await;
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let login = client
        .post(format!("{address}/user/authenticate"))
        .json(&json!({"email": "root@example.com", "password": "binary-on-postgres-pw", "selectedOrg": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let answer: serde_json::Value = login.json().await.unwrap();
    assert_eq!(answer["user"]["orgId"], 1);
    let token = answer["token"].as_str().unwrap();
    let me = client
        .get(format!("{address}/user/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert!(sigterm_and_wait(child).await.success());
}
