//! Faults PostgreSQL reports in the middle of a request: answered `503` with `Retry-After`,
//! never `500`, and nothing half-written.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use super::processes::PrivateCluster;
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

/// Where the database was when a request was sent and when it was answered (in that order:
/// the load reads `PHASES[n]`, the test stores `Phase::… as usize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Up,
    /// Being stopped: anything may happen.
    Stopping,
    /// Stopped; the instances may not have noticed yet.
    Down,
    /// Stopped, and both instances' readiness and session caches say so.
    Noticed,
    /// Being started again: anything may happen.
    Starting,
    /// Started again.
    Back,
}

const PHASES: [Phase; 6] = [
    Phase::Up,
    Phase::Stopping,
    Phase::Down,
    Phase::Noticed,
    Phase::Starting,
    Phase::Back,
];

/// One answer seen by the load: what was asked, in which phases, and how it was answered.
#[derive(Debug)]
struct Seen {
    what: &'static str,
    sent: Phase,
    answered: Phase,
    status: StatusCode,
    retry_after: bool,
    error: Option<String>,
}

type Answers = Arc<std::sync::Mutex<Vec<Seen>>>;

/// Logins, token checks, renewals and new keys in a loop on `app` until `stop`, each answer
/// recorded in `seen` with the phases it was sent and answered in.
async fn mixed_load(
    app: Arc<TestApp>,
    email: String,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    seen: Answers,
) {
    let mut token = None::<String>;
    let mut keys = 0;
    for round in 0_u64.. {
        if stop.load(Relaxed) {
            break;
        }
        let (what, request) = match (round % 4, &token) {
            (0, _) | (_, None) => (
                "login",
                app.client
                    .post(app.url("/user/authenticate"))
                    .json(&json!({"email": email, "password": PASSWORD, "selectedOrg": 0})),
            ),
            (1, Some(t)) => ("me", app.client.get(app.url("/user/me")).bearer_auth(t)),
            (2, Some(t)) => (
                "renew",
                app.client.get(app.url("/user/authenticate")).bearer_auth(t),
            ),
            // The cap is 50 keys per user: past 40 this round checks the token again.
            (_, Some(t)) if keys < 40 => (
                "add key",
                app.client
                    .post(app.url("/authheader/add"))
                    .bearer_auth(t)
                    .json(&json!({"name": format!("round {round}")})),
            ),
            (_, Some(t)) => ("me", app.client.get(app.url("/user/me")).bearer_auth(t)),
        };
        let sent = PHASES[phase.load(Relaxed)];
        let response = request.send().await.expect("coreauth answers");
        let answered = PHASES[phase.load(Relaxed)];
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status == StatusCode::OK && what == "login" {
            token = answer["token"].as_str().map(str::to_owned);
        }
        if status == StatusCode::OK && what == "add key" {
            keys += 1;
        }
        let error = answer["error"].as_str().map(str::to_owned);
        seen.lock().unwrap().push(Seen {
            what,
            sent,
            answered,
            status,
            retry_after,
            error,
        });
    }
}

/// Waits, for at most 60 s, until `enough` holds of what the load has seen.
async fn until_seen(seen: &Answers, what: &str, enough: impl Fn(&[Seen]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(&seen.lock().unwrap()) {
        assert!(Instant::now() < deadline, "the load never saw {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls both instances, for at most 60 s each, until their readiness and their session
/// caches (suspended while the feed of changes is not heard) agree with `database_up`.
async fn until_noticed(apps: [&TestApp; 2], database_up: bool) {
    let (readiness, suspended) = match database_up {
        true => (StatusCode::OK, 0.0),
        false => (StatusCode::SERVICE_UNAVAILABLE, 1.0),
    };
    for app in apps {
        let deadline = Instant::now() + Duration::from_secs(60);
        while app.get("/readyz", None).await.status() != readiness
            || metric(app, "coreauth_session_cache_suspended").await != suspended
        {
            assert!(
                Instant::now() < deadline,
                "never noticed (up: {database_up})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn within(seen: &[Seen], phase: Phase) -> impl Iterator<Item = &Seen> {
    seen.iter()
        .filter(move |s| s.sent == phase && s.answered == phase)
}

/// PostgreSQL stopped at once (as a crash or a failover does) under load on two instances, and
/// started again. While it is down every request that needs it answers `503` with
/// `Retry-After`, never `500`, and readiness answers `503`; once it is back the pools and the
/// feed of the other instance's changes recover without restarting coreauth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_is_503_while_down_and_recovered_after() {
    let cluster = PrivateCluster::start().await;
    let database = Arc::new(TestDatabase::postgres_on(&cluster.url).await);
    // Requests give up on the pool after 0.5 s rather than 5 s: the same answer, sooner.
    let configure = |s: &mut Settings| s.database_acquire_timeout = Duration::from_millis(500);
    let a = Arc::new(TestApp::spawn_on(&database, configure).await);
    let b = Arc::new(TestApp::spawn_on(&database, configure).await);
    let org = a.create_org("Restarted").await;
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Answers::default();
    let mut load = Vec::new();
    for n in 0..4 {
        let email = format!("load{n}@example.com");
        a.create_user(&email, org, "member").await;
        let app = if n % 2 == 0 { a.clone() } else { b.clone() };
        load.push(tokio::spawn(mixed_load(
            app,
            email,
            phase.clone(),
            stop.clone(),
            seen.clone(),
        )));
    }
    let in_phase =
        |phase: Phase, wanted: usize| move |s: &[Seen]| within(s, phase).count() >= wanted;

    until_seen(
        &seen,
        "answers with the database up",
        in_phase(Phase::Up, 40),
    )
    .await;
    phase.store(Phase::Stopping as usize, Relaxed);
    cluster.stop().await;
    phase.store(Phase::Down as usize, Relaxed);
    until_noticed([&a, &b], false).await;
    phase.store(Phase::Noticed as usize, Relaxed);
    until_seen(
        &seen,
        "answers with the database down",
        in_phase(Phase::Noticed, 16),
    )
    .await;
    phase.store(Phase::Starting as usize, Relaxed);
    cluster.resume().await;
    phase.store(Phase::Back as usize, Relaxed);
    until_noticed([&a, &b], true).await;
    let served_again = |s: &[Seen]| {
        ["login", "me", "renew", "add key"].iter().all(|what| {
            within(s, Phase::Back).any(|s| s.what == *what && s.status == StatusCode::OK)
        })
    };
    until_seen(&seen, "every kind of request served again", served_again).await;
    stop.store(true, Relaxed);
    for worker in load {
        worker.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    for s in &seen {
        assert!(
            s.status == StatusCode::OK || s.status == StatusCode::SERVICE_UNAVAILABLE,
            "{s:?}"
        );
        if s.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                s.retry_after && s.error.as_deref() == Some("unavailable"),
                "{s:?}"
            );
        }
    }
    let refused: Vec<_> = within(&seen, Phase::Up)
        .filter(|s| s.status != StatusCode::OK)
        .collect();
    assert!(refused.is_empty(), "with the database up: {refused:?}");
    // Before an instance notices, a token its cache holds may still be honoured; a login or a
    // new key needs the database.
    let served: Vec<_> = within(&seen, Phase::Down)
        .filter(|s| s.what == "login" || s.what == "add key")
        .chain(within(&seen, Phase::Noticed))
        .filter(|s| s.status != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(served.is_empty(), "with the database down: {served:?}");

    // Both instances serve again, and hear each other: B honours a token from its cache, then
    // refuses it within moments of its logout through A.
    for app in [&a, &b] {
        let token = app.login_ok("load0@example.com", PASSWORD).await.token;
        assert_eq!(app.renew(&token).await.status(), StatusCode::OK);
        app.add_key(&token, &format!("after on {}", app.address))
            .await;
    }
    let token = a.login_ok("load1@example.com", PASSWORD).await.token;
    assert_eq!(b.me(&token).await.status(), StatusCode::OK);
    let hits = metric(&b, "coreauth_session_cache_hits_total").await;
    assert_eq!(b.me(&token).await.status(), StatusCode::OK);
    assert!(metric(&b, "coreauth_session_cache_hits_total").await > hits);
    let since = Instant::now();
    assert_eq!(a.logout(&token).await.status(), StatusCode::NO_CONTENT);
    refused_within(&b, &token, since, Duration::from_secs(2)).await;
}
