//! The device sign-in against a stand-in for coreauth's three routes on loopback, whose poll
//! answers are scripted, on a `ManualClock` that reports every wait the device asks for: the
//! test moves the clock to each one, so the pace is checked to the millisecond and nothing
//! sleeps. (The real server's side is tested in coreauth's `tests/sso/`.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::SessionStatus;
use crate::clock::{Clock, ManualClock, Sleep};

const DEVICE_CODE: &str = "dc-7Qm2-secret-device-code";
const MINUTE_MS: i64 = 60_000;

/// One scripted answer of the token route.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        retry_after: None,
    }
}

fn pending() -> Answer {
    answer(400, json!({"error": "authorization_pending"}))
}

fn session(token: &str, expires_at: i64, extra: Value) -> Answer {
    let mut body = json!({
        "token": token,
        "expiresAt": expires_at,
        "user": {
            "id": 7, "uuid": "u-7", "first": "Dev", "last": "Eloper",
            "email": "dev@corp.example", "isActive": true, "isAdmin": false,
            "orgId": 3, "role": "member"
        }
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    answer(200, body)
}

#[derive(Default)]
struct Script {
    start: Value,
    answers: Mutex<VecDeque<Answer>>,
    /// The `client` of the start, and the `deviceCode` of every poll.
    client: Mutex<Option<Value>>,
    polls: Mutex<Vec<Value>>,
    expires_at: i64,
}

fn reply(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
    }
    response
}

async fn start_route(State(script): State<Arc<Script>>, Json(body): Json<Value>) -> Response {
    *script.client.lock().unwrap() = Some(body["client"].clone());
    if body["email"] == "pw@corp.example" {
        let refusal =
            json!({"error": "invalid_request", "message": "this email signs in with a password"});
        return reply(400, refusal, None);
    }
    reply(200, script.start.clone(), None)
}

async fn token(State(script): State<Arc<Script>>, Json(body): Json<Value>) -> Response {
    script
        .polls
        .lock()
        .unwrap()
        .push(body["deviceCode"].clone());
    let next = script.answers.lock().unwrap().pop_front();
    let next = next.unwrap_or_else(pending);
    reply(next.status, next.body, next.retry_after)
}

async fn verify(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).unwrap();
    assert_eq!(bearer, "Bearer challenged-token");
    if body["code"] != "123456" {
        let refusal = json!({"error": "mfa_invalid", "message": "wrong or reused code"});
        return reply(401, refusal, None);
    }
    let full = session("full-token", script.expires_at + MINUTE_MS, json!({}));
    reply(full.status, full.body, None)
}

/// A `ManualClock` that tells the test each instant the device waits for.
struct Reporting {
    clock: ManualClock,
    waits: mpsc::UnboundedSender<i64>,
}

impl Clock for Reporting {
    fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    fn sleep_until(&self, deadline: i64) -> Sleep<'_> {
        let _ = self.waits.send(deadline);
        self.clock.sleep_until(deadline)
    }
}

struct Fake {
    url: String,
    script: Arc<Script>,
    clock: ManualClock,
    reporting: Arc<Reporting>,
    waits: mpsc::UnboundedReceiver<i64>,
    t0: i64,
}

/// The stand-in, whose start answers `interval` and `expires_in` (and `start` changed by
/// `edit`), and whose polls answer `answers` in turn, then `authorization_pending`.
async fn fake_with(
    interval: u64,
    expires_in: u64,
    answers: Vec<Answer>,
    edit: impl FnOnce(&mut Value),
) -> Fake {
    let clock = ManualClock::new(1_700_000_000_000);
    let t0 = clock.now_millis();
    let mut start = json!({
        "deviceCode": DEVICE_CODE,
        "userCode": "WDJB-MJHT",
        "verificationUri": "http://auth.corp.example/device",
        "verificationUriComplete": "http://auth.corp.example/device?code=WDJB-MJHT",
        "expiresIn": expires_in,
        "interval": interval,
    });
    edit(&mut start);
    let script = Arc::new(Script {
        start,
        answers: Mutex::new(answers.into()),
        expires_at: t0 + 15 * MINUTE_MS,
        ..Script::default()
    });
    let router = Router::new()
        .route("/user/authenticate/sso/device", post(start_route))
        .route("/user/authenticate/sso/device/token", post(token))
        .route("/user/mfa/verify", post(verify))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let (sender, waits) = mpsc::unbounded_channel();
    let reporting = Arc::new(Reporting {
        clock: clock.clone(),
        waits: sender,
    });
    Fake {
        url,
        script,
        clock,
        reporting,
        waits,
        t0,
    }
}

async fn fake(interval: u64, expires_in: u64, answers: Vec<Answer>) -> Fake {
    fake_with(interval, expires_in, answers, |_| {}).await
}

impl Fake {
    fn builder(&self) -> ClientBuilder {
        Client::builder(&self.url)
            .clock(self.reporting.clone())
            .background_renewal(false)
    }

    async fn sign_in(&self) -> DeviceSignIn {
        self.builder().sso_device("dev@corp.example").await.unwrap()
    }

    /// Runs `wait` to its end, moving the clock to each instant the device waits for; answers
    /// its result and those instants, in ms after the start.
    async fn drive(&mut self, sign_in: DeviceSignIn) -> (Result<Client>, Vec<i64>) {
        let mut task = tokio::spawn(sign_in.wait());
        let mut waits = Vec::new();
        let run = async {
            loop {
                tokio::select! {
                    done = &mut task => return done.unwrap(),
                    Some(deadline) = self.waits.recv() => {
                        waits.push(deadline - self.t0);
                        let ahead = deadline - self.clock.now_millis();
                        self.clock.advance(Duration::from_millis(ahead.max(0) as u64));
                    }
                }
            }
        };
        let result = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the sign-in did not end");
        (result, waits)
    }

    fn polls(&self) -> Vec<Value> {
        self.script.polls.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn the_device_polls_at_the_servers_interval_until_the_person_signed_in() {
    let expires_at = 1_700_000_000_000 + 15 * MINUTE_MS;
    let answers = vec![
        pending(),
        pending(),
        session("a-token", expires_at, json!({})),
    ];
    let mut fake = fake(5, 600, answers).await;
    let sign_in = fake.sign_in().await;
    assert_eq!(sign_in.user_code(), "WDJB-MJHT");
    assert_eq!(
        sign_in.verification_uri(),
        "http://auth.corp.example/device"
    );
    assert_eq!(
        sign_in.verification_uri_complete(),
        "http://auth.corp.example/device?code=WDJB-MJHT"
    );
    assert_eq!(sign_in.expires_in(), Duration::from_secs(600));
    assert_eq!(sign_in.expires_at(), fake.t0 + 10 * MINUTE_MS);
    assert_eq!(sign_in.interval(), Duration::from_secs(5));

    let (client, waits) = fake.drive(sign_in).await;
    let client = client.unwrap();
    assert_eq!(waits, [5_000, 10_000, 15_000]);
    assert_eq!(fake.polls(), vec![json!(DEVICE_CODE); 3]);
    assert_eq!(
        *fake.script.client.lock().unwrap(),
        Some(json!("coreauth-client"))
    );
    // The session starts as a password login's does: the user, the token, its renewal.
    assert_eq!(client.user().unwrap().email, "dev@corp.example");
    assert_eq!(client.token().await.unwrap().expose_secret(), "a-token");
    assert!(!client.mfa_required() && !client.mfa_enrollment_required());
    assert!(matches!(
        client.status(),
        SessionStatus::Active {
            expires_at: Some(at),
            renew_at: Some(_),
        } if at == expires_at
    ));
}

#[tokio::test]
async fn an_interval_below_a_second_is_taken_as_a_second() {
    let answers = vec![session("t", 1_700_000_000_000 + MINUTE_MS, json!({}))];
    let mut fake = fake(0, 600, answers).await;
    let sign_in = fake.sign_in().await;
    assert_eq!(sign_in.interval(), Duration::from_secs(1));
    let (client, waits) = fake.drive(sign_in).await;
    client.unwrap();
    assert_eq!(waits, [1_000]);
}

#[tokio::test]
async fn throttling_lengthens_the_interval_and_retry_after_is_honoured() {
    let throttled = Answer {
        retry_after: Some(20),
        ..answer(
            429,
            json!({"error": "rate_limited", "message": "slow down"}),
        )
    };
    let slow_down = answer(400, json!({"error": "slow_down"}));
    let answers = vec![
        throttled,
        pending(),
        slow_down,
        session("t", 1_700_000_000_000 + 15 * MINUTE_MS, json!({})),
    ];
    let mut fake = fake(5, 600, answers).await;
    let sign_in = fake.sign_in().await;
    let (client, waits) = fake.drive(sign_in).await;
    client.unwrap();
    // 5 s; the 429 makes it 10 s, but Retry-After asks 20 s first; then 10 s; `slow_down`: 15 s.
    assert_eq!(waits, [5_000, 25_000, 35_000, 50_000]);
}

#[tokio::test]
async fn the_wait_ends_when_the_codes_run_out() {
    let mut fake = fake(5, 12, vec![]).await;
    let sign_in = fake.sign_in().await;
    let (result, waits) = fake.drive(sign_in).await;
    assert!(matches!(result, Err(Error::SignInExpired)), "{result:?}");
    // The last poll is made as the codes run out, and then no other.
    assert_eq!(waits, [5_000, 10_000, 12_000]);
    assert_eq!(fake.polls().len(), 3);
    assert_eq!(
        Error::SignInExpired.to_string(),
        "the sign-in was not finished in time: start it again"
    );
}

#[tokio::test]
async fn an_expired_token_answer_ends_the_wait_as_an_expiry() {
    let expired = answer(
        400,
        json!({"error": "expired_token", "message": "start again"}),
    );
    let mut fake = fake(5, 600, vec![pending(), expired]).await;
    let sign_in = fake.sign_in().await;
    let (result, waits) = fake.drive(sign_in).await;
    assert!(matches!(result, Err(Error::SignInExpired)), "{result:?}");
    assert_eq!(waits, [5_000, 10_000]);
}

#[tokio::test]
async fn a_refused_sign_in_is_the_api_error_with_its_reason() {
    let refused = answer(
        403,
        json!({"error": "sso_account_not_linked", "message": "link your account first"}),
    );
    let mut fake = fake(5, 600, vec![pending(), refused]).await;
    let sign_in = fake.sign_in().await;
    let (result, _) = fake.drive(sign_in).await;
    match result {
        Err(Error::Api {
            status: 403,
            code,
            message,
        }) => {
            assert_eq!(code, "sso_account_not_linked");
            assert_eq!(message, "link your account first");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.polls().len(), 2);
}

#[tokio::test]
async fn server_failures_are_ridden_out_a_few_times_in_a_row() {
    let unavailable = Answer {
        retry_after: Some(8),
        ..answer(503, json!({"error": "overloaded", "message": "try later"}))
    };
    let failed = || answer(500, json!({"error": "internal", "message": "oops"}));
    let answers = vec![
        unavailable,
        failed(),
        pending(),
        failed(),
        failed(),
        failed(),
        session("t", 1_700_000_000_000 + 15 * MINUTE_MS, json!({})),
    ];
    let mut fake = fake(5, 600, answers).await;
    let sign_in = fake.sign_in().await;
    let (client, waits) = fake.drive(sign_in).await;
    client.unwrap();
    assert_eq!(
        waits,
        [5_000, 13_000, 18_000, 23_000, 28_000, 33_000, 38_000]
    );

    // A fourth in a row ends the wait with it.
    let answers = (0..4).map(|_| failed()).collect();
    let mut fake = self::fake(5, 600, answers).await;
    let sign_in = fake.sign_in().await;
    let (result, waits) = fake.drive(sign_in).await;
    assert!(
        matches!(result, Err(Error::Api { status: 500, .. })),
        "{result:?}"
    );
    assert_eq!(waits.len(), 4);
}

#[tokio::test]
async fn a_session_waiting_for_its_second_factor_answers_it_then_renews() {
    let expires_at = 1_700_000_000_000 + 15 * MINUTE_MS;
    let challenged = session("challenged-token", expires_at, json!({"mfaRequired": true}));
    let mut fake = fake(5, 600, vec![challenged]).await;
    let sign_in = fake.sign_in().await;
    let (client, _) = fake.drive(sign_in).await;
    let client = client.unwrap();
    assert!(client.mfa_required());
    // Its token is good only for the answer: no renewal is planned.
    assert!(matches!(
        client.status(),
        SessionStatus::Active { renew_at: None, .. }
    ));

    let wrong = client.verify_mfa(SecretString::from("000000")).await;
    assert_eq!(wrong.unwrap_err().code(), Some("mfa_invalid"));
    assert!(client.mfa_required(), "a wrong code leaves it waiting");

    client
        .verify_mfa(SecretString::from("123456"))
        .await
        .unwrap();
    assert!(!client.mfa_required());
    assert_eq!(client.token().await.unwrap().expose_secret(), "full-token");
    assert!(matches!(
        client.status(),
        SessionStatus::Active {
            expires_at: Some(at),
            renew_at: Some(_),
        } if at == expires_at + MINUTE_MS
    ));
}

#[tokio::test]
async fn a_session_that_must_enrol_says_so() {
    let expires_at = 1_700_000_000_000 + 15 * MINUTE_MS;
    let enrolling = session("t", expires_at, json!({"mfaEnrollmentRequired": true}));
    let mut fake = fake(5, 600, vec![enrolling]).await;
    let sign_in = fake.sign_in().await;
    let (client, _) = fake.drive(sign_in).await;
    let client = client.unwrap();
    assert!(client.mfa_enrollment_required() && !client.mfa_required());
}

#[tokio::test]
async fn an_email_that_signs_in_with_a_password_is_refused_at_the_start() {
    let fake = fake(5, 600, vec![]).await;
    let refused = fake.builder().sso_device("pw@corp.example").await;
    let e = refused.unwrap_err();
    assert!(matches!(e, Error::Api { status: 400, .. }), "{e:?}");
    assert_eq!(e.code(), Some("invalid_request"));
    assert!(fake.polls().is_empty());
}

#[tokio::test]
async fn the_device_code_is_never_shown() {
    let refused = answer(
        403,
        json!({"error": "sso_domain_mismatch", "message": "no"}),
    );
    let mut fake = fake(5, 600, vec![refused]).await;
    let sign_in = fake.sign_in().await;
    let shown = format!("{sign_in:?}");
    assert!(shown.contains("WDJB-MJHT"), "{shown}");
    assert!(!shown.contains(DEVICE_CODE), "{shown}");
    let (result, _) = fake.drive(sign_in).await;
    let e = result.unwrap_err();
    for shown in [format!("{e:?}"), e.to_string()] {
        assert!(!shown.contains(DEVICE_CODE), "{shown}");
    }
}

#[tokio::test]
async fn codes_that_would_act_on_a_terminal_are_refused() {
    let fake = fake_with(5, 600, vec![], |start| {
        start["userCode"] = json!("WDJB\u{1b}[2J");
    })
    .await;
    let e = fake.builder().sso_device("dev@corp.example").await;
    assert!(matches!(e, Err(Error::Protocol(_))), "{e:?}");
}
