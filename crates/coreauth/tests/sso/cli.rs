//! The real `coreauth` binary signs an SSO-only user in from a terminal: `coreauth login --sso`
//! prints a URL and a code, the person signs in in a browser, and the CLI keeps the session.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::harness::*;
use crate::helpers::*;

/// The binary for one user: its own config directory, no COREAUTH_* from the test's
/// environment.
fn coreauth(home: &std::path::Path, server: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coreauth"));
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("COREAUTH_SERVER", server)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn coreauth_login_sso_signs_in_through_the_provider_and_keeps_the_session() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let connection = json!({"name": "staff", "preset": "entra", "issuer": provider.issuer,
        "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "emailDomains": ["contoso.example"], "allowJit": true});
    add_connection(&app, &app.admin_token, org, &connection).await;

    let home = tempfile::tempdir().unwrap();
    let mut login = coreauth(home.path(), &app.address)
        .args(["login", "--sso", "--email", "erin@contoso.example"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stderr.take().unwrap()).lines();
    let (mut open, mut code) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("open: ") {
                open = Some(url.to_owned());
            } else if let Some(shown) = line.strip_prefix("code: ") {
                code = Some(shown.to_owned());
            }
            if open.is_some() && code.is_some() {
                break;
            }
        }
    })
    .await
    .expect("the CLI prints where to sign in");
    let (open, code) = (open.unwrap(), code.unwrap());
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // The person, in a browser.
    let person = browser();
    let page = person
        .get(&open)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&code), "{page}");
    let confirmed = person
        .post(app.url("/user/authenticate/sso/device/verify"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    let to_provider = confirmed.headers()["location"].to_str().unwrap().to_owned();
    let landing = sign_in(&app, &person, &to_provider, "erin@contoso.example", false).await;
    assert_eq!(landing.status, StatusCode::OK);

    let output = tokio::time::timeout(Duration::from_secs(30), login.wait_with_output())
        .await
        .expect("the CLI finishes once the person signed in")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("erin@contoso.example"), "{stdout}");

    let whoami = coreauth(home.path(), &app.address)
        .arg("whoami")
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&whoami.stdout);
    assert!(whoami.status.success(), "{shown}");
    assert!(shown.contains("erin@contoso.example"), "{shown}");
    provider.stop().await;
}
