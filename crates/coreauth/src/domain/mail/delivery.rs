//! The worker that empties the mail queue: every instance runs one, in the background, never on
//! a request's path. It takes what is due under a lease, opens each seal, hands the message to
//! the transport, and records the outcome: sent (the content is erased), failed (tried again
//! later, each wait twice the last), or given up.
//!
//! A message may go out twice, never zero times: a worker that dies between the server's
//! acceptance and `mail_sent` leaves the lease to run out and the message to be taken again.
//! Both copies carry the same `Message-ID`, which mail clients use to show them as one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use super::seal_binding;
use super::{MailContent, MailQueueCounts, MailTransport, Outgoing, QueuedMail, SendError};
use crate::domain::clock::{Clock, to_millis};
use crate::domain::error::DomainResult;
use crate::domain::secrets::SecretBox;
use crate::store::Store;

/// How long a worker holds what it took: past it, another worker (or this one) takes it again.
pub const LEASE: Duration = Duration::from_secs(120);
/// Messages taken at once.
pub const BATCH: i64 = 20;
/// The longest one send may take before it counts as a failed attempt. A message is only
/// started with at least this much of its lease left, so no other worker takes it mid-send.
pub const SEND_LIMIT: Duration = Duration::from_secs(30);
/// Sent and given-up messages are kept this long for the counts, then pruned.
pub const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// When the next attempt comes after a failure, and when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; each later wait is twice the one before…
    pub first: Duration,
    /// …up to this.
    pub longest: Duration,
    /// Given up once the next attempt would come later than this after the message was
    /// queued: an invitation a day late is worth sending, a week late it has expired.
    pub give_up_after: Duration,
}

/// 30 s, 1, 2, 4 … 32 min, then hourly, for a day: about thirty attempts, enough to outlast a
/// mail server's restart or a night-long outage, while a message's link (a reset token lives 30
/// minutes, an invitation 7 days) may still work.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(30),
    longest: Duration::from_secs(3600),
    give_up_after: Duration::from_secs(24 * 3600),
};

impl Backoff {
    /// The time of the next attempt (Unix ms) after the `failures`-th failed one at `now`, or
    /// `None`: give up.
    pub fn retry_at(&self, failures: i64, created_at: i64, now: i64) -> Option<i64> {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 62)).unwrap_or(62);
        let wait = millis(self.first)
            .saturating_mul(2_i64.saturating_pow(doublings))
            .min(millis(self.longest));
        let at = now.saturating_add(wait);
        (at <= created_at.saturating_add(millis(self.give_up_after))).then_some(at)
    }
}

/// What the worker did since the process started, and the queue as last counted: read by
/// `/metrics` at each scrape without touching the database.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    sent: AtomicU64,
    failed: AtomicU64,
    given_up: AtomicU64,
    waiting: AtomicI64,
    retrying: AtomicI64,
}

/// `DeliveryStats` read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryFigures {
    /// Messages the transport accepted.
    pub sent: u64,
    /// Attempts that failed (each retry of a message counts).
    pub failed: u64,
    pub given_up: u64,
    /// Queued messages waiting to be sent, on every instance (the last count).
    pub waiting: i64,
    /// Of those, the ones whose last attempt failed.
    pub retrying: i64,
}

impl DeliveryStats {
    pub fn figures(&self) -> DeliveryFigures {
        DeliveryFigures {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            retrying: self.retrying.load(Ordering::Relaxed),
        }
    }

    fn counted(&self, counts: &MailQueueCounts) {
        self.waiting.store(counts.waiting, Ordering::Relaxed);
        self.retrying.store(counts.retrying, Ordering::Relaxed);
    }
}

/// What one `run_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub taken: usize,
    pub sent: usize,
    /// Failed and to be tried again.
    pub retried: usize,
    pub given_up: usize,
}

/// What became of one message.
enum Outcome {
    Sent,
    Retried,
    GivenUp,
    /// Left for the lease to run out (too little of it left to start a send).
    Left,
}

pub struct Delivery {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    transport: Arc<dyn MailTransport>,
    clock: Arc<dyn Clock>,
    stats: Arc<DeliveryStats>,
    backoff: Backoff,
}

impl Delivery {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<SecretBox>,
        transport: Arc<dyn MailTransport>,
        clock: Arc<dyn Clock>,
        stats: Arc<DeliveryStats>,
    ) -> Self {
        Self {
            store,
            secrets,
            transport,
            clock,
            stats,
            backoff: BACKOFF,
        }
    }

    /// Where mail goes, for the startup log.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Takes what is due at `now` (up to `BATCH`) and sends it, one message after the other.
    pub async fn run_once(&self, now: OffsetDateTime) -> DomainResult<Round> {
        let now = to_millis(now);
        let lease_until = now.saturating_add(millis(LEASE));
        let taken = self.store.claim_mail(now, lease_until, BATCH).await?;
        let mut round = Round {
            taken: taken.len(),
            ..Round::default()
        };
        for mail in taken {
            match self.deliver(&mail, lease_until).await? {
                Outcome::Sent => round.sent += 1,
                Outcome::Retried => round.retried += 1,
                Outcome::GivenUp => round.given_up += 1,
                Outcome::Left => {}
            }
        }
        Ok(round)
    }

    async fn deliver(&self, mail: &QueuedMail, lease_until: i64) -> DomainResult<Outcome> {
        if self.now_ms().saturating_add(millis(SEND_LIMIT)) > lease_until {
            return Ok(Outcome::Left);
        }
        let Some(content) = self.open(mail) else {
            // A seal that does not open never will (a lost or rotated-away secret key, a
            // damaged row): retrying cannot help, and the worker must go on to the next.
            tracing::error!(
                mail = %mail.public_id,
                kind = %mail.kind,
                "a queued message cannot be opened with the configured secret keys: given up"
            );
            let reason = "the sealed message cannot be opened with the configured secret keys";
            self.store
                .mail_failed(mail.id, reason, self.now_ms(), None)
                .await?;
            self.stats.given_up.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::GivenUp);
        };
        // The org's sender name and reply-to were sealed with the message when it was queued.
        let outgoing = Outgoing {
            message_id: mail.public_id.clone(),
            to: mail.recipient.clone(),
            from_name: content.from_name.clone(),
            reply_to: content.reply_to.clone(),
            content,
        };
        let sent = tokio::time::timeout(SEND_LIMIT, self.transport.send(&outgoing))
            .await
            .unwrap_or_else(|_| {
                Err(SendError {
                    permanent: false,
                    reason: format!("no answer within {} s", SEND_LIMIT.as_secs()),
                })
            });
        let now = self.now_ms();
        let Err(failure) = sent else {
            self.store.mail_sent(mail.id, now).await?;
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Sent);
        };
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let failures = mail.attempts.saturating_add(1);
        let retry_at = if failure.permanent {
            None
        } else {
            self.backoff.retry_at(failures, mail.created_at, now)
        };
        self.store
            .mail_failed(mail.id, &failure.reason, now, retry_at)
            .await?;
        match retry_at {
            Some(at) => {
                tracing::warn!(
                    mail = %mail.public_id,
                    kind = %mail.kind,
                    attempt = failures,
                    retry_in_s = (at - now) / 1000,
                    "sending mail failed: {}",
                    failure.reason
                );
                Ok(Outcome::Retried)
            }
            None => {
                tracing::error!(
                    mail = %mail.public_id,
                    kind = %mail.kind,
                    attempt = failures,
                    permanent = failure.permanent,
                    "sending mail failed, given up: {}",
                    failure.reason
                );
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome::GivenUp)
            }
        }
    }

    /// The message's content, if its seal opens and holds one.
    fn open(&self, mail: &QueuedMail) -> Option<MailContent> {
        let opened = self
            .secrets
            .open(&mail.sealed, &seal_binding(&mail.public_id))
            .ok()?;
        serde_json::from_slice(&opened.plaintext).ok()
    }

    /// Counts the queue for `/metrics` (every instance's messages).
    pub async fn refresh_counts(&self) -> DomainResult<MailQueueCounts> {
        let counts = self.store.mail_counts().await?;
        self.stats.counted(&counts);
        Ok(counts)
    }

    /// Deletes what was sent or given up more than `KEPT` before `now`.
    pub async fn prune(&self, now: OffsetDateTime) -> DomainResult<u64> {
        Ok(self
            .store
            .prune_mail(to_millis(now).saturating_sub(millis(KEPT)))
            .await?)
    }

    /// Works the queue until the task is dropped (`rounds`). Should a round ever panic (this
    /// code does not; a library it calls might, on a message it cannot format), the worker
    /// starts again a second later instead of leaving the queue unworked until a restart; the
    /// message it held waits for its lease to run out.
    pub async fn work(self: Arc<Self>) {
        loop {
            // Aborted with this task (shutdown), not left running on its own.
            let mut rounds = AbortOnDrop(tokio::spawn(self.clone().rounds()));
            match (&mut rounds.0).await {
                Err(e) if e.is_panic() => {
                    tracing::error!("the mail worker panicked; it starts again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // Cancelled (the runtime is shutting down).
                _ => return,
            }
        }
    }

    /// Every second, or at once again while batches come back full; the queue is counted every
    /// 10 s (and after a round that took something) and pruned hourly.
    async fn rounds(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for tick in 0_u64.. {
            every.tick().await;
            let mut busy = false;
            loop {
                match self.run_once(self.clock.now()).await {
                    Ok(round) => {
                        busy |= round.taken > 0;
                        if i64::try_from(round.taken).unwrap_or(i64::MAX) < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("working the mail queue: {e}");
                        break;
                    }
                }
            }
            if (busy || tick % 10 == 0)
                && let Err(e) = self.refresh_counts().await
            {
                tracing::warn!("counting the mail queue: {e}");
            }
            if tick % 3600 == 0
                && let Err(e) = self.prune(self.clock.now()).await
            {
                tracing::warn!("pruning the mail queue: {e}");
            }
        }
    }

    fn now_ms(&self) -> i64 {
        to_millis(self.clock.now())
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "delivery_tests.rs"]
mod tests;
