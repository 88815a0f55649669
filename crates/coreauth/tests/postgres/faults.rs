//! Faults PostgreSQL reports in the middle of a request: answered `503` with `Retry-After`,
//! never `500`, and nothing half-written.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_chosen_as_a_deadlock_victim_is_answered_503() {
    // A deadlock made on purpose: another transaction holds the address's throttle row while
    // the login counts its attempt (it locks the account's row, then waits for the address's),
    // then asks for the account's row. PostgreSQL breaks the cycle by rolling back the one that
    // has waited past its `deadlock_timeout`: the login, whose timeout here is 2 s against the
    // other's 60 s.
    let database = Arc::new(TestDatabase::postgres().await);
    let (server, name) = database.postgres_server().unwrap();
    let mut admin = PgConnection::connect(server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET deadlock_timeout = '2s'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let app = Arc::new(TestApp::spawn_on(&database, |_| {}).await);
    let mut other = PgConnection::connect(&database.url).await.unwrap();
    // The account's row exists, so the login locks it (an insert of its own would be invisible
    // to the other transaction, which would not wait for it).
    sqlx::query(
        "INSERT INTO throttle (key, attempts, window_start) \
         VALUES ('account:victim@example.com', 0, 0)",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let mut holding = other.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '60s'")
        .execute(&mut *holding)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO throttle (key, attempts, window_start) VALUES ('address:127.0.0.1', 0, 0) \
         ON CONFLICT (key) DO UPDATE SET attempts = throttle.attempts",
    )
    .execute(&mut *holding)
    .await
    .unwrap();

    let login = {
        let app = app.clone();
        tokio::spawn(async move { app.login("victim@example.com", "a guess", 0).await })
    };
    let mut probe = PgConnection::connect(&database.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.query LIKE '%INSERT INTO throttle%'",
        )
        .fetch_one(&mut probe)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the login never waited for the row"
        );
        tokio::task::yield_now().await;
    }
    // Closes the cycle; returns once PostgreSQL has rolled the login back.
    sqlx::query("UPDATE throttle SET attempts = attempts WHERE key = 'account:victim@example.com'")
        .execute(&mut *holding)
        .await
        .unwrap();
    holding.rollback().await.unwrap();

    let response = login.await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(body(response).await["error"], "unavailable");
    let counted: i64 = sqlx::query_scalar(
        "SELECT attempts FROM throttle WHERE key = 'account:victim@example.com'",
    )
    .fetch_one(&mut probe)
    .await
    .unwrap();
    assert_eq!(counted, 0, "the rolled-back attempt left nothing");
    // The next attempt goes through as usual.
    let again = app.login("victim@example.com", "a guess", 0).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}
