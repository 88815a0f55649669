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

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{PasswordChange, Revoked, SsoConfigRecord, SsoLoginRecord, Store, TotpRecord};
use crate::domain::apikey::{ApiKeyContext, ApiKeyRecord, NewApiKey};
use crate::domain::audit::{AuditQuery, AuditRecord, NewAuditEvent};
use crate::domain::error::DomainResult;
use crate::domain::integrations::IntegrationRecord;
use crate::domain::org::{MembershipPatch, MembershipRecord, OrgRecord, Role};
use crate::domain::policy::PasswordPolicy;
use crate::domain::session::{Renewal, SessionContext, SessionRecord};
use crate::domain::session_cache::{Lease, MemberProfile, SessionCache, Ticket};
use crate::domain::tokens::StoredSigningKey;
use crate::domain::user::{NewUser, UserPatch, UserRecord};

pub struct CachingStore {
    inner: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    /// The inner store's `foreign_write_marker` when last checked.
    last_marker: std::sync::Mutex<Option<i64>>,
}

impl CachingStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<SessionCache>) -> Self {
        Self {
            inner,
            cache,
            last_marker: std::sync::Mutex::new(None),
        }
    }

    /// Forgets everything when another process wrote to the database since the last call;
    /// called every second. On a backend that cannot tell, the TTL alone bounds staleness.
    pub async fn forget_foreign_writes(&self) -> DomainResult<()> {
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
    /// not yet polled, so the ticket is taken first.
    async fn read_through<T>(
        &self,
        held: impl FnOnce(Instant) -> Option<T>,
        read: impl Future<Output = DomainResult<T>>,
        keep: impl FnOnce(Ticket, &T, Instant),
    ) -> DomainResult<T> {
        let held = |now| held(now).map(|value| (value, None));
        let keep = |ticket, found: &T, now| {
            keep(ticket, found, now);
            None
        };
        Ok(self.read_through_leased(held, read, keep).await?.0)
    }

    /// `read_through`, with the lease of what the cache served or kept.
    async fn read_through_leased<T>(
        &self,
        held: impl FnOnce(Instant) -> Option<(T, Option<Lease>)>,
        read: impl Future<Output = DomainResult<T>>,
        keep: impl FnOnce(Ticket, &T, Instant) -> Option<Lease>,
    ) -> DomainResult<(T, Option<Lease>)> {
        let now = Instant::now();
        if let Some(held) = held(now) {
            return Ok(held);
        }
        let ticket = self.cache.ticket();
        let found = read.await?;
        let lease = keep(ticket, &found, now);
        Ok((found, lease))
    }
}

#[async_trait]
impl Store for CachingStore {
    async fn member_profile(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> DomainResult<Option<Arc<MemberProfile>>> {
        Ok(self.member_profile_leased(user_id, org_id).await?.0)
    }

    async fn member_profile_leased(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> DomainResult<(Option<Arc<MemberProfile>>, Option<Lease>)> {
        self.read_through_leased(
            |now| {
                let (profile, lease) = self.cache.profile(user_id, org_id, now)?;
                Some((Some(profile), Some(lease)))
            },
            self.inner.member_profile(user_id, org_id),
            |ticket, found, now| {
                let profile = found.as_ref()?;
                self.cache.insert_profile(ticket, profile, now)
            },
        )
        .await
    }

    fn holds(&self, lease: &Lease) -> bool {
        self.cache.holds(lease, Instant::now())
    }

    async fn ping(&self) -> DomainResult<()> {
        self.inner.ping().await
    }

    async fn foreign_write_marker(&self) -> DomainResult<Option<i64>> {
        self.inner.foreign_write_marker().await
    }

    async fn signing_keys(&self) -> DomainResult<Vec<StoredSigningKey>> {
        self.inner.signing_keys().await
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()> {
        self.inner.insert_signing_key(key).await
    }

    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<Option<UserRecord>> {
        self.inner.bootstrap(admin, now, audit).await
    }

    async fn user_by_email(&self, email_key: &str) -> DomainResult<Option<UserRecord>> {
        self.inner.user_by_email(email_key).await
    }

    async fn user_by_id(&self, id: i64) -> DomainResult<Option<UserRecord>> {
        self.inner.user_by_id(id).await
    }

    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> DomainResult<UserRecord> {
        self.inner.create_user(user, audit).await
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<Option<(UserRecord, Revoked)>> {
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
    ) -> DomainResult<OrgRecord> {
        self.inner.create_org(name, email_domains, now, audit).await
    }

    async fn org(&self, id: i64) -> DomainResult<Option<OrgRecord>> {
        self.inner.org(id).await
    }

    async fn memberships_of(&self, user_id: i64) -> DomainResult<Vec<MembershipRecord>> {
        self.inner.memberships_of(user_id).await
    }

    async fn membership(
        &self,
        user_id: i64,
        org_id: i64,
    ) -> DomainResult<Option<MembershipRecord>> {
        self.inner.membership(user_id, org_id).await
    }

    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<MembershipRecord> {
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
    ) -> DomainResult<Option<(MembershipRecord, Revoked)>> {
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
    ) -> DomainResult<()> {
        self.inner.create_session(session, audit, clears).await
    }

    async fn session_context(&self, id: &str) -> DomainResult<Option<SessionContext>> {
        Ok(self.session_context_leased(id).await?.0)
    }

    async fn session_context_leased(
        &self,
        id: &str,
    ) -> DomainResult<(Option<SessionContext>, Option<Lease>)> {
        self.read_through_leased(
            |now| {
                let (ctx, lease) = self.cache.session(id, now)?;
                Some((Some(ctx), Some(lease)))
            },
            self.inner.session_context(id),
            |ticket, found, now| {
                let ctx = found.as_ref()?;
                self.cache.insert_session(ticket, ctx, now)
            },
        )
        .await
    }

    async fn record_renewals(&self, renewals: &[Renewal]) -> DomainResult<()> {
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
    ) -> DomainResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.revoke_session(id, user_id, now, audit).await;
        self.cache.invalidate_session(id);
        done
    }

    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<Revoked> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.revoke_sessions_of(user_id, now, audit).await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> DomainResult<Vec<SessionRecord>> {
        self.inner.live_sessions_of(user_id, now).await
    }

    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<ApiKeyRecord> {
        self.inner.create_api_key(key, max_per_user, audit).await
    }

    async fn api_key_context(&self, key_hash: &[u8]) -> DomainResult<Option<ApiKeyContext>> {
        self.read_through(
            |now| self.cache.key(key_hash, now).map(Some),
            self.inner.api_key_context(key_hash),
            |ticket, found, now| {
                if let Some(ctx) = found {
                    self.cache.insert_key(ticket, key_hash, ctx, now);
                }
            },
        )
        .await
    }

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> DomainResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_of(user_id, org_id).await
    }

    async fn api_keys_in_org(&self, org_id: i64) -> DomainResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_in_org(org_id).await
    }

    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<Option<ApiKeyRecord>> {
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
    ) -> DomainResult<Option<ApiKeyRecord>> {
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

    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> DomainResult<()> {
        self.inner.record_api_key_usage(usage).await
    }

    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<bool> {
        self.inner
            .note_api_key_address(key_id, address, now, audit)
            .await
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> DomainResult<()> {
        self.inner.record_audit(event).await
    }

    async fn audit_events(&self, query: &AuditQuery) -> DomainResult<Vec<AuditRecord>> {
        self.inner.audit_events(query).await
    }

    async fn password_policy(&self, org_id: i64) -> DomainResult<Option<PasswordPolicy>> {
        self.read_through(
            |now| self.cache.policy(org_id, now),
            self.inner.password_policy(org_id),
            |ticket, found, now| self.cache.insert_policy(ticket, org_id, *found, now),
        )
        .await
    }

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .set_password_policy(org_id, policy, now, audit)
            .await;
        self.cache.invalidate_org(org_id);
        done
    }

    async fn password_history(&self, user_id: i64, limit: i64) -> DomainResult<Vec<String>> {
        self.inner.password_history(user_id, limit).await
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> DomainResult<Revoked> {
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
    ) -> DomainResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .upgrade_password_hash(user_id, old_hash, new_hash)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn totp_of(&self, user_id: i64) -> DomainResult<Option<TotpRecord>> {
        self.inner.totp_of(user_id).await
    }

    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<()> {
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
    ) -> DomainResult<bool> {
        // Invalidated even when the write failed: it may have landed.
        let done = self
            .inner
            .confirm_totp(user_id, step, recovery_code_hashes, now, audit)
            .await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn consume_totp_step(&self, user_id: i64, step: i64) -> DomainResult<bool> {
        self.inner.consume_totp_step(user_id, step).await
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<bool> {
        self.inner
            .use_recovery_code(user_id, code_hash, now, audit)
            .await
    }

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> DomainResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.reseal_totp(user_id, sealed_secret).await;
        self.cache.invalidate_user(user_id);
        done
    }

    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> DomainResult<bool> {
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
    ) -> DomainResult<()> {
        self.inner.save_integration(integration, now, audit).await
    }

    async fn integration(
        &self,
        org_id: i64,
        name: &str,
    ) -> DomainResult<Option<IntegrationRecord>> {
        self.inner.integration(org_id, name).await
    }

    async fn integrations_of(&self, org_id: i64) -> DomainResult<Vec<IntegrationRecord>> {
        self.inner.integrations_of(org_id).await
    }

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> DomainResult<bool> {
        self.inner.delete_integration(org_id, name, audit).await
    }

    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> DomainResult<Vec<(i64, i64)>> {
        self.inner.hit_throttle(keys, now, window_ms).await
    }

    async fn clear_throttle(&self, key: &str) -> DomainResult<()> {
        self.inner.clear_throttle(key).await
    }

    async fn prune_throttle(&self, before: i64) -> DomainResult<u64> {
        self.inner.prune_throttle(before).await
    }

    async fn save_sso_config(
        &self,
        config: &SsoConfigRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> DomainResult<()> {
        // Invalidated even when the write failed: it may have landed.
        let done = self.inner.save_sso_config(config, now, audit).await;
        self.cache.invalidate_org(config.org_id);
        done
    }

    async fn sso_config(&self, org_id: i64) -> DomainResult<Option<SsoConfigRecord>> {
        self.read_through(
            |now| self.cache.sso_config(org_id, now),
            self.inner.sso_config(org_id),
            |ticket, found, now| self.cache.insert_sso_config(ticket, org_id, found, now),
        )
        .await
    }

    async fn delete_sso_config(&self, org_id: i64, audit: &NewAuditEvent) -> DomainResult<bool> {
        let done = self.inner.delete_sso_config(org_id, audit).await;
        self.cache.invalidate_org(org_id);
        done
    }

    async fn sso_org_for_domain(&self, domain: &str) -> DomainResult<Option<i64>> {
        self.inner.sso_org_for_domain(domain).await
    }

    async fn create_sso_login(&self, login: &SsoLoginRecord) -> DomainResult<()> {
        self.inner.create_sso_login(login).await
    }

    async fn take_sso_login(&self, state: &str, now: i64) -> DomainResult<Option<SsoLoginRecord>> {
        self.inner.take_sso_login(state, now).await
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> DomainResult<()> {
        self.inner.insert_first_signing_key(key).await
    }

    async fn audit_events_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> DomainResult<Vec<AuditRecord>> {
        self.inner.audit_events_after(after_id, limit).await
    }

    async fn prune_audit(&self, before: i64) -> DomainResult<u64> {
        self.inner.prune_audit(before).await
    }
}
