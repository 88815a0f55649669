//! Where the client's "now" comes from. Renewal deadlines are wall-clock instants (a token's
//! `expiresAt` is one), so the renewer asks a `Clock` both for the time and to wait for an
//! instant; tests hand in a `ManualClock` and move it together with the server's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A boxed future, as `Clock::sleep_until` returns one.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    /// Unix epoch milliseconds, the unit of `expiresAt`.
    fn now_millis(&self) -> i64;

    /// Completes once `now_millis() >= deadline`.
    fn sleep_until(&self, deadline: i64) -> Sleep<'_>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// A monotonic timer does not run while a laptop is suspended; re-reading the wall clock at
/// least this often lets a renewer notice, soon after waking, that its deadline went by.
const LONGEST_NAP_MS: i64 = 30_000;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: i64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = deadline.saturating_sub(self.now_millis());
                if left <= 0 {
                    return;
                }
                let nap = u64::try_from(left.min(LONGEST_NAP_MS)).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(nap)).await;
            }
        })
    }
}

/// A clock that stands still until moved; clones share the same time, and sleepers wake as
/// soon as a move takes the time past their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// Starting at `unix_millis`.
    pub fn new(unix_millis: i64) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(unix_millis)),
        }
    }

    /// Starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_millis())
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: i64) -> Sleep<'_> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives in `self`, which outlives this future: `wait_for` cannot fail.
            let _ = now.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// A shared clock, as the builders take it.
pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_only_when_the_clock_passes_its_deadline() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(5_000).await })
        };
        clock.advance(Duration::from_secs(3));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now_millis(), 5_000);
    }

    #[tokio::test]
    async fn a_past_deadline_does_not_wait() {
        ManualClock::new(10).sleep_until(5).await;
        SystemClock.sleep_until(0).await;
    }
}
