//! What other instances changed, heard through PostgreSQL's LISTEN/NOTIFY, so that this
//! instance's session cache forgets the copies another instance (or someone at a `psql` prompt)
//! made stale. It takes milliseconds; the spec allows a second across instances.
//!
//! The triggers of migration 0009 announce each change at commit on `coreauth_cache`. While this
//! instance listens, its cache keeps copies for the TTL. Whenever it cannot be sure it hears
//! every change, the cache is suspended (every request reads the database) until it listens
//! again:
//! - at start, until the first LISTEN;
//! - when the connection fails or is closed (a restart of the server, `pg_terminate_backend`);
//! - when the connection goes quiet: four times a second this instance announces a ping of its
//!   own (through a second connection, so that busy request handling cannot delay it), and
//!   when four in a row are not heard back, the listening connection is taken for dead (a
//!   network dropping packets without closing anything, a stuck server process) and replaced,
//!   so that even then a change is not missed for much more than a second.
//!
//! A copy read before a change and stored after its notice was applied is refused by the
//! cache's tickets, as for changes made here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use super::changes::{Change, ChangeListener};

/// The channel the triggers of migration 0009 notify on.
pub const CHANNEL: &str = "coreauth_cache";
/// The application name of the listening connection in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "coreauth changes";
const PING_EVERY: Duration = Duration::from_millis(250);
/// Pings sent and not heard back after which the listening connection is replaced.
const UNHEARD_PINGS: u64 = 4;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One notice, parsed from its payload.
#[derive(Debug, PartialEq, Eq)]
enum Notice {
    Session(String),
    User(i64),
    Org(i64),
    /// An instance's check that it still hears the channel.
    Ping {
        from: u64,
        seq: u64,
    },
    /// Not understood (written by a newer coreauth, say): everything is forgotten.
    Unknown,
}

impl Notice {
    fn parse(payload: &str) -> Self {
        let parsed = match payload.split_once(':') {
            Some(("s", id)) if !id.is_empty() => Some(Self::Session(id.to_owned())),
            Some(("u", id)) => id.parse().ok().map(Self::User),
            Some(("o", id)) => id.parse().ok().map(Self::Org),
            Some(("ping", rest)) => rest.split_once(':').and_then(|(from, seq)| {
                Some(Self::Ping {
                    from: from.parse().ok()?,
                    seq: seq.parse().ok()?,
                })
            }),
            _ => None,
        };
        parsed.unwrap_or(Self::Unknown)
    }
}

/// Where to listen. Made by `PostgresStore::change_feed`.
pub struct ChangeFeed {
    options: PgConnectOptions,
}

impl ChangeFeed {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        Self { options }
    }

    /// Listens (waiting for the first LISTEN, so that an instance serves with its cache on),
    /// and keeps listening in a task until the answer is dropped. The cache is suspended
    /// whenever the feed is not heard.
    pub async fn start(self, cache: Arc<dyn ChangeListener>) -> AbortOnDrop {
        cache.hearing(false);
        let first = self.listen().await.map_err(|e| warn_unheard(&e));
        AbortOnDrop(tokio::spawn(self.run(cache, first.ok())))
    }

    async fn run(self, cache: Arc<dyn ChangeListener>, mut listener: Option<(PgPool, PgListener)>) {
        // Tells this instance's pings from the others'.
        let me = uuid::Uuid::new_v4().as_u64_pair().0;
        let heard = Arc::new(AtomicU64::new(0));
        let mut sent = 0_u64;
        loop {
            cache.hearing(false);
            let (pool, subscribed) = match listener.take() {
                Some(subscribed) => subscribed,
                None => match self.listen().await {
                    Ok(subscribed) => subscribed,
                    Err(e) => {
                        warn_unheard(&e);
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                },
            };
            heard.store(sent, Ordering::Relaxed);
            cache.hearing(true);
            tracing::debug!("listening for changes made by other instances");
            let mut receiving = AbortOnDrop(tokio::spawn(receive(
                subscribed,
                cache.clone(),
                me,
                heard.clone(),
            )));
            let mut beat = tokio::time::interval(PING_EVERY);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut receiving.0 => {
                        tracing::warn!(
                            "lost the connection that hears other instances' changes: \
                             the session cache is off until it is back"
                        );
                        break;
                    }
                    _ = beat.tick() => {
                        if sent.saturating_sub(heard.load(Ordering::Relaxed)) >= UNHEARD_PINGS {
                            tracing::warn!(
                                "the connection that hears other instances' changes went \
                                 quiet: replacing it, the session cache is off meanwhile"
                            );
                            break;
                        }
                        sent += 1;
                        ping(&pool, me, sent).await;
                    }
                }
            }
        }
    }

    /// Connections of its own (not the store's): one subscribed to the channel, and the pool it
    /// came from, whose other connection sends the pings.
    async fn listen(&self) -> Result<(PgPool, PgListener), sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(self.options.clone().application_name(APPLICATION_NAME))
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection is reported at once rather than silently replaced: what was said
        // meanwhile is lost, so the cache must start over.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok((pool, listener))
    }
}

async fn ping(pool: &PgPool, me: u64, seq: u64) {
    let ping = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("ping:{me}:{seq}"))
        .execute(pool);
    match tokio::time::timeout(PING_EVERY, ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!("pinging the change feed: {e}"),
        Err(_) => tracing::debug!("pinging the change feed: timed out"),
    }
}

/// A task stopped when this is dropped: the feed's, stopped with the application that started
/// it (also one that fails to build or never runs), and its receiving task, stopped with the
/// loop that watches it (when its connection is replaced, or with the feed).
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn warn_unheard(e: &sqlx::Error) {
    tracing::warn!(
        "cannot listen for changes made by other instances ({e}): the session cache is off \
         until it can"
    );
}

/// Applies notices to `cache` until the connection is lost or fails.
async fn receive(
    mut listener: PgListener,
    cache: Arc<dyn ChangeListener>,
    me: u64,
    heard: Arc<AtomicU64>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match Notice::parse(notification.payload()) {
                Notice::Session(id) => cache.changed(&Change::Session(id)),
                Notice::User(id) => cache.changed(&Change::User(id)),
                Notice::Org(id) => cache.changed(&Change::Org(id)),
                Notice::Ping { from, seq } if from == me => {
                    heard.fetch_max(seq, Ordering::Relaxed);
                }
                Notice::Ping { .. } => {}
                Notice::Unknown => cache.changed(&Change::Everything),
            },
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("listening for changes: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_parsed_and_anything_else_forgets_everything() {
        assert_eq!(Notice::parse("s:abc-1"), Notice::Session("abc-1".into()));
        assert_eq!(Notice::parse("u:42"), Notice::User(42));
        assert_eq!(Notice::parse("o:7"), Notice::Org(7));
        assert_eq!(
            Notice::parse("ping:99:3"),
            Notice::Ping { from: 99, seq: 3 }
        );
        for odd in ["", "s:", "u:x", "o:", "k:1", "ping:1", "ping:a:1", "u42"] {
            assert_eq!(Notice::parse(odd), Notice::Unknown, "{odd:?}");
        }
    }
}
