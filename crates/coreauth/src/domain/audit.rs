//! The audit trail: what happened, when, to whom, by whom, from where. Events are written by
//! the store in the same transaction as the change they describe, so none is lost or invented.
//! Details never carry a secret: no password, token, key or TOTP secret is ever put in one.

pub use crate::store::records::{AuditQuery, AuditRecord, NewAuditEvent};

use std::sync::Arc;

use time::OffsetDateTime;

use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::origin::RequestOrigin;
use super::session::Principal;
use crate::store::Store;

impl NewAuditEvent {
    pub fn new(event: &str, now: OffsetDateTime) -> Self {
        Self {
            occurred_at: to_millis(now),
            event: event.to_owned(),
            success: true,
            reason: None,
            org_id: None,
            actor_user_id: None,
            subject_user_id: None,
            subject: None,
            address: None,
            user_agent: None,
            client: None,
            request_id: None,
            details: serde_json::json!({}),
        }
    }

    /// Done by `caller`, in the caller's org, from the caller's request.
    pub fn by(mut self, caller: &Principal) -> Self {
        self.actor_user_id = Some(caller.user_id);
        self.org_id = self.org_id.or(Some(caller.org_id));
        self.from(&caller.origin)
    }

    pub fn from(mut self, origin: &RequestOrigin) -> Self {
        self.address = origin.address_text();
        self.user_agent.clone_from(&origin.user_agent);
        self.request_id.clone_from(&origin.request_id);
        self
    }

    pub fn failed(mut self, reason: &str) -> Self {
        self.success = false;
        self.reason = Some(reason.to_owned());
        self
    }

    pub fn org(mut self, org_id: i64) -> Self {
        self.org_id = Some(org_id);
        self
    }

    pub fn actor(mut self, user_id: i64) -> Self {
        self.actor_user_id = Some(user_id);
        self
    }

    pub fn subject_user(mut self, user_id: i64) -> Self {
        self.subject_user_id = Some(user_id);
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn client(mut self, client: Option<&str>) -> Self {
        self.client = client.map(str::to_owned);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

pub struct Audit {
    store: Arc<dyn Store>,
    /// How long events are kept; zero keeps them forever.
    retention: std::time::Duration,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>, retention: std::time::Duration) -> Self {
        Self { store, retention }
    }

    /// Deletes events older than the retention period.
    pub async fn prune(&self, now: OffsetDateTime) -> DomainResult<u64> {
        if self.retention.is_zero() {
            return Ok(0);
        }
        let keep = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .prune_audit(to_millis(now).saturating_sub(keep))
            .await?)
    }

    /// The newest event's id, where an export starts.
    pub async fn newest_id(&self) -> DomainResult<i64> {
        let newest = self
            .store
            .audit_events(&AuditQuery {
                limit: 1,
                ..AuditQuery::default()
            })
            .await?;
        Ok(newest.first().map_or(0, |r| r.id))
    }

    /// Events after `after_id`, oldest first.
    pub async fn after(&self, after_id: i64, limit: i64) -> DomainResult<Vec<AuditRecord>> {
        Ok(self.store.audit_events_after(after_id, limit).await?)
    }

    /// A page of events, newest first, and the cursor of the next page. An org admin sees their
    /// token's org only; a platform admin sees everything.
    pub async fn search(
        &self,
        caller: &Principal,
        mut query: AuditQuery,
    ) -> DomainResult<(Vec<AuditRecord>, Option<i64>)> {
        if !caller.is_platform_admin {
            match query.org_id {
                Some(org_id) if !caller.administers_org(org_id) => {
                    return Err(DomainError::Forbidden);
                }
                Some(_) => {}
                None if caller.role.is_admin() => query.org_id = Some(caller.org_id),
                None => return Err(DomainError::Forbidden),
            }
        }
        if query.limit == 0 || query.limit > MAX_PAGE {
            return Err(DomainError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let page = self.store.audit_events(&query).await?;
        let next = (page.len() == query.limit as usize)
            .then(|| page.last().map(|r| r.id))
            .flatten();
        Ok((page, next))
    }
}
