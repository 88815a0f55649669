//! The real binary on PostgreSQL.

use super::processes::{coreauth, serve, sigterm_and_wait};
use super::*;

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
