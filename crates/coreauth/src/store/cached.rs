//! `CachingStore`: any `Store`, with the reads every request makes (session and API key contexts,
//! member profiles) and the org settings every login reads (password policy, SSO configuration)
//! served from a `SessionCache` for up to its TTL, and every write through it invalidating what
//! it changes, at once. Wrapping the store rather than the domain functions
//! means no write path can forget to invalidate: each one is listed here.
//!
//! Writes that change nothing the cache holds (audit events, throttle counters, new sessions,
//! key usage, SSO logins in flight, TOTP steps) pass straight through. A written batch of
//! renewals is applied to the cached copies of its sessions rather than forgetting them, so
//! renewing does not cost a read.
//!
//! A hit on an entry in its TTL's last quarter also starts reading it again in the background
//! (`Refresher`), so a session in use does not make a request wait for the database when its
//! TTL ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::StoreResult;
use super::records::{
    ApiKeyContext, ApiKeyRecord, AuditQuery, AuditRecord, IntegrationRecord, MembershipPatch,
    MembershipRecord, NewApiKey, NewAuditEvent, NewUser, OrgRecord, PasswordPolicy, Renewal, Role,
    SessionContext, SessionRecord, StoredSigningKey, UserPatch, UserRecord,
};
use super::{PasswordChange, Revoked, SsoConfigRecord, SsoLoginRecord, Store, TotpRecord};
use crate::domain::session_cache::{Lease, MemberProfile, SessionCache, Ticket};

/// The monotonic time the cache's rules are read with: `Instant::now`, or a clock tests move.
pub type MonotonicNow = Arc<dyn Fn() -> Instant + Send + Sync>;

pub struct CachingStore {
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
    SsoConfig(i64),
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
                if let Some(profile) = inner.member_profile(*user_id, *org_id).await? {
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
            Self::SsoConfig(org_id) => {
                let config = inner.sso_config(*org_id).await?;
                cache.insert_sso_config(ticket, *org_id, &config, now);
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

impl CachingStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<SessionCache>) -> Self {
        Self::with_clock(inner, cache, Arc::new(Instant::now))
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

#[async_trait]
impl Store for CachingStore {
    async fn member_profile(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> StoreResult<Option<Arc<MemberProfile>>> {
        Ok(self.member_profile_leased(user_id, org_id).await?.0)
    }

    async fn member_profile_leased(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> StoreResult<(Option<Arc<MemberProfile>>, Option<Lease>)> {
        self.read_through_leased(
            |now| {
                let (profile, lease) = self.cache.profile(user_id, org_id, now)?;
                Some((Some(profile), lease))
            },
            self.inner.member_profile(user_id, org_id),
            |ticket, found, now| {
                let profile = found.as_ref()?;
                self.cache.insert_profile(ticket, profile, now)
            },
            || Refresh::Profile(user_id, org_id),
        )
        .await
    }

    /// In its TTL's last quarter a lease is not used: the entry is looked up again, and the
    /// hit starts its refresh.
    fn holds(&self, lease: &Lease) -> bool {
        let now = (self.now)();
        !self.cache.refresh_due(lease, now) && self.cache.holds(lease, now)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn foreign_write_marker(&self) -> StoreResult<Option<i64>> {
        self.inner.foreign_write_marker().await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        self.inner.signing_keys().await
    }

    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<UserRecord>> {
        self.inner.bootstrap(admin, now, audit).await
    }

    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>> {
        self.inner.user_by_email(email_key).await
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        self.inner.user_by_id(id).await
    }

    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> StoreResult<UserRecord> {
        self.inner.create_user(user, audit).await
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(UserRecord, Revoked)>> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.update_user(id, patch, now, audit).await;
        self.cache.invalidate_user(id);
        done
    }

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<OrgRecord> {
        self.inner.create_org(name, email_domains, now, audit).await
    }

    async fn org(&self, id: i64) -> StoreResult<Option<OrgRecord>> {
        self.inner.org(id).await
    }

    async fn memberships_of(&self, user_id: i64) -> StoreResult<Vec<MembershipRecord>> {
        self.inner.memberships_of(user_id).await
    }

    async fn membership(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MembershipRecord>> {
        self.inner.membership(user_id, org_id).await
    }

    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<MembershipRecord> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .add_membership(org_id, user_id, role, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(MembershipRecord, Revoked)>> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .update_membership(org_id, user_id, patch, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        audit: &NewAuditEvent,
        clears: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.create_session(session, audit, clears).await
    }

    async fn session_context(&self, id: &str) -> StoreResult<Option<SessionContext>> {
        Ok(self.session_context_leased(id).await?.0)
    }

    async fn session_context_leased(
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

    async fn record_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
        let done = self.inner.record_renewals(renewals).await;
        for renewal in renewals {
            match &done {
                Ok(()) => self.cache.note_renewal(renewal),
                Err(_) => self.cache.invalidate_session(&renewal.session_id),
            }
        }
        done
    }

    async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.revoke_session(id, user_id, now, audit).await;
        self.cache.invalidate_session(id);
        done
    }

    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .revoke_sessions_of(user_id, in_org, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn lift_session_restriction(
        &self,
        session_id: &str,
        restriction: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .lift_session_restriction(session_id, restriction, audit)
            .await;
        self.cache.invalidate_session(session_id);
        done
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> StoreResult<Vec<SessionRecord>> {
        self.inner.live_sessions_of(user_id, now).await
    }

    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord> {
        self.inner.create_api_key(key, max_per_user, audit).await
    }

    async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>> {
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

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_of(user_id, org_id).await
    }

    async fn api_keys_in_org(&self, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_in_org(org_id).await
    }

    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .delete_api_key(public_id, owner, org_id, audit)
            .await;
        match &done {
            Ok(Some(key)) => self.cache.invalidate_user(key.user_id),
            Ok(None) => {}
            Err(_) => self.cache.clear(),
        }
        done
    }

    async fn delete_api_key_by_hash(
        &self,
        key_hash: &[u8],
        owner: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .delete_api_key_by_hash(key_hash, owner, org_id, audit)
            .await;
        match &done {
            Ok(Some(key)) => self.cache.invalidate_user(key.user_id),
            Ok(None) => {}
            Err(_) => self.cache.clear(),
        }
        done
    }

    async fn delete_api_keys_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<u64> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.delete_api_keys_of(user_id, in_org, audit).await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> StoreResult<()> {
        self.inner.record_api_key_usage(usage).await
    }

    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        self.inner
            .note_api_key_address(key_id, address, now, audit)
            .await
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        self.inner.record_audit(event).await
    }

    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.inner.audit_events(query).await
    }

    async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>> {
        self.read_through(
            |now| self.cache.policy_leased(org_id, now),
            self.inner.password_policy(org_id),
            |ticket, found, now| self.cache.insert_policy(ticket, org_id, *found, now),
            || Refresh::Policy(org_id),
        )
        .await
    }

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .set_password_policy(org_id, policy, now, audit)
            .await;
        self.cache.invalidate_org(org_id);
        done
    }

    async fn password_history(&self, user_id: i64, limit: i64) -> StoreResult<Vec<String>> {
        self.inner.password_history(user_id, limit).await
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.set_password(change, audit).await;
        self.cache.invalidate_user(change.user_id);
        done
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .upgrade_password_hash(user_id, old_hash, new_hash)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn totp_of(&self, user_id: i64) -> StoreResult<Option<TotpRecord>> {
        self.inner.totp_of(user_id).await
    }

    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .save_totp_enrollment(user_id, sealed_secret, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn confirm_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .confirm_totp(user_id, step, recovery_code_hashes, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn consume_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        self.inner.consume_totp_step(user_id, step).await
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        self.inner
            .use_recovery_code(user_id, code_hash, now, audit)
            .await
    }

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> StoreResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.reseal_totp(user_id, sealed_secret).await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.delete_totp(user_id, audit).await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn save_integration(
        &self,
        integration: &IntegrationRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        self.inner.save_integration(integration, now, audit).await
    }

    async fn integration(&self, org_id: i64, name: &str) -> StoreResult<Option<IntegrationRecord>> {
        self.inner.integration(org_id, name).await
    }

    async fn integrations_of(&self, org_id: i64) -> StoreResult<Vec<IntegrationRecord>> {
        self.inner.integrations_of(org_id).await
    }

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        self.inner.delete_integration(org_id, name, audit).await
    }

    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.inner.hit_throttle(keys, now, window_ms).await
    }

    async fn clear_throttle(&self, key: &str) -> StoreResult<()> {
        self.inner.clear_throttle(key).await
    }

    async fn prune_throttle(&self, before: i64) -> StoreResult<u64> {
        self.inner.prune_throttle(before).await
    }

    async fn save_sso_config(
        &self,
        config: &SsoConfigRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.save_sso_config(config, now, audit).await;
        self.cache.invalidate_org(config.org_id);
        done
    }

    async fn sso_config(&self, org_id: i64) -> StoreResult<Option<SsoConfigRecord>> {
        self.read_through(
            |now| self.cache.sso_config_leased(org_id, now),
            self.inner.sso_config(org_id),
            |ticket, found, now| self.cache.insert_sso_config(ticket, org_id, found, now),
            || Refresh::SsoConfig(org_id),
        )
        .await
    }

    async fn delete_sso_config(&self, org_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let done = self.inner.delete_sso_config(org_id, audit).await;
        self.cache.invalidate_org(org_id);
        done
    }

    async fn sso_org_for_domain(&self, domain: &str) -> StoreResult<Option<i64>> {
        self.inner.sso_org_for_domain(domain).await
    }

    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>> {
        self.inner.orgs_holding_domain(domain).await
    }

    async fn sso_identity(
        &self,
        org_id: i64,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<i64>> {
        self.inner.sso_identity(org_id, issuer, subject).await
    }

    async fn link_sso_identity(
        &self,
        org_id: i64,
        identity: (&str, &str),
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        self.inner
            .link_sso_identity(org_id, identity, user_id, now, audit)
            .await
    }

    async fn create_sso_login(&self, login: &SsoLoginRecord) -> StoreResult<()> {
        self.inner.create_sso_login(login).await
    }

    async fn take_sso_login(&self, state: &str, now: i64) -> StoreResult<Option<SsoLoginRecord>> {
        self.inner.take_sso_login(state, now).await
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        self.inner.insert_first_signing_key(key).await
    }

    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64> {
        self.inner.prune_sso_logins(before).await
    }

    async fn audit_events_after(&self, after_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        self.inner.audit_events_after(after_id, limit).await
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        self.inner.prune_audit(before).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::domain::clock::to_millis;
    use crate::store::sqlite::{SqliteSettings, SqliteStore};

    const TTL: Duration = Duration::from_secs(60);
    const KEY_HASH: [u8; 32] = [7; 32];

    /// A caching store over a real (in-memory) SQLite store holding one member of one org,
    /// with session `s1` and an API key, on a monotonic clock that moves only when told.
    struct Fixture {
        inner: Arc<dyn Store>,
        cache: Arc<SessionCache>,
        store: CachingStore,
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
            };
            let user = inner.create_user(user, &audit).await.unwrap();
            let cache = Arc::new(SessionCache::new(TTL, 100));
            let elapsed = Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let start = Instant::now();
            let moved = elapsed.clone();
            let now_moved: MonotonicNow = Arc::new(move || start + *moved.lock().unwrap());
            let fixture = Self {
                store: CachingStore::with_clock(inner.clone(), cache.clone(), now_moved),
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
                read_only: false,
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
                .create_session(&session, &audit, None)
                .await
                .unwrap();
        }

        fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap() += by;
        }

        /// Reads session `id` through the cache: whether it shows as revoked.
        async fn revoked(&self, id: &str) -> bool {
            let ctx = self.store.session_context(id).await.unwrap().unwrap();
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
        let (_, lease) = f.store.session_context_leased("s1").await.unwrap();
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
        assert!(f.store.holds(&lease));
        assert!(!f.revoked("s1").await, "served from memory within the TTL");
        f.store.refreshes_done().await;
        assert_eq!(f.refreshes(), 0, "not due before the last quarter");

        f.advance(TTL / 4);
        assert!(
            !f.store.holds(&lease),
            "in the last quarter a lease sends the request to the cache, whose hit starts the read"
        );
        assert!(!f.revoked("s1").await, "the due entry is still served");
        f.store.refreshes_done().await;
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
        f.store.refreshes_done().await;
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
        f.store.refreshes_done().await;
        for id in ["s1", "s2", "s3"] {
            f.revoked(id).await;
        }
        assert_eq!(f.refreshes(), 3, "s1 and s2 were read again; s3 now is");
        f.store.refreshes_done().await;
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
            let profile = f.store.member_profile(user_id, org_id).await.unwrap();
            assert!(f.store.api_key_context(&KEY_HASH).await.unwrap().is_some());
            let policy = f.store.password_policy(org_id).await.unwrap();
            assert!(f.store.sso_config(org_id).await.unwrap().is_none());
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
        f.store.refreshes_done().await;
        assert_eq!(f.refreshes(), 2);
        assert_eq!(read_all().await, ("Grace".into(), None));
        f.store.refreshes_done().await;
        assert_eq!(f.refreshes(), 4);
        f.advance(TTL / 2);
        assert_eq!(read_all().await, ("Grace".into(), Some(strict)));
        assert_eq!(f.misses(), 4, "no TTL ended on a request");
    }
}
