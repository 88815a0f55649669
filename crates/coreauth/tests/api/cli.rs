//! The client commands of the real binary against a running coreauth: `login` with the
//! password on standard input, `whoami`, `token`, `keys`, `logout`; the session file is its
//! owner's only, and no secret reaches the terminal but the ones asked for.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use coreauth::domain::tokens::SessionClaims;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::binary::coreauth;
use crate::helpers::*;

/// The binary as one user runs it: its own config directory, pointed at `server`.
struct Cli {
    home: TempDir,
    server: String,
}

impl Cli {
    fn new(app: &TestApp) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: app.address.clone(),
        }
    }

    fn session_file(&self) -> PathBuf {
        self.home.path().join("coreauth").join("session.json")
    }

    fn stored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.session_file()).unwrap()).unwrap()
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = coreauth(self.home.path());
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env("COREAUTH_SERVER", &self.server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// Runs and expects success; returns standard output.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run(args, stdin).await;
        assert!(
            output.status.success(),
            "coreauth {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !printed(&output).contains(ADMIN_PASSWORD),
            "the password was printed"
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn login_whoami_token_keys_and_logout_through_the_binary() {
    let app = TestApp::spawn().await;
    let cli = Cli::new(&app);

    let said = cli
        .ok(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        )
        .await;
    assert!(said.contains("logged in"), "{said}");
    let file = cli.session_file();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the session file is its owner's only");
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let stored = cli.stored();
    assert_eq!(stored["server"], app.address.as_str());
    let token = stored["token"].as_str().unwrap().to_owned();
    assert!(stored["expiresAt"].as_i64().unwrap() > app.now_millis());
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    let whoami = cli.ok(&["whoami"], None).await;
    assert!(whoami.contains(ADMIN_EMAIL), "{whoami}");
    assert!(whoami.contains("role admin"), "{whoami}");
    assert!(!whoami.contains(&token));

    // Fresh enough: printed as stored, and nothing else.
    let printed_token = cli.ok(&["token"], None).await;
    assert_eq!(printed_token, format!("{token}\n"));

    let key = cli.ok(&["keys", "add", "ci-runner"], None).await;
    let key = key.trim();
    assert!(
        key.starts_with("cak_") && !key.contains(char::is_whitespace),
        "{key}"
    );
    assert_eq!(app.me(key).await.status(), StatusCode::OK);
    let listed = cli.ok(&["keys", "list"], None).await;
    assert!(listed.contains("ci-runner"), "{listed}");
    assert!(!listed.contains(key), "the full key is never listed");
    let keys = body(app.get("/authheader/list", Some(&token)).await).await;
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    cli.ok(&["keys", "delete", &id], None).await;
    assert_eq!(app.me(key).await.status(), StatusCode::FORBIDDEN);

    let said = cli.ok(&["logout"], None).await;
    assert!(said.contains("logged out"), "{said}");
    assert!(!file.exists(), "logout forgets the session");
    assert_eq!(app.me(&token).await.status(), StatusCode::FORBIDDEN);

    let after = cli.run(&["whoami"], None).await;
    assert!(!after.status.success());
    assert!(
        printed(&after).contains("not logged in"),
        "{}",
        printed(&after)
    );
}

#[tokio::test]
async fn a_wrong_password_stores_nothing() {
    let app = TestApp::spawn().await;
    let cli = Cli::new(&app);
    let wrong = format!("{ADMIN_PASSWORD}-wrong");
    let output = cli
        .run(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some(&wrong),
        )
        .await;
    assert!(!output.status.success());
    let said = printed(&output);
    assert!(said.contains("login refused"), "{said}");
    assert!(!said.contains(&wrong));
    assert!(!cli.session_file().exists());
}

#[tokio::test]
async fn token_renews_a_stored_token_with_less_than_a_third_of_its_life_left() {
    let app = TestApp::spawn().await;
    let cli = Cli::new(&app);
    // A token of a real session, issued 11 minutes ago and ending in 4: a third is not left.
    let fresh = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let now = app.now_millis() / 1000;
    let mut claims: SessionClaims = serde_json::from_value(claims_of(&fresh)).unwrap();
    claims.iat = now - 11 * 60;
    claims.exp = now + 4 * 60;
    let old = app.state.signer.sign(&claims).unwrap();
    let session = serde_json::json!({
        "server": app.address, "token": old, "expiresAt": claims.exp * 1000,
    });
    std::fs::create_dir_all(cli.session_file().parent().unwrap()).unwrap();
    std::fs::write(cli.session_file(), session.to_string()).unwrap();

    let printed_token = cli.ok(&["token"], None).await;
    let renewed = printed_token.trim();
    assert_ne!(renewed, old, "renewed before printing");
    assert_eq!(printed_token.lines().count(), 1);
    assert_eq!(claims_of(renewed)["sid"], claims.sid.as_str());
    assert_eq!(app.me(renewed).await.status(), StatusCode::OK);
    let stored = cli.stored();
    assert_eq!(stored["token"], renewed, "the renewed token is kept");
    assert_eq!(
        stored["expiresAt"],
        claims_of(renewed)["exp"].as_i64().unwrap() * 1000
    );
    let mode = std::fs::metadata(cli.session_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
