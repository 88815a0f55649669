//! Several instances on one database: a token works everywhere, a revocation or a change made
//! through one reaches the others' caches, renewals counted apart add up.

use super::*;

#[tokio::test]
async fn a_token_works_on_every_instance_and_revocation_reaches_all_at_once() {
    let (a, b, c) = three_instances_with(without_cache).await;
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
    let (instances, tokens) = renewals_racing_a_logout(without_cache).await;
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
async fn with_the_cache_renewals_racing_a_logout_leave_no_token_alive_after_a_second() {
    // A renewal through an instance that has not heard of the logout yet may still succeed;
    // the token it gets dies with its session.
    let (instances, tokens) = renewals_racing_a_logout(|_| {}).await;
    let since = Instant::now();
    for token in &tokens {
        for instance in &instances {
            refused_within(instance, token, since, ACROSS_INSTANCES).await;
        }
    }
}

/// 32 renewals of one session through three instances, racing its logout through the second:
/// the instances and every token seen.
async fn renewals_racing_a_logout(
    configure: fn(&mut Settings),
) -> ([Arc<TestApp>; 3], Vec<String>) {
    let (a, b, c) = three_instances_with(configure).await;
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
    (instances, tokens)
}

#[tokio::test]
async fn each_instance_serves_from_its_cache_and_hears_the_changes_made_through_the_others() {
    let (a, b, c) = three_instances().await;
    let alice_id = a.create_user("alice@example.com", 1, "member").await;
    let alice = a.login_ok("alice@example.com", PASSWORD).await.token;
    let (key_id, key) = a.add_key(&alice, "ci").await;
    for instance in [&a, &b, &c] {
        assert_eq!(
            metric(instance, "coreauth_session_cache_suspended").await,
            0.0
        );
        let hits = metric(instance, "coreauth_session_cache_hits_total").await;
        for credential in [&alice, &key, &alice, &key] {
            assert_eq!(instance.me(credential).await.status(), StatusCode::OK);
        }
        // The second use of each credential is answered from memory.
        assert!(metric(instance, "coreauth_session_cache_hits_total").await >= hits + 2.0);
    }

    // A role changed through A shows on B and C.
    let path = format!("/admin/orgs/1/members/{alice_id}");
    let changed = a
        .patch(&path, Some(&a.admin_token), &json!({"role": "admin"}))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let since = Instant::now();
    for instance in [&b, &c] {
        while body(instance.me(&alice).await).await["role"] != "admin" {
            assert!(
                since.elapsed() < ACROSS_INSTANCES,
                "the old role outlived a second"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A key deleted through C is refused by A and B.
    let deleted = c
        .post("/authheader/delete", Some(&alice), &json!({ "id": key_id }))
        .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let since = Instant::now();
    for instance in [&a, &b] {
        refused_within(instance, &key, since, ACROSS_INSTANCES).await;
    }

    // A logout through B is refused by A and C.
    assert_eq!(b.logout(&alice).await.status(), StatusCode::NO_CONTENT);
    let since = Instant::now();
    for instance in [&a, &c] {
        refused_within(instance, &alice, since, ACROSS_INSTANCES).await;
    }

    // A deactivation through C is refused by A and B.
    let again = a.login_ok("alice@example.com", PASSWORD).await.token;
    for instance in [&a, &b] {
        assert_eq!(instance.me(&again).await.status(), StatusCode::OK);
    }
    let response = c
        .patch(
            &format!("/admin/users/{alice_id}"),
            Some(&c.admin_token),
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let since = Instant::now();
    for instance in [&a, &b] {
        refused_within(instance, &again, since, ACROSS_INSTANCES).await;
    }
}

/// The login status on `instance` once it is `wanted`, polled for at most `ACROSS_INSTANCES`
/// after `since`.
async fn login_becomes(instance: &TestApp, email: &str, wanted: StatusCode, since: Instant) {
    loop {
        let status = instance.login(email, PASSWORD, 0).await.status();
        if status == wanted {
            return;
        }
        assert!(
            since.elapsed() < ACROSS_INSTANCES,
            "a login on another instance still answered {status}, not {wanted}, a second after the change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logins read their org's SSO configuration and password policy from each instance's cache:
/// a change through another instance, or by hand in the database, reaches them within a second.
#[tokio::test]
async fn org_settings_cached_for_logins_follow_changes_made_elsewhere() {
    let (a, b, _c) = three_instances().await;
    let email = "dev@example.com";
    a.create_user(email, 1, "member").await;
    // B reads (and keeps) org 1's settings: no SSO configuration, the default policy.
    let first = body(b.login(email, PASSWORD, 0).await).await;
    assert!(first.get("mfaEnrollmentRequired").is_none());

    let sso = json!({"issuer": "https://idp.example", "clientId": "coreauth",
                     "clientSecret": "client-secret-value", "emailDomains": ["example.com"],
                     "allowJit": false, "allowPassword": false});
    let put = a
        .send(
            reqwest::Method::PUT,
            "/admin/orgs/1/sso",
            Some(&a.admin_token),
            Some(&sso),
        )
        .await;
    assert_eq!(put.status(), StatusCode::OK);
    login_becomes(&b, email, StatusCode::FORBIDDEN, Instant::now()).await;

    // By hand, as an operator would: the triggers announce it too.
    let mut db = PgConnection::connect(&a.database_url).await.unwrap();
    sqlx::query("UPDATE sso_connections SET allow_password = true WHERE org_id = 1")
        .execute(&mut db)
        .await
        .unwrap();
    login_becomes(&b, email, StatusCode::OK, Instant::now()).await;

    let policy = json!({"minLength": 12, "maxAgeDays": 0, "historyCount": 0,
                        "rejectCommon": false, "requireMfa": true});
    let set = a
        .send(
            reqwest::Method::PUT,
            "/admin/orgs/1/password-policy",
            Some(&a.admin_token),
            Some(&policy),
        )
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    let since = Instant::now();
    while body(b.login(email, PASSWORD, 0).await).await["mfaEnrollmentRequired"] != true {
        assert!(
            since.elapsed() < ACROSS_INSTANCES,
            "the old policy outlived a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = db.close().await;
}

#[tokio::test]
async fn a_logout_while_the_change_feed_reconnects_is_still_refused_everywhere() {
    let (a, b, alice) = alice_cached_on_b().await;

    // Every instance's listening connection is cut, as a restart of the server or a proxy's
    // timeout would, and the session is ended through A at once.
    let mut db = PgConnection::connect(&a.database_url).await.unwrap();
    for pid in listening_pids(&mut db).await {
        let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert!(cut);
    }
    assert_eq!(a.logout(&alice).await.status(), StatusCode::NO_CONTENT);
    refused_within(&b, &alice, Instant::now(), ACROSS_INSTANCES).await;

    // B listens again and serves from its cache again.
    let again = a.login_ok("alice@example.com", PASSWORD).await.token;
    let since = Instant::now();
    loop {
        let hits = metric(&b, "coreauth_session_cache_hits_total").await;
        assert_eq!(b.me(&again).await.status(), StatusCode::OK);
        assert_eq!(b.me(&again).await.status(), StatusCode::OK);
        if metric(&b, "coreauth_session_cache_hits_total").await > hits {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "B's cache stayed off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&b, "coreauth_session_cache_suspended").await, 0.0);
    let _ = db.close().await;
}

#[tokio::test]
async fn a_listening_connection_gone_quiet_is_replaced_and_nothing_stale_outlives_it() {
    let (a, b, alice) = alice_cached_on_b().await;

    // The server processes behind the listening connections are stopped (SIGSTOP): the
    // connections stay open and say nothing, as behind a network that drops packets. Only the
    // instances' own unanswered pings can tell.
    let mut db = PgConnection::connect(&a.database_url).await.unwrap();
    let _stopped = Stopped::all(&listening_pids(&mut db).await);
    assert_eq!(a.logout(&alice).await.status(), StatusCode::NO_CONTENT);
    // B never hears of the logout; it replaces the quiet connection after a second of unheard
    // pings and starts over from an empty cache.
    refused_within(&b, &alice, Instant::now(), Duration::from_secs(3)).await;
    let _ = db.close().await;
}

/// Two instances on a fresh database, and a token of Alice's that B has cached.
async fn alice_cached_on_b() -> (TestApp, TestApp, String) {
    let database = Arc::new(TestDatabase::postgres().await);
    let a = TestApp::spawn_on(&database, |_| {}).await;
    let b = TestApp::spawn_on(&database, |_| {}).await;
    a.create_user("alice@example.com", 1, "member").await;
    let alice = a.login_ok("alice@example.com", PASSWORD).await.token;
    for _ in 0..2 {
        assert_eq!(b.me(&alice).await.status(), StatusCode::OK);
    }
    assert!(metric(&b, "coreauth_session_cache_hits_total").await >= 1.0);
    (a, b, alice)
}

/// The server processes behind the instances' listening connections, one per instance.
async fn listening_pids(db: &mut PgConnection) -> Vec<i32> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'coreauth changes' \
         AND query LIKE 'LISTEN%' AND datname = current_database()",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(pids.len(), 2, "one listening connection per instance");
    pids
}

/// Server processes stopped with SIGSTOP, continued (SIGCONT) when dropped, also when the test
/// fails, so that the database can be dropped.
struct Stopped(Vec<i32>);

impl Stopped {
    fn all(pids: &[i32]) -> Self {
        for &pid in pids {
            // SAFETY: kill(2) with a pid and a signal number has no memory effects.
            let done = unsafe { libc::kill(pid, libc::SIGSTOP) };
            assert_eq!(done, 0, "stopping {pid} (the tests run as root)");
        }
        Self(pids.to_vec())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewals_counted_on_three_instances_add_up_when_written() {
    let (a, b, c) = three_instances().await;
    a.create_user("counted@example.com", 1, "member").await;
    let login = a.login_ok("counted@example.com", PASSWORD).await.token;
    let instances = [Arc::new(a), Arc::new(b), Arc::new(c)];
    // 30 renewals of one session, ten through each instance, in parallel.
    let mut renewals = tokio::task::JoinSet::new();
    for n in 0..30 {
        let (app, token) = (instances[n % 3].clone(), login.clone());
        renewals.spawn(async move { app.renew(&token).await.status() });
    }
    while let Some(status) = renewals.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    // Each instance writes its own batch, all at once: the counts add up, none is lost.
    let flushes: Vec<_> = instances
        .iter()
        .map(|app| {
            let app = app.clone();
            tokio::spawn(async move { app.state.auth.flush_renewals().await })
        })
        .collect();
    for flush in flushes {
        flush.await.unwrap().unwrap();
    }
    let sid = claims_of(&login)["sid"].as_str().unwrap().to_owned();
    let mut db = PgConnection::connect(&instances[0].database_url)
        .await
        .unwrap();
    let (count, last): (i64, Option<i64>) =
        sqlx::query_as("SELECT renew_count, last_renewed_at FROM sessions WHERE id = $1")
            .bind(&sid)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(count, 30);
    assert!(last.is_some());
    // Logged out through B, which has nothing pending: the audit event counts all 30.
    assert_eq!(
        instances[1].logout(&login).await.status(),
        StatusCode::NO_CONTENT
    );
    let page = body(
        instances[2]
            .get("/admin/audit?event=logout", Some(&instances[2].admin_token))
            .await,
    )
    .await;
    assert_eq!(page["events"][0]["details"]["renewCount"], 30);
}
