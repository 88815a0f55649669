//! Instances killed with SIGKILL under load behind a load balancer: what was acknowledged
//! stays, what was not may or may not have happened, and nothing is half-written.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use super::processes::{RoundRobin, coreauth, serve, sigterm_and_wait};
use super::*;

const ROOT_PASSWORD: &str = "killed-under-load-pw";
const WORKERS: usize = 6;
/// Kills, alternately of each instance.
const KILLS: usize = 6;
/// Writes acknowledged between one restart and the next kill, so that each kill lands in the
/// middle of a load both instances carry.
const WRITES_BETWEEN_KILLS: usize = 60;

/// What one client saw acknowledged, and anything it was answered that no fault explains.
#[derive(Default)]
struct Ledger {
    /// Tokens of sessions no logout was tried on: each must still work.
    live: Vec<String>,
    /// Tokens of sessions whose logout was acknowledged: each must be refused.
    ended: Vec<String>,
    ended_sessions: usize,
    keys: Vec<String>,
    unexpected: Vec<String>,
}

impl Ledger {
    /// The answer's body when it is `wanted`. `None` for a request cut off by a kill (neither
    /// acknowledged nor refused: it may or may not have happened) and for any other status,
    /// which is noted as unexpected.
    async fn call(
        &mut self,
        request: reqwest::RequestBuilder,
        wanted: StatusCode,
    ) -> Option<serde_json::Value> {
        let response = request.send().await.ok()?;
        let status = response.status();
        if status != wanted {
            let text = response.text().await.unwrap_or_default();
            self.unexpected.push(format!("{status}: {text}"));
            return None;
        }
        if status == StatusCode::NO_CONTENT {
            return Some(serde_json::Value::Null);
        }
        // A body cut off by a kill is no acknowledgement either.
        response.json().await.ok()
    }
}

/// One client's loop until `stop`: log in, renew, add a key (the first 40 rounds: the cap is
/// 50 per user), and log out every other session.
async fn sign_in_and_out(
    client: reqwest::Client,
    url: String,
    email: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut round = 0;
    while !stop.load(Relaxed) {
        round += 1;
        let login = client
            .post(format!("{url}/user/authenticate"))
            .json(&json!({"email": email, "password": PASSWORD, "selectedOrg": 0}));
        let Some(login) = ledger.call(login, StatusCode::OK).await else {
            continue;
        };
        acknowledged.fetch_add(1, Relaxed);
        let mut tokens = vec![login["token"].as_str().unwrap().to_owned()];
        let renew = client
            .get(format!("{url}/user/authenticate"))
            .bearer_auth(&tokens[0]);
        if let Some(renewed) = ledger.call(renew, StatusCode::OK).await {
            acknowledged.fetch_add(1, Relaxed);
            tokens.push(renewed["token"].as_str().unwrap().to_owned());
        }
        let token = tokens.last().unwrap().clone();
        if round <= 40 {
            let add = client
                .post(format!("{url}/authheader/add"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("round {round}")}));
            if let Some(key) = ledger.call(add, StatusCode::OK).await {
                acknowledged.fetch_add(1, Relaxed);
                ledger.keys.push(key["token"].as_str().unwrap().to_owned());
            }
        }
        if round % 2 == 0 {
            let logout = client
                .post(format!("{url}/user/authenticate/logout"))
                .bearer_auth(&token);
            if ledger.call(logout, StatusCode::NO_CONTENT).await.is_some() {
                acknowledged.fetch_add(1, Relaxed);
                ledger.ended.extend(tokens);
                ledger.ended_sessions += 1;
            }
            // A logout cut off may have ended the session or not: nothing to check.
        } else {
            ledger.live.extend(tokens);
        }
    }
    ledger
}

/// Two instances of the binary on one database behind a round-robin balancer; one of them is
/// killed with SIGKILL and started again, six times, while clients log in, renew, add keys and
/// log out through the balancer. Then, on each instance, every acknowledged session and key
/// works, every acknowledged logout holds, and every key has its audit event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_killed_under_load_lose_no_acknowledged_write() {
    let database = TestDatabase::postgres().await;
    let key_file = database.secret_key_file().display().to_string();
    let env = [
        ("COREAUTH_DATABASE_URL", database.url.as_str()),
        ("COREAUTH_SECRET_KEY_FILE", key_file.as_str()),
        ("COREAUTH_LISTEN", "127.0.0.1:0"),
        ("COREAUTH_LOG_FORMAT", "json"),
        ("COREAUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
        ("COREAUTH_BOOTSTRAP_ADMIN_PASSWORD", ROOT_PASSWORD),
        ("COREAUTH_ARGON2_MEMORY_KIB", "256"),
        ("COREAUTH_ARGON2_ITERATIONS", "1"),
        ("COREAUTH_LOGIN_TRAFFIC_PER_ADDRESS", "1000000"),
    ];
    let mut instances = vec![
        serve(coreauth(&["serve"], &env)).await,
        serve(coreauth(&["serve"], &env)).await,
    ];
    let urls: Vec<String> = instances.iter().map(|(_, url)| url.clone()).collect();
    let balancer = RoundRobin::start(&urls).await;
    // No idle connections kept: each request is a new connection, so requests alternate
    // between the instances.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let root = client
        .post(format!("{}/user/authenticate", balancer.url))
        .json(&json!({"email": "root@example.com", "password": ROOT_PASSWORD, "selectedOrg": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), StatusCode::OK);
    let root = body(root).await["token"].as_str().unwrap().to_owned();
    let mut emails = Vec::new();
    for n in 0..WORKERS {
        let email = format!("worker{n}@example.com");
        let created = client
            .post(format!("{}/admin/users", balancer.url))
            .bearer_auth(&root)
            .json(
                &json!({"email": email, "password": PASSWORD, "first": "Load", "last": "Worker",
                          "orgId": 1, "role": "member"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        emails.push(email);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = emails
        .into_iter()
        .map(|email| {
            let (client, url) = (client.clone(), balancer.url.clone());
            tokio::spawn(sign_in_and_out(
                client,
                url,
                email,
                stop.clone(),
                acknowledged.clone(),
            ))
        })
        .collect();
    for kill in 0..KILLS {
        let since = acknowledged.load(Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.load(Relaxed) < since + WRITES_BETWEEN_KILLS {
            assert!(
                Instant::now() < deadline,
                "the load stalled after {kill} kills"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let index = kill % 2;
        let (child, _) = &mut instances[index];
        child.start_kill().unwrap();
        assert!(
            !child.wait().await.unwrap().success(),
            "killed, not stopped"
        );
        instances[index] = serve(coreauth(&["serve"], &env)).await;
        balancer.replace(index, &instances[index].1);
    }
    stop.store(true, Relaxed);
    let mut ledger = Ledger::default();
    for worker in workers {
        let seen = worker.await.unwrap();
        ledger.live.extend(seen.live);
        ledger.ended.extend(seen.ended);
        ledger.ended_sessions += seen.ended_sessions;
        ledger.keys.extend(seen.keys);
        ledger.unexpected.extend(seen.unexpected);
    }
    assert!(
        ledger.unexpected.is_empty(),
        "answers no kill explains: {:?}",
        ledger.unexpected
    );
    assert!(ledger.live.len() >= 50 && ledger.ended_sessions >= 25 && ledger.keys.len() >= 50);

    for (_, url) in &instances {
        let me = |token: &String| {
            client
                .get(format!("{url}/user/me"))
                .bearer_auth(token)
                .send()
        };
        for token in ledger.live.iter().chain(&ledger.keys) {
            assert_eq!(me(token).await.unwrap().status(), StatusCode::OK);
        }
        for token in &ledger.ended {
            assert_eq!(
                me(token).await.unwrap().status(),
                StatusCode::FORBIDDEN,
                "an acknowledged logout holds on {url}"
            );
        }
    }
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    let logouts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE event = 'logout'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(logouts >= i64::try_from(ledger.ended_sessions).unwrap());
    let keys_without_event: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys k LEFT JOIN audit_events e \
         ON e.subject = k.public_id AND e.event = 'apikey.added' WHERE e.id IS NULL",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(keys_without_event, 0, "nothing half-written");
    db.close().await.unwrap();
    for (child, _) in instances {
        assert!(sigterm_and_wait(child).await.success());
    }
}
