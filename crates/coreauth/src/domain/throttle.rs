//! Throttling of guessing: failed logins, one-time codes, password changes and strategy
//! look-ups, per account and per address. Counters live in the database, so every instance
//! shares them, and an attempt is counted *before* any hashing with one atomic
//! increment-and-read: a burst of 50 parallel guesses gets exactly `limit` through, not 50.
//!
//! A counter counts attempts in a fixed window (15 minutes by default); past the limit, attempts
//! are refused with `429` and `Retry-After` until the window ends, so a lock-out is always
//! bounded and a real user's correct password works again after the delay. A successful login
//! clears its account's counter.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 100,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// What is being counted.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    /// An account, by its case-insensitive email.
    Account(&'a str),
    /// A client address.
    Address(IpAddr),
}

impl Subject<'_> {
    /// The counter's key in the store.
    pub fn key(&self) -> String {
        match self {
            Self::Account(email) => format!("account:{email}"),
            Self::Address(address) => format!("address:{address}"),
        }
    }
}

pub struct Throttle {
    store: Arc<dyn Store>,
    limits: ThrottleLimits,
}

impl Throttle {
    pub fn new(store: Arc<dyn Store>, limits: ThrottleLimits) -> Self {
        Self { store, limits }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.limits.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts one attempt against each subject; refuses it when any is past its limit.
    pub async fn attempt(&self, subjects: &[Subject<'_>], now: OffsetDateTime) -> DomainResult<()> {
        let now_ms = to_millis(now);
        // Distinct: a login passes its account and its address.
        let keys: Vec<String> = subjects.iter().map(Subject::key).collect();
        let counted = self
            .store
            .hit_throttle(&keys, now_ms, self.window_ms())
            .await?;
        let mut retry_after_ms = 0_i64;
        for (subject, (attempts, window_start)) in subjects.iter().zip(counted) {
            let limit = match subject {
                Subject::Account(_) => self.limits.per_account,
                Subject::Address(_) => self.limits.per_address,
            };
            if attempts > i64::from(limit) {
                retry_after_ms = retry_after_ms.max(window_start + self.window_ms() - now_ms);
            }
        }
        if retry_after_ms > 0 {
            let secs = u64::try_from(retry_after_ms.div_euclid(1000) + 1).unwrap_or(1);
            return Err(DomainError::RateLimited {
                retry_after: Duration::from_secs(secs),
            });
        }
        Ok(())
    }

    /// Forgets an account's failures after it proved itself.
    pub async fn clear(&self, subject: &Subject<'_>) -> DomainResult<()> {
        self.store.clear_throttle(&subject.key()).await
    }

    /// Drops counters whose window has ended.
    pub async fn prune(&self, now: OffsetDateTime) -> DomainResult<u64> {
        self.store
            .prune_throttle(to_millis(now) - self.window_ms())
            .await
    }
}
