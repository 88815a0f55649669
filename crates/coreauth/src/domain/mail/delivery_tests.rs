//! The worker over a real (in-memory) SQLite store and a transport that records what it is
//! given and fails as told; the back-off by itself.

use std::sync::Mutex;

use super::*;
use crate::domain::clock::ManualClock;
use crate::domain::mail::queued;
use crate::store::sqlite::{SqliteSettings, SqliteStore};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

#[test]
fn the_wait_doubles_from_30_s_up_to_an_hour() {
    let waits: Vec<i64> = (1..=10)
        .map(|failures| BACKOFF.retry_at(failures, 0, 0).unwrap())
        .collect();
    assert_eq!(
        waits,
        [
            30_000,
            MINUTE,
            2 * MINUTE,
            4 * MINUTE,
            8 * MINUTE,
            16 * MINUTE,
            32 * MINUTE,
            HOUR,
            HOUR,
            HOUR
        ]
    );
    // Absurd counts neither overflow nor wait longer.
    assert_eq!(BACKOFF.retry_at(i64::MAX, 0, 0), Some(HOUR));
    assert_eq!(BACKOFF.retry_at(0, 0, 0), Some(30_000));
}

#[test]
fn a_message_is_given_up_a_day_after_it_was_queued() {
    let created = 1_000_000;
    assert_eq!(
        BACKOFF.retry_at(20, created, created + 23 * HOUR),
        Some(created + 24 * HOUR)
    );
    assert_eq!(BACKOFF.retry_at(20, created, created + 23 * HOUR + 1), None);
    // Failing at every attempt, it gets about thirty.
    let (mut now, mut attempts) = (created, 0);
    while let Some(next) = BACKOFF.retry_at(attempts + 1, created, now) {
        attempts += 1;
        now = next;
    }
    assert!((28..=32).contains(&(attempts + 1)), "{attempts}");
}

/// What the fake transport does with the next message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    Refuse { permanent: bool },
}

struct FakeTransport {
    answer: Mutex<Answer>,
    sent: Mutex<Vec<Outgoing>>,
}

#[async_trait::async_trait]
impl MailTransport for FakeTransport {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        match *self.answer.lock().unwrap() {
            Answer::Accept => {
                self.sent.lock().unwrap().push(message.clone());
                Ok(())
            }
            Answer::Refuse { permanent } => Err(SendError {
                permanent,
                reason: "421 try later".into(),
            }),
        }
    }

    fn describe(&self) -> String {
        "fake".into()
    }
}

struct Fixture {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    transport: Arc<FakeTransport>,
    clock: ManualClock,
    stats: Arc<DeliveryStats>,
    delivery: Delivery,
}

impl Fixture {
    async fn new() -> Self {
        let sqlite = SqliteStore::connect(&SqliteSettings {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        sqlite.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let secrets =
            Arc::new(SecretBox::from_base64(&SecretBox::generate_key().unwrap(), &[]).unwrap());
        let transport = Arc::new(FakeTransport {
            answer: Mutex::new(Answer::Accept),
            sent: Mutex::new(Vec::new()),
        });
        let clock = ManualClock::starting_now();
        let stats = Arc::new(DeliveryStats::default());
        let delivery = Delivery::new(
            store.clone(),
            secrets.clone(),
            transport.clone(),
            Arc::new(clock.clone()),
            stats.clone(),
        );
        Self {
            store,
            secrets,
            transport,
            clock,
            stats,
            delivery,
        }
    }

    async fn queue(&self, to: &str) -> String {
        let content = MailContent {
            subject: "Reset your password".into(),
            text: "Follow https://auth.example/reset#t".into(),
            html: None,
            link: Some("https://auth.example/reset#t".into()),
            from_name: None,
            reply_to: None,
        };
        let mail = queued(
            &self.secrets,
            (Some(1), "password_reset"),
            to,
            &content,
            to_millis(self.clock.now()),
        )
        .unwrap();
        self.store.queue_mail(&mail).await.unwrap();
        mail.public_id
    }

    async fn run(&self) -> Round {
        self.delivery.run_once(self.clock.now()).await.unwrap()
    }

    fn answer(&self, answer: Answer) {
        *self.transport.answer.lock().unwrap() = answer;
    }

    fn sent(&self) -> Vec<Outgoing> {
        self.transport.sent.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_queued_message_is_opened_sent_once_and_erased() {
    let f = Fixture::new().await;
    let id = f.queue("ada@example.com").await;
    let round = f.run().await;
    assert_eq!((round.taken, round.sent), (1, 1));
    let sent = f.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_id, id);
    assert_eq!(sent[0].to, "ada@example.com");
    assert_eq!(sent[0].content.subject, "Reset your password");
    // Nothing is due any more, and nothing of the message is left to read.
    assert_eq!(f.run().await.taken, 0);
    let counts = f.delivery.refresh_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.sent), (0, 1));
    let claimable = f
        .store
        .claim_mail(i64::MAX - 1, i64::MAX, 10)
        .await
        .unwrap();
    assert!(claimable.is_empty());
    assert_eq!(f.stats.figures().sent, 1);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_the_back_off_only() {
    let f = Fixture::new().await;
    f.queue("ada@example.com").await;
    f.answer(Answer::Refuse { permanent: false });
    assert_eq!(f.run().await.retried, 1);
    let counts = f.delivery.refresh_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.retrying), (1, 1));
    assert_eq!(f.stats.figures().retrying, 1);
    f.answer(Answer::Accept);
    f.clock.advance(Duration::from_secs(29));
    assert_eq!(f.run().await.taken, 0, "not before its 30 s");
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.run().await.sent, 1);
    assert_eq!(f.sent().len(), 1);
    let figures = f.stats.figures();
    assert_eq!((figures.sent, figures.failed, figures.given_up), (1, 1, 0));
}

#[tokio::test]
async fn a_permanent_refusal_gives_up_at_once() {
    let f = Fixture::new().await;
    f.queue("nobody@example.com").await;
    f.answer(Answer::Refuse { permanent: true });
    assert_eq!(f.run().await.given_up, 1);
    f.clock.advance(Duration::from_secs(48 * 3600));
    f.answer(Answer::Accept);
    assert_eq!(f.run().await.taken, 0);
    let counts = f.delivery.refresh_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.failed), (0, 1));
    assert_eq!(f.stats.figures().given_up, 1);
}

#[tokio::test]
async fn a_seal_that_does_not_open_is_given_up_and_the_rest_still_go() {
    let f = Fixture::new().await;
    // Sealed with another key: what a lost secret key file leaves behind.
    let other = SecretBox::from_base64(&SecretBox::generate_key().unwrap(), &[]).unwrap();
    let content = MailContent {
        subject: "s".into(),
        text: "t".into(),
        html: None,
        link: None,
        from_name: None,
        reply_to: None,
    };
    let foreign = queued(&other, (None, "invitation"), "a@example.com", &content, 0).unwrap();
    f.store.queue_mail(&foreign).await.unwrap();
    f.queue("b@example.com").await;
    let round = f.run().await;
    assert_eq!((round.taken, round.given_up, round.sent), (2, 1, 1));
    assert_eq!(f.sent()[0].to, "b@example.com");
}

#[tokio::test]
async fn a_lease_keeps_a_message_from_a_second_worker_until_it_runs_out() {
    let f = Fixture::new().await;
    f.queue("ada@example.com").await;
    let now = to_millis(f.clock.now());
    let lease = now + millis(LEASE);
    assert_eq!(f.store.claim_mail(now, lease, 10).await.unwrap().len(), 1);
    // The first worker died: the second finds nothing until the lease ends.
    assert_eq!(f.run().await.taken, 0);
    f.clock.advance(LEASE);
    assert_eq!(f.run().await.sent, 1);
}

#[tokio::test]
async fn sent_and_given_up_messages_are_pruned_after_a_week() {
    let f = Fixture::new().await;
    f.queue("ada@example.com").await;
    f.run().await;
    f.queue("later@example.com").await;
    f.answer(Answer::Refuse { permanent: false });
    f.run().await;
    assert_eq!(f.delivery.prune(f.clock.now()).await.unwrap(), 0);
    f.clock.advance(KEPT + Duration::from_secs(1));
    // The one sent goes; the one still retrying stays.
    assert_eq!(f.delivery.prune(f.clock.now()).await.unwrap(), 1);
    let counts = f.delivery.refresh_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.sent), (1, 0));
}
