//! The mail flows end to end through a real SMTP server: a person reads the message, follows
//! its link, and signs in. And a request accepted just before the process is killed is sent,
//! once, after it starts again.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::*;
use crate::helpers::*;

/// The token of the link to `page` in a message as received (quoted-printable undone: soft
/// line breaks joined, `=3D` read back as `=`).
fn token_in(message: &str, page: &str) -> String {
    let text = message.replace("=\r\n", "").replace("=3D", "=");
    let marker = format!("{page}#token=");
    let start = text.find(&marker).expect("a link in the message") + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The messages received whose subject holds `subject`, waiting until there are `count`.
async fn received(server: &SmtpServer, subject: &str, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found: Vec<String> = server
            .messages()
            .into_iter()
            .filter(|m| {
                Parsed::new(m)
                    .header("Subject")
                    .is_some_and(|s| s.contains(subject))
            })
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {count} messages about {subject:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forgot_then_reset_through_smtp_ends_the_old_sessions_and_signs_in_anew() {
    let server = SmtpServer::start().await;
    let app = app_sending_to(&server.url()).await;
    let (_, _, old_session) = app.member_of_new_org("Acme", "dev@acme.example").await;
    let asked = app
        .post(
            "/user/password/forgot",
            None,
            &json!({"email": "dev@acme.example"}),
        )
        .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let message = received(&server, "Reset your Acme password", 1)
        .await
        .remove(0);
    assert_eq!(Parsed::new(&message).header("To"), Some("dev@acme.example"));
    let token = token_in(&message, "/user/password/reset");
    let reset = app
        .post(
            "/user/password/reset",
            None,
            &json!({"token": token, "newPassword": "chosen from the link"}),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&old_session).await.status(), StatusCode::FORBIDDEN);
    app.login_ok("dev@acme.example", "chosen from the link")
        .await;
}

#[tokio::test]
async fn an_invitation_through_smtp_is_accepted_and_the_invitee_signs_in() {
    let server = SmtpServer::start().await;
    let app = app_sending_to(&server.url()).await;
    let org = app.create_org("Acme").await;
    let invited = app
        .post(
            &format!("/admin/orgs/{org}/invitations"),
            Some(&app.admin_token),
            &json!({"email": "ann@elsewhere.example", "role": "admin"}),
        )
        .await;
    assert_eq!(invited.status(), StatusCode::CREATED);
    let message = received(&server, "You are invited to Acme", 1)
        .await
        .remove(0);
    let token = token_in(&message, "/user/invitations/accept");
    let accepted = app
        .post(
            "/user/invitations/accept",
            None,
            &json!({"token": token, "password": "ann's own passphrase", "first": "Ann"}),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let session = app
        .login_to("ann@elsewhere.example", "ann's own passphrase", org)
        .await;
    assert_eq!(session.user.role, "admin");
}

/// `coreauth serve` on `database` (a SQLite file), its mail to `smtp`, logging to a pipe read
/// until it says where it listens.
async fn serve(dir: &Path, smtp: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coreauth"));
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command
        .arg("serve")
        .current_dir(dir)
        .env("COREAUTH_LISTEN", "127.0.0.1:0")
        .env("COREAUTH_SMTP_URL", smtp)
        .env("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "admin@example.com")
        .env(
            "COREAUTH_BOOTSTRAP_ADMIN_PASSWORD",
            "bootstrap admin password",
        )
        .env("COREAUTH_ARGON2_MEMORY_KIB", "256")
        .env("COREAUTH_ARGON2_ITERATIONS", "1")
        .env("COREAUTH_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("coreauth starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let logged: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(address) = logged["address"].as_str()
                && line.contains("coreauth listening")
            {
                return address.to_owned();
            }
        }
        panic!("coreauth stopped before listening");
    })
    .await
    .expect("coreauth listens within 30 s");
    // The rest of the log is drained, so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

#[tokio::test]
async fn a_request_accepted_before_a_kill_is_sent_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No SMTP server yet: whatever the first process manages, nothing goes out.
    let smtp = format!("smtp://127.0.0.1:{port}");
    let (mut first, url) = serve(dir.path(), &smtp).await;
    let client = reqwest::Client::new();
    let asked = client
        .post(format!("{url}/user/password/forgot"))
        .json(&json!({"email": "admin@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    first.start_kill().unwrap();
    let status = first.wait().await.unwrap();
    assert!(!status.success(), "killed, not stopped");

    let server = SmtpServer::start_on(port).await;
    let (_second, _) = serve(dir.path(), &smtp).await;
    let messages = received(&server, "Reset your", 1).await;
    assert_eq!(messages.len(), 1);
    // A while longer: no second copy follows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = server.messages();
    assert_eq!(all.len(), 1, "sent once");
    assert_eq!(Parsed::new(&all[0]).header("To"), Some("admin@example.com"));
}
