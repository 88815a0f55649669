//! Instances starting together on one database, and a database a newer coreauth migrated.

use super::*;

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
