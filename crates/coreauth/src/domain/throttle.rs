//! Throttling of guessing: failed logins, one-time codes, password changes and device codes,
//! per account and per address, and a much higher cap on all the sign-in traffic of one
//! address. Counters live in the database, so every instance shares them, and an attempt is
//! counted *before* any hashing with one atomic increment-and-read: a burst of 50 parallel
//! guesses gets exactly `limit` through, not 50.
//!
//! A counter counts attempts in a fixed window (15 minutes by default); past the limit, attempts
//! are refused with `429` and `Retry-After` until the window ends, so a lock-out is always
//! bounded and a real user's correct password works again after the delay.
//!
//! What each counter defends (README, "Throttling"):
//! - an account's failures (10): guessing one password. A success clears it.
//! - an address's failures (100): one client spraying a common password over many accounts.
//!   A guess counts before it is checked and is given back once it proves right, so an office
//!   behind one NAT, whose people mostly type their passwords right, never spends it.
//! - an address's traffic (3000): every sign-in attempt, right or wrong, and every SSO start:
//!   the work (an argon2 hash each) one address can make coreauth do. Never given back.
//! - an address's look-ups (3000): strategy look-ups and device-code checks, which a page may
//!   make as people type, on a budget of their own so they cannot spend sign-ins.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::origin::RequestOrigin;
use crate::store::{Store, ThrottleSettlement};

#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Failed guesses per account.
    pub per_account: u32,
    /// Failed guesses per address.
    pub per_address: u32,
    /// Every attempt per address, right or wrong; also the look-ups' budget.
    pub traffic_per_address: u32,
    /// Messages asked for one recipient (forgotten passwords, resent invitations).
    pub mails_per_recipient: u32,
    pub window: Duration,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 100,
            traffic_per_address: 3000,
            mails_per_recipient: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// What is being counted.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    /// An account, by its case-insensitive email.
    Account(&'a str),
    /// A client address, for its failed guesses (logins, codes, password changes, device
    /// codes): counted before the check, given back when it proves right (`Guess`).
    Address(IpAddr),
    /// A client address, for all of its sign-in attempts and SSO starts, right or wrong.
    Traffic(IpAddr),
    /// A client address, for strategy look-ups: a budget of their own, so a page that looks up
    /// strategies as people type cannot spend its users' sign-ins.
    Lookup(IpAddr),
    /// An email address that messages are asked for (whether or not it has an account, so
    /// the limit says nothing about that): a mailbox is not flooded through coreauth.
    Recipient(&'a str),
}

impl Subject<'_> {
    /// The counter's key in the store.
    pub fn key(&self) -> String {
        match self {
            Self::Account(email) => format!("account:{email}"),
            Self::Address(address) => format!("address:{}", network_of(*address)),
            Self::Traffic(address) => format!("traffic:{}", network_of(*address)),
            Self::Lookup(address) => format!("lookup:{}", network_of(*address)),
            Self::Recipient(email) => format!("mail:{email}"),
        }
    }
}

/// What one client is counted as: an IPv4 address, or the /64 of an IPv6 one (a host is
/// handed a whole /64 and can pick any address in it; counting per address would give it 2^64
/// budgets). An IPv4-mapped IPv6 address counts as the IPv4 address.
fn network_of(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                let prefix = std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

/// A guess counted before it was checked, to settle once it proves right.
#[derive(Debug, Clone)]
#[must_use = "a right guess is settled, a wrong one dropped"]
pub struct Guess {
    account: Option<String>,
    address: Option<String>,
}

impl Guess {
    /// It proved right: the account's failures are forgotten and the address gets it back.
    pub fn proved(self) -> ThrottleSettlement {
        ThrottleSettlement {
            clear: self.account,
            refund: self.address,
        }
    }

    /// The password proved right but the sign-in went no further (a second factor to answer,
    /// an expired password, SSO required): no failed guess, so the address gets it back, but
    /// the account's count stands until it signs in.
    pub fn password_proved(self) -> ThrottleSettlement {
        ThrottleSettlement {
            clear: None,
            refund: self.address,
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
                Subject::Traffic(_) | Subject::Lookup(_) => self.limits.traffic_per_address,
                Subject::Recipient(_) => self.limits.mails_per_recipient,
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

    /// Counts a guess from `origin`, at `account` when there is one: against the account, the
    /// address's failures and the address's traffic, in that order (the order every
    /// transaction takes these rows in). Refused when any is past its limit.
    pub async fn guess(
        &self,
        account: Option<Subject<'_>>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Guess> {
        let mut subjects: Vec<Subject<'_>> = account.iter().cloned().collect();
        if let Some(address) = origin.address {
            subjects.extend([Subject::Address(address), Subject::Traffic(address)]);
        }
        self.attempt(&subjects, now).await?;
        Ok(Guess {
            account: account.as_ref().map(Subject::key),
            address: origin.address.map(|a| Subject::Address(a).key()),
        })
    }

    /// Settles a guess on its own, where no other write carries the settlement.
    pub async fn settle(&self, settlement: &ThrottleSettlement) -> DomainResult<()> {
        Ok(self.store.settle_throttle(settlement).await?)
    }

    /// Drops counters whose window has ended.
    pub async fn prune(&self, now: OffsetDateTime) -> DomainResult<u64> {
        Ok(self
            .store
            .prune_throttle(to_millis(now) - self.window_ms())
            .await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(address: &str) -> String {
        Subject::Address(address.parse().unwrap()).key()
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1"), "address:2001:db8:1:2::/64");
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"), "IPv4-mapped");
        assert_eq!(key("192.0.2.7"), "address:192.0.2.7");
    }

    #[test]
    fn look_ups_guesses_and_traffic_have_separate_budgets() {
        let address: IpAddr = [192, 0, 2, 7].into();
        let keys = [
            Subject::Lookup(address).key(),
            Subject::Address(address).key(),
            Subject::Traffic(address).key(),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        assert_ne!(keys[0], keys[2]);
    }
}
