//! `CachedReads`: the reads every request makes (session and API key contexts, member profiles)
//! and the org settings every login reads (password policy, SSO connections), served from a
//! `SessionCache` for up to its TTL. What makes a copy stale is announced by the store
//! (`store::changes`) to the cache, not seen here: this only reads.
//!
//! A hit on an entry in its TTL's last quarter also starts reading it again in the background
//! (`Refresher`), so a session in use does not make a request wait for the database when its
//! TTL ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::entries::{Lease, SessionCache, Ticket};
use super::profile::MemberProfile;
use crate::store::records::{ApiKeyContext, PasswordPolicy, SessionContext};
use crate::store::{SsoConnectionRecord, Store, StoreResult};

/// The monotonic time the cache's rules are read with: `Instant::now`, or a clock tests move.
pub type MonotonicNow = Arc<dyn Fn() -> Instant + Send + Sync>;

pub struct CachedReads {
    inner: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    /// The inner store's `foreign_write_marker` when last checked.
    last_marker: std::sync::Mutex<Option<i64>>,
    refresher: Arc<Refresher>,
    now: MonotonicNow,
}

/// At most this many entries are read again at once: the requests' own reads keep the rest of
/// the database pool (8 connections by default). An entry found due while all are busy is
/// tried again at its next hit; there are many in the quarter of a TTL.
const REFRESHES_IN_FLIGHT: usize = 2;

/// The entries being read again ahead of their TTL's end: one read per entry at a time, and
/// at most `REFRESHES_IN_FLIGHT` reads.
struct Refresher {
    in_flight: std::sync::Mutex<HashSet<Refresh>>,
    permits: Arc<Semaphore>,
}

/// An entry to read again, by what it is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Refresh {
    Session(String),
    Profile(i64, i64),
    Key(Vec<u8>),
    Policy(i64),
    SsoConnections(i64),
}

impl Refresh {
    /// Reads the entry from `inner` and keeps it in `cache` as stored at `now` with `ticket`,
    /// which were taken before this read was started. An entry the database no longer has is
    /// left to its TTL, as on a hit.
    async fn read_again(
        &self,
        inner: &dyn Store,
        cache: &SessionCache,
        ticket: Ticket,
        now: Instant,
    ) -> StoreResult<()> {
        match self {
            Self::Session(id) => {
                if let Some(ctx) = inner.session_context(id).await? {
                    cache.insert_session(ticket, &ctx, now);
                }
            }
            Self::Profile(user_id, org_id) => {
                if let Some(profile) = read_profile(inner, *user_id, *org_id).await? {
                    cache.insert_profile(ticket, &profile, now);
                }
            }
            Self::Key(hash) => {
                if let Some(ctx) = inner.api_key_context(hash).await? {
                    cache.insert_key(ticket, hash, &ctx, now);
                }
            }
            Self::Policy(org_id) => {
                let policy = inner.password_policy(*org_id).await?;
                cache.insert_policy(ticket, *org_id, policy, now);
            }
            Self::SsoConnections(org_id) => {
                let connections = inner.sso_connections(*org_id).await?;
                cache.insert_sso_connections(ticket, *org_id, &connections, now);
            }
        }
        Ok(())
    }
}

/// One entry's place among the reads in flight, given up when dropped (the read finished,
/// failed or panicked), its permit with it.
struct Claim {
    refresher: Arc<Refresher>,
    what: Refresh,
    _permit: OwnedSemaphorePermit,
}

impl Refresher {
    fn new() -> Self {
        Self {
            in_flight: std::sync::Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(REFRESHES_IN_FLIGHT)),
        }
    }

    /// A claim on reading `what` again, unless it is being read or all reads are busy.
    fn claim(self: &Arc<Self>, what: impl FnOnce() -> Refresh) -> Option<Claim> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let what = what();
        let claimed = self.in_flight.lock().ok()?.insert(what.clone());
        claimed.then(|| Claim {
            refresher: self.clone(),
            what,
            _permit: permit,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.refresher.in_flight.lock() {
            in_flight.remove(&self.what);
        }
    }
}

impl CachedReads {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<SessionCache>) -> Self {
        Self::with_clock(inner, cache, Arc::new(Instant::now))
    }

    /// The store these reads go to when the cache has nothing.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Reads that keep nothing, for a one-off command (`coreauth bootstrap`).
    pub fn uncached(inner: Arc<dyn Store>) -> Self {
        Self::new(
            inner,
            Arc::new(SessionCache::new(std::time::Duration::ZERO, 1)),
        )
    }

    /// `new`, reading the cache's time from `now`.
    pub fn with_clock(inner: Arc<dyn Store>, cache: Arc<SessionCache>, now: MonotonicNow) -> Self {
        Self {
            inner,
            cache,
            last_marker: std::sync::Mutex::new(None),
            refresher: Arc::new(Refresher::new()),
            now,
        }
    }

    /// Forgets everything when another process wrote to the database since the last call;
    /// called every second. On a backend that cannot tell, the TTL alone bounds staleness.
    pub async fn forget_foreign_writes(&self) -> StoreResult<()> {
        let Some(marker) = self.inner.foreign_write_marker().await? else {
            return Ok(());
        };
        let changed = match self.last_marker.lock() {
            Ok(mut last) => last.replace(marker).is_some_and(|before| before != marker),
            Err(_) => true,
        };
        if changed {
            tracing::debug!("another process wrote to the database: the session cache starts over");
            self.cache.clear();
        }
        Ok(())
    }

    /// What the cache holds (`held`), or else the database's answer (`read`), handed to `keep`
    /// with the ticket taken before the read began (the cache's third rule). `read` is a future
    /// not yet polled, so the ticket is taken first. What is held in its TTL's last quarter is
    /// also read again in the background (`again` names it).
    async fn read_through<T>(
        &self,
        held: impl FnOnce(Instant) -> Option<(T, Lease)>,
        read: impl Future<Output = StoreResult<T>>,
        keep: impl FnOnce(Ticket, &T, Instant),
        again: impl FnOnce() -> Refresh,
    ) -> StoreResult<T> {
        let keep = |ticket, found: &T, now| {
            keep(ticket, found, now);
            None
        };
        Ok(self.read_through_leased(held, read, keep, again).await?.0)
    }

    /// `read_through`, with the lease of what the cache served or kept.
    async fn read_through_leased<T>(
        &self,
        held: impl FnOnce(Instant) -> Option<(T, Lease)>,
        read: impl Future<Output = StoreResult<T>>,
        keep: impl FnOnce(Ticket, &T, Instant) -> Option<Lease>,
        again: impl FnOnce() -> Refresh,
    ) -> StoreResult<(T, Option<Lease>)> {
        let now = (self.now)();
        if let Some((value, lease)) = held(now) {
            self.refresh_if_due(&lease, now, again);
            return Ok((value, Some(lease)));
        }
        let ticket = self.cache.ticket();
        let found = read.await?;
        let lease = keep(ticket, &found, now);
        Ok((found, lease))
    }

    /// Starts reading an entry served with `lease` again, in the background, when its TTL's
    /// last quarter has begun, it is not being read already and a read is free. The request
    /// that found it is served from the entry, which is still within its TTL. The ticket is
    /// taken now, before the read is started, so that a change made from here on refuses what
    /// it reads, and the copy is kept as of now.
    fn refresh_if_due(&self, lease: &Lease, now: Instant, what: impl FnOnce() -> Refresh) {
        if !self.cache.refresh_due(lease, now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(claim) = self.refresher.claim(what) else {
            return;
        };
        let ticket = self.cache.ticket();
        let (inner, cache) = (self.inner.clone(), self.cache.clone());
        cache.count_refresh();
        runtime.spawn(async move {
            if let Err(e) = claim.what.read_again(inner.as_ref(), &cache, ticket, now).await {
                tracing::debug!(error = %e, "a cached entry could not be read again before its TTL ended");
            }
            drop(claim);
        });
    }

    /// Waits until no entry is being read again: for tests, instead of sleeping.
    #[cfg(test)]
    async fn refreshes_done(&self) {
        let all = u32::try_from(REFRESHES_IN_FLIGHT).unwrap_or(u32::MAX);
        drop(self.refresher.permits.acquire_many(all).await);
    }
}

/// The five reads served from the cache; everything else is read from the store itself.
impl CachedReads {
    /// The session with its member's state, and the lease of the copy that served it or keeps it.
    pub async fn session_context(
        &self,
        id: &str,
    ) -> StoreResult<(Option<SessionContext>, Option<Lease>)> {
        self.read_through_leased(
            |now| {
                let (ctx, lease) = self.cache.session(id, now)?;
                Some((Some(ctx), lease))
            },
            self.inner.session_context(id),
            |ticket, found, now| {
                let ctx = found.as_ref()?;
                self.cache.insert_session(ticket, ctx, now)
            },
            || Refresh::Session(id.to_owned()),
        )
        .await
    }

    /// What `/user/me` and a renewal show about a member, with a lease as `session_context`
    /// gives.
    pub async fn member_profile(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> StoreResult<(Option<Arc<MemberProfile>>, Option<Lease>)> {
        self.read_through_leased(
            |now| {
                let (profile, lease) = self.cache.profile(user_id, org_id, now)?;
                Some((Some(profile), lease))
            },
            read_profile(self.inner.as_ref(), user_id, org_id),
            |ticket, found, now| {
                let profile = found.as_ref()?;
                self.cache.insert_profile(ticket, profile, now)
            },
            || Refresh::Profile(user_id, org_id),
        )
        .await
    }

    /// Whether what was served with `lease` may be used now as if it had just been read again
    /// (`SessionCache::holds`). In its TTL's last quarter a lease is not used: the entry is
    /// looked up again, and the hit starts its refresh.
    pub fn holds(&self, lease: &Lease) -> bool {
        let now = (self.now)();
        !self.cache.refresh_due(lease, now) && self.cache.holds(lease, now)
    }

    pub async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>> {
        self.read_through(
            |now| {
                let (ctx, lease) = self.cache.key_leased(key_hash, now)?;
                Some((Some(ctx), lease))
            },
            self.inner.api_key_context(key_hash),
            |ticket, found, now| {
                if let Some(ctx) = found {
                    self.cache.insert_key(ticket, key_hash, ctx, now);
                }
            },
            || Refresh::Key(key_hash.to_vec()),
        )
        .await
    }

    /// The org's policy; `None` when the org uses the defaults.
    pub async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>> {
        self.read_through(
            |now| self.cache.policy_leased(org_id, now),
            self.inner.password_policy(org_id),
            |ticket, found, now| self.cache.insert_policy(ticket, org_id, *found, now),
            || Refresh::Policy(org_id),
        )
        .await
    }

    pub async fn sso_connections(&self, org_id: i64) -> StoreResult<Vec<SsoConnectionRecord>> {
        self.read_through(
            |now| self.cache.sso_connections_leased(org_id, now),
            self.inner.sso_connections(org_id),
            |ticket, found, now| {
                self.cache
                    .insert_sso_connections(ticket, org_id, found, now)
            },
            || Refresh::SsoConnections(org_id),
        )
        .await
    }
}

/// A member's profile as the cache shares it, read from `store`.
async fn read_profile(
    store: &dyn Store,
    user_id: i64,
    org_id: i64,
) -> StoreResult<Option<Arc<MemberProfile>>> {
    let member = store.member(user_id, org_id).await?;
    Ok(member.map(|member| Arc::new(MemberProfile::new(member))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::domain::clock::to_millis;
    use crate::store::records::{
        NewApiKey, NewAuditEvent, NewUser, Role, SessionRecord, UserPatch,
    };
    use crate::store::sqlite::{SqliteSettings, SqliteStore};

    const TTL: Duration = Duration::from_secs(60);
    const KEY_HASH: [u8; 32] = [7; 32];

    /// A caching store over a real (in-memory) SQLite store holding one member of one org,
    /// with session `s1` and an API key, on a monotonic clock that moves only when told.
    struct Fixture {
        inner: Arc<dyn Store>,
        cache: Arc<SessionCache>,
        reads: CachedReads,
        elapsed: Arc<std::sync::Mutex<Duration>>,
        user_id: i64,
        org_id: i64,
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
            let inner: Arc<dyn Store> = Arc::new(sqlite);
            let (now, audit) = Self::now();
            let org = inner.create_org("Org", &[], now, &audit).await.unwrap();
            let user = NewUser {
                uuid: "u-1".into(),
                email: "a@b.example".into(),
                email_key: "a@b.example".into(),
                first: "Ada".into(),
                last: "B".into(),
                password_hash: None,
                is_platform_admin: false,
                created_at: now,
                membership: Some((org.id, Role::Member)),
                sso_identity: None,
                username: None,
                is_service: false,
            };
            let user = inner.create_user(user, &audit).await.unwrap();
            let cache = Arc::new(SessionCache::new(TTL, 100));
            let elapsed = Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let start = Instant::now();
            let moved = elapsed.clone();
            let now_moved: MonotonicNow = Arc::new(move || start + *moved.lock().unwrap());
            let fixture = Self {
                reads: CachedReads::with_clock(inner.clone(), cache.clone(), now_moved),
                inner,
                cache,
                elapsed,
                user_id: user.id,
                org_id: org.id,
            };
            fixture.add_session("s1").await;
            let key = NewApiKey {
                public_id: "k1".into(),
                user_id: user.id,
                org_id: org.id,
                name: "ci".into(),
                prefix: "cak_x".into(),
                key_hash: KEY_HASH.to_vec(),
                scopes: "read".into(),
                created_at: now,
                expires_at: None,
            };
            fixture.inner.create_api_key(key, 10, &audit).await.unwrap();
            fixture
        }

        fn now() -> (i64, NewAuditEvent) {
            let now = OffsetDateTime::now_utc();
            (to_millis(now), NewAuditEvent::new("test.setup", now))
        }

        async fn add_session(&self, id: &str) {
            let (now, audit) = Self::now();
            let session =
                SessionRecord::for_tests(id, self.user_id, self.org_id, now, now + 3_600_000);
            self.inner
                .create_session(&session, &audit, &Default::default())
                .await
                .unwrap();
        }

        fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap() += by;
        }

        /// Reads session `id` through the cache: whether it shows as revoked.
        async fn revoked(&self, id: &str) -> bool {
            let ctx = self.reads.session_context(id).await.unwrap().0.unwrap();
            ctx.session.revoked_at.is_some()
        }

        fn misses(&self) -> u64 {
            self.cache.stats().misses
        }

        fn refreshes(&self) -> u64 {
            self.cache.stats().refreshes
        }
    }

    /// A session in use is read again in its TTL's last quarter, in the background: the
    /// request that finds it due is served from memory, the copy read again shows a change made
    /// elsewhere, and no request after the first one reads the database.
    #[tokio::test]
    async fn a_session_in_use_is_read_again_before_its_ttl_ends_and_no_request_waits() {
        let f = Fixture::new().await;
        let (_, lease) = f.reads.session_context("s1").await.unwrap();
        let lease = lease.unwrap();
        // Another instance ends the session; this one has not heard of it.
        let (now, audit) = Fixture::now();
        assert!(
            f.inner
                .revoke_session("s1", None, now, &audit)
                .await
                .unwrap()
        );

        f.advance(TTL / 2);
        assert!(f.reads.holds(&lease));
        assert!(!f.revoked("s1").await, "served from memory within the TTL");
        f.reads.refreshes_done().await;
        assert_eq!(f.refreshes(), 0, "not due before the last quarter");

        f.advance(TTL / 4);
        assert!(
            !f.reads.holds(&lease),
            "in the last quarter a lease sends the request to the cache, whose hit starts the read"
        );
        assert!(!f.revoked("s1").await, "the due entry is still served");
        f.reads.refreshes_done().await;
        assert_eq!(f.refreshes(), 1);

        // Past the first read's TTL: the copy read again is served, and shows the change.
        f.advance(TTL / 2);
        assert!(f.revoked("s1").await);
        assert_eq!(f.misses(), 1, "only the first request read the database");
    }

    /// The read again takes its ticket when it is started: a change made before it is read
    /// refuses the copy, which may predate the change.
    #[tokio::test]
    async fn a_read_again_that_raced_with_a_change_is_not_kept() {
        let f = Fixture::new().await;
        assert!(!f.revoked("s1").await);
        f.advance(TTL * 3 / 4);
        assert!(!f.revoked("s1").await);
        // The test's runtime has one thread and has not yielded: the read has not run yet.
        f.cache.invalidate_user(999);
        f.reads.refreshes_done().await;
        assert_eq!(f.refreshes(), 1);
        f.advance(TTL / 2);
        assert!(!f.revoked("s1").await);
        assert_eq!(
            f.misses(),
            2,
            "the refused copy was not kept, so the TTL ended"
        );
    }

    /// One read per entry at a time, and at most `REFRESHES_IN_FLIGHT` at once; an entry found
    /// due while none is free is read at a later hit.
    #[tokio::test]
    async fn entries_are_read_again_one_at_a_time_each_and_a_few_at_once() {
        assert_eq!(REFRESHES_IN_FLIGHT, 2, "the counts below assume two");
        let f = Fixture::new().await;
        f.add_session("s2").await;
        f.add_session("s3").await;
        for id in ["s1", "s2", "s3"] {
            f.revoked(id).await;
        }
        f.advance(TTL * 3 / 4);
        for id in ["s1", "s1", "s2", "s3"] {
            f.revoked(id).await;
        }
        assert_eq!(f.refreshes(), 2, "s1 once, then s2; none free for s3");
        f.reads.refreshes_done().await;
        for id in ["s1", "s2", "s3"] {
            f.revoked(id).await;
        }
        assert_eq!(f.refreshes(), 3, "s1 and s2 were read again; s3 now is");
        f.reads.refreshes_done().await;
        f.advance(TTL / 2);
        for id in ["s1", "s2", "s3"] {
            f.revoked(id).await;
        }
        assert_eq!(f.misses(), 3, "no TTL ended on a request");
    }

    /// Profiles, API keys and org settings are read again as sessions are.
    #[tokio::test]
    async fn profiles_keys_and_org_settings_are_read_again_too() {
        let f = Fixture::new().await;
        let (user_id, org_id) = (f.user_id, f.org_id);
        let read_all = || async {
            let (profile, _) = f.reads.member_profile(user_id, org_id).await.unwrap();
            assert!(f.reads.api_key_context(&KEY_HASH).await.unwrap().is_some());
            let policy = f.reads.password_policy(org_id).await.unwrap();
            assert!(f.reads.sso_connections(org_id).await.unwrap().is_empty());
            (profile.unwrap().user().first.clone(), policy)
        };
        assert_eq!(read_all().await, ("Ada".into(), None));
        assert_eq!(f.misses(), 4);
        // Changed elsewhere.
        let (now, audit) = Fixture::now();
        let patch = UserPatch {
            first: Some("Grace".into()),
            ..UserPatch::default()
        };
        f.inner
            .update_user(user_id, &patch, now, &audit)
            .await
            .unwrap();
        let strict = PasswordPolicy {
            require_mfa: true,
            ..PasswordPolicy::default()
        };
        f.inner
            .set_password_policy(org_id, &strict, now, &audit)
            .await
            .unwrap();

        f.advance(TTL * 3 / 4);
        // Two reads at a time: the first pass starts the profile's and the key's, which are
        // served anew to the second pass, which starts the org settings'.
        assert_eq!(read_all().await, ("Ada".into(), None));
        f.reads.refreshes_done().await;
        assert_eq!(f.refreshes(), 2);
        assert_eq!(read_all().await, ("Grace".into(), None));
        f.reads.refreshes_done().await;
        assert_eq!(f.refreshes(), 4);
        f.advance(TTL / 2);
        assert_eq!(read_all().await, ("Grace".into(), Some(strict)));
        assert_eq!(f.misses(), 4, "no TTL ended on a request");
    }

    /// What the store writes it announces, and the cache forgets at once, TTL or not: a
    /// logout, a key deleted, a policy changed, each seen by the very next read.
    #[tokio::test]
    async fn the_stores_announcements_make_the_cache_forget_at_once() {
        let f = Fixture::new().await;
        assert!(f.inner.changes().listen(f.cache.clone()));
        let (user_id, org_id) = (f.user_id, f.org_id);
        assert!(!f.revoked("s1").await);
        assert!(f.reads.api_key_context(&KEY_HASH).await.unwrap().is_some());
        assert_eq!(f.reads.password_policy(org_id).await.unwrap(), None);
        assert_eq!(f.misses(), 3);

        let (now, audit) = Fixture::now();
        assert!(
            f.inner
                .revoke_session("s1", None, now, &audit)
                .await
                .unwrap()
        );
        assert!(f.revoked("s1").await, "the revocation was heard");
        let deleted = f.inner.delete_api_key("k1", None, org_id, &audit).await;
        assert_eq!(deleted.unwrap().map(|k| k.user_id), Some(user_id));
        assert!(f.reads.api_key_context(&KEY_HASH).await.unwrap().is_none());
        let strict = PasswordPolicy {
            require_mfa: true,
            ..PasswordPolicy::default()
        };
        f.inner
            .set_password_policy(org_id, &strict, now, &audit)
            .await
            .unwrap();
        assert_eq!(f.reads.password_policy(org_id).await.unwrap(), Some(strict));
        assert_eq!(f.misses(), 6, "each change cost one read, no TTL had ended");
    }
}
