//! Writes raced across instances: throttling, one-time codes, key caps, password changes, the
//! audit export, and the order a login takes its locks in.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_burst_across_instances_gets_exactly_the_per_account_limit_through() {
    // The counters are rows in the shared database: 50 guesses spread over two instances get
    // the per-account limit (10) through to the password check between them, not 10 each.
    let (a, b) = two_instances().await;
    a.create_user("target@example.com", 1, "member").await;
    let guess = json!({"email": "target@example.com", "password": "guess guess guess"});
    let statuses = burst(&[a.clone(), b.clone()], 50, "/user/authenticate", &guess).await;
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        10,
        "exactly the limit reached the password check: {statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 40);
    // Locked on both instances, even for the right password, until the window ends.
    for instance in [&a, &b] {
        let response = instance.login("target@example.com", PASSWORD, 0).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    for instance in [&a, &b] {
        instance.advance(Duration::from_secs(15 * 60 + 1));
    }
    b.login_ok("target@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn right_and_wrong_logins_raced_across_instances_leave_the_address_its_failures_only() {
    // Each guess counts against the address before its check and a right one is given back in
    // its login's own statement: raced over two instances, six accounts signing in five times
    // each and wrong guesses at other accounts, the count ends at the wrong guesses exactly,
    // with no deadlock between the rows each login takes.
    let (a, b) = two_instances().await;
    for n in 0..6 {
        a.create_user(&format!("often{n}@example.com"), 1, "member")
            .await;
    }
    let instances = [a.clone(), b.clone()];
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..40 {
        let instance = instances[i % 2].clone();
        logins.spawn(async move {
            let (email, password) = if i % 4 == 3 {
                (format!("stranger{i}@example.com"), "a guess")
            } else {
                (format!("often{}@example.com", i % 6), PASSWORD)
            };
            instance.login(&email, password, 0).await.status()
        });
    }
    let statuses = logins.join_all().await;
    assert_eq!(count(&statuses, StatusCode::OK), 30, "{statuses:?}");
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        10,
        "{statuses:?}"
    );
    let mut db = PgConnection::connect(&a.database.url).await.unwrap();
    let failures: i64 =
        sqlx::query_scalar("SELECT attempts FROM throttle WHERE key = 'address:127.0.0.1'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(failures, 10);
}

/// The TOTP code of `secret` at `app`'s clock.
fn totp_code(secret: &str, app: &TestApp) -> String {
    app.totp_code(secret, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_replays_of_one_totp_code_across_instances_succeed_once() {
    let (a, b) = two_instances().await;
    a.create_user("race@example.com", 1, "member").await;
    let token = a.login_ok("race@example.com", PASSWORD).await.token;
    let enrollment = body(
        a.post("/user/mfa/totp/enroll", Some(&token), &json!({}))
            .await,
    )
    .await;
    let secret = enrollment["secret"].as_str().unwrap().to_owned();
    // Confirmed through B: the sealed secret is opened with the key both instances share.
    let confirm = json!({"code": totp_code(&secret, &b)});
    let response = b
        .post("/user/mfa/totp/confirm", Some(&token), &confirm)
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The next time step, so the code is not the one that confirmed the enrolment.
    for instance in [&a, &b] {
        instance.advance(Duration::from_secs(30));
    }
    let login = json!({"email": "race@example.com", "password": PASSWORD,
        "mfaTokenCode": totp_code(&secret, &a)});
    let statuses = burst(&[a.clone(), b.clone()], 16, "/user/authenticate", &login).await;
    assert_eq!(count(&statuses, StatusCode::OK), 1, "{statuses:?}");
    // The rest are refused: a reused code, or throttled (failed codes count as guesses).
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS];
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || refused.contains(s)),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_key_creations_across_instances_stop_at_the_cap() {
    // 45 keys exist; 20 more are asked for at once through two instances: the per-user cap
    // (50) is checked in the same transaction as the insert, so exactly 5 get through.
    let (a, b) = two_instances().await;
    for n in 0..45 {
        a.add_key(&a.admin_token, &format!("key {n}")).await;
    }
    let sent: Vec<_> = (0..20)
        .map(|n| {
            let app = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let request = json!({"name": format!("burst {n}")});
                app.post("/authheader/add", Some(&app.admin_token), &request)
                    .await
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for response in sent {
        statuses.push(response.await.unwrap());
    }
    assert_eq!(count(&statuses, StatusCode::OK), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::CONFLICT), 15, "{statuses:?}");
    let list = body(b.get("/authheader/list", Some(&b.admin_token)).await).await;
    assert_eq!(list.as_array().unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_changes_racing_on_two_instances_let_one_win() {
    // Both changes are decided against the same current hash; the store compares it with the
    // row locked, so the second one to commit is refused instead of overwriting the first.
    let (a, b) = two_instances().await;
    a.create_user("racer@example.com", 1, "member").await;
    let mut changes = Vec::new();
    for (n, app) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let token = app.login_ok("racer@example.com", PASSWORD).await.token;
        let request = json!({"currentPassword": PASSWORD,
            "newPassword": format!("a brand new passphrase {n}")});
        changes.push((app, token, request));
    }
    let sent: Vec<_> = changes
        .into_iter()
        .map(|(app, token, request)| {
            tokio::spawn(async move {
                app.post("/user/password", Some(&token), &request)
                    .await
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for response in sent {
        statuses.push(response.await.unwrap());
    }
    assert_eq!(count(&statuses, StatusCode::NO_CONTENT), 1, "{statuses:?}");
    // The losers were refused (the hash moved on), or their session was revoked by the winner.
    let refused = [
        StatusCode::CONFLICT,
        StatusCode::FORBIDDEN,
        StatusCode::UNAUTHORIZED,
    ];
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::NO_CONTENT || refused.contains(s)),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_export_misses_no_event_written_concurrently_through_two_instances() {
    // The export follows the table by id. With writers committing in parallel on two instances,
    // an id taken early but committed late must still be exported: ids are handed out in commit
    // order, so an export that read id N never sees a lower id appear afterwards.
    use coreauth::audit_export::{AuditExport, ExportTarget};
    let database = Arc::new(TestDatabase::postgres().await);
    let unthrottled = |s: &mut coreauth::config::Settings| {
        s.login_attempts_per_account = 100_000;
        s.login_attempts_per_address = 100_000;
        s.login_traffic_per_address = 100_000;
    };
    let a = Arc::new(TestApp::spawn_on(&database, unthrottled).await);
    let b = Arc::new(TestApp::spawn_on(&database, unthrottled).await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut export = AuditExport::start(ExportTarget::File(path.clone()), &a.state.audit)
        .await
        .unwrap();
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    let start: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit_events")
        .fetch_one(&mut db)
        .await
        .unwrap();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let exporter = {
        let (a, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                export.run_once(&a.state.audit).await.unwrap();
            }
            export.run_once(&a.state.audit).await.unwrap();
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..160 {
        let app = if n % 2 == 0 { a.clone() } else { b.clone() };
        writers.spawn(async move {
            // Refused logins (events with no change) and keys added (events written with
            // their change; 40, under the cap of 50), through either instance.
            if n % 4 != 0 {
                let response = app
                    .login(&format!("nobody{n}@example.com"), "guess", 0)
                    .await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            } else {
                app.add_key(&app.admin_token, &format!("key {n}")).await;
            }
        });
    }
    while let Some(written) = writers.join_next().await {
        written.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    exporter.await.unwrap();

    let stored: Vec<String> =
        sqlx::query_scalar("SELECT id::TEXT AS shown FROM audit_events WHERE id > $1 ORDER BY id")
            .bind(start)
            .fetch_all(&mut db)
            .await
            .unwrap();
    db.close().await.unwrap();
    assert_eq!(stored.len(), 160);
    let exported: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(exported, stored, "every event exported once, in id order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_waiting_for_the_audit_lock_has_already_settled_its_throttle_counters() {
    // A login's session, its audit event and the settling of its throttle counters (the
    // account's cleared, the address's given one back) are one statement. The rows it changes
    // (and the user row its session refers to) must be locked before it waits for the
    // audit-order lock, never while holding it: a transaction holding such a row and waiting
    // for the audit lock (an admin deleting the user) would otherwise deadlock with it. So
    // while another transaction holds the audit lock, the waiting login already holds both of
    // its throttle rows.
    const AUDIT_ORDER_LOCK: i64 = 0x636f_7265_6175_6474; // store/postgres.rs
    let database = Arc::new(TestDatabase::postgres().await);
    let app = Arc::new(TestApp::spawn_on(&database, |_| {}).await);
    app.create_user("waiting@example.com", 1, "member").await;
    let mut holder = PgConnection::connect(&database.url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_ORDER_LOCK)
        .execute(&mut *held)
        .await
        .unwrap();

    let login = {
        let app = app.clone();
        tokio::spawn(async move { app.login("waiting@example.com", PASSWORD, 0).await.status() })
    };
    // Until then the login is on its way (throttle, argon2id) or another writer waits first.
    let mut probe = PgConnection::connect(&database.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !throttle_rows_locked_while_the_audit_lock_is_awaited(&mut probe).await {
        assert!(
            Instant::now() < deadline,
            "no login waiting for the audit lock held its throttle rows"
        );
        tokio::task::yield_now().await;
    }

    held.rollback().await.unwrap();
    assert_eq!(login.await.unwrap(), StatusCode::OK);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM throttle WHERE key LIKE 'account:%'")
        .fetch_one(&mut probe)
        .await
        .unwrap();
    assert_eq!(left, 0, "the login cleared its counter");
    let failures: i64 =
        sqlx::query_scalar("SELECT attempts FROM throttle WHERE key = 'address:127.0.0.1'")
            .fetch_one(&mut probe)
            .await
            .unwrap();
    assert_eq!(failures, 0, "the login gave its address's guess back");
}

/// Whether someone waits for an advisory lock while the throttle rows of
/// `waiting@example.com`'s account and of the address 127.0.0.1 are locked (`FOR UPDATE NOWAIT`
/// refused with `lock_not_available`).
async fn throttle_rows_locked_while_the_audit_lock_is_awaited(db: &mut PgConnection) -> bool {
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    if waiting == 0 {
        return false;
    }
    for key in ["account:waiting@example.com", "address:127.0.0.1"] {
        let mut probing = db.begin().await.unwrap();
        let taken = sqlx::query("SELECT key FROM throttle WHERE key = $1 FOR UPDATE NOWAIT")
            .bind(key)
            .fetch_optional(&mut *probing)
            .await;
        probing.rollback().await.unwrap();
        match taken {
            Ok(_) => return false,
            Err(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|e| e.code())
                    .map(|c| c.into_owned());
                assert_eq!(code.as_deref(), Some("55P03"), "{e}");
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_claimed_by_workers_racing_on_one_database_is_taken_by_one_each() {
    // Eight workers (each with its own pool, as instances have) claim small batches at once
    // until the queue is empty: SKIP LOCKED hands each message to exactly one of them, and none
    // waits for another's batch.
    let database = TestDatabase::postgres().await;
    let settings = Settings {
        database_url: database.url.clone(),
        ..Settings::default()
    };
    let first = coreauth::startup::open_store(&settings, true)
        .await
        .unwrap();
    let now = 1_000_000;
    for n in 0..200 {
        let mail = coreauth::domain::mail::NewMail {
            public_id: format!("mail-{n}"),
            org_id: None,
            kind: "invitation".into(),
            recipient: format!("user{n}@example.com"),
            sealed: "sealed".into(),
            created_at: now,
        };
        first.queue_mail(&mail).await.unwrap();
    }
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = coreauth::startup::open_store(&settings, false)
            .await
            .unwrap();
        workers.spawn(async move {
            let mut taken = Vec::new();
            loop {
                let batch = store.claim_mail(now, now + 120_000, 7).await.unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|mail| mail.public_id));
            }
        });
    }
    let taken: Vec<String> = workers.join_all().await.into_iter().flatten().collect();
    let distinct: std::collections::HashSet<&String> = taken.iter().collect();
    assert_eq!(taken.len(), 200, "some message was taken twice or never");
    assert_eq!(distinct.len(), 200);
    // Leased: nobody takes them again until the lease runs out, then anyone may.
    assert!(
        first
            .claim_mail(now + 1, now + 2, 500)
            .await
            .unwrap()
            .is_empty()
    );
    let again = first
        .claim_mail(now + 120_000, now + 240_000, 500)
        .await
        .unwrap();
    assert_eq!(again.len(), 200);
}
