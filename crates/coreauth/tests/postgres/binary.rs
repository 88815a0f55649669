//! The real binary on PostgreSQL.

use super::*;

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
