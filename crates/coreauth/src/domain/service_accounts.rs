//! Service accounts: identities an org owns for its integrations, so an integration does not
//! stop when the person who set it up leaves. One is a user of kind `service` whose home org is
//! the org and whose membership there carries its role; it has no email, password, username,
//! session or second factor, and acts only through its API keys. Its admins manage it and its
//! keys; disabling it stops every key at once, like deactivating a person.

pub use crate::store::records::ServiceAccountRecord;

use std::sync::Arc;

use time::OffsetDateTime;

use super::apikey::{ApiKeyRecord, ApiKeys, KeyRequest, RotateRequest};
use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::org::{MembershipPatch, Name, Role};
use super::session::Principal;
use super::user::{NewUser, UserPatch};
use crate::store::Store;

/// At most this many service accounts per org: they are for integrations, not for people.
pub const MAX_PER_ORG: usize = 200;

/// A change to a service account; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ServiceAccountPatch {
    pub name: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

pub struct ServiceAccounts {
    store: Arc<dyn Store>,
    keys: Arc<ApiKeys>,
}

impl ServiceAccounts {
    pub fn new(store: Arc<dyn Store>, keys: Arc<ApiKeys>) -> Self {
        Self { store, keys }
    }

    pub async fn create(
        &self,
        caller: &Principal,
        org_id: i64,
        name: &str,
        role: &str,
        now: OffsetDateTime,
    ) -> DomainResult<ServiceAccountRecord> {
        check_admin(caller, org_id)?;
        let name = Name::parse("name", name, false)?;
        let role = Role::parse(role)?;
        if self.store.org(org_id).await?.is_none() {
            return Err(DomainError::NotFound("org"));
        }
        if self.store.service_accounts_in(org_id).await?.len() >= MAX_PER_ORG {
            return Err(DomainError::Conflict(format!(
                "an org may have at most {MAX_PER_ORG} service accounts"
            )));
        }
        let audit = NewAuditEvent::new("service_account.created", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({ "name": name.as_str(), "role": role.as_str() }));
        let user = self
            .store
            .create_user(
                NewUser::service_account(name, org_id, role, to_millis(now)),
                &audit,
            )
            .await?;
        self.find(org_id, &user.uuid).await
    }

    pub async fn list(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<ServiceAccountRecord>> {
        check_admin(caller, org_id)?;
        Ok(self.store.service_accounts_in(org_id).await?)
    }

    pub async fn get(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
    ) -> DomainResult<ServiceAccountRecord> {
        check_admin(caller, org_id)?;
        self.find(org_id, id).await
    }

    /// Renames, changes the role, or disables (every key stops at once) or enables it again.
    pub async fn update(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        patch: ServiceAccountPatch,
        now: OffsetDateTime,
    ) -> DomainResult<ServiceAccountRecord> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        // Everything is checked before anything is written.
        let name = patch
            .name
            .as_deref()
            .map(|n| Name::parse("name", n, false))
            .transpose()?;
        let role = patch.role.as_deref().map(Role::parse).transpose()?;
        let audit = NewAuditEvent::new("service_account.updated", now)
            .by(caller)
            .org(org_id)
            .subject_user(account.user_id)
            .subject(account.uuid.clone())
            .details(serde_json::json!({
                "name": name.as_ref().map(Name::as_str),
                "role": role.map(Role::as_str),
                "isActive": patch.is_active,
            }));
        if name.is_some() || patch.is_active.is_some() {
            let user_patch = UserPatch {
                first: name.map(Name::into_string),
                is_active: patch.is_active,
                ..UserPatch::default()
            };
            self.store
                .update_user(account.user_id, &user_patch, to_millis(now), &audit)
                .await?;
        }
        if let Some(role) = role {
            let member_patch = MembershipPatch {
                role: Some(role),
                is_active: None,
            };
            self.store
                .update_membership(
                    org_id,
                    account.user_id,
                    &member_patch,
                    to_millis(now),
                    &audit,
                )
                .await?;
        }
        self.find(org_id, id).await
    }

    /// Deletes it and all its keys.
    pub async fn delete(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        if account.user_id == caller.user_id {
            return Err(DomainError::Conflict(
                "a service account cannot delete itself".into(),
            ));
        }
        let audit = NewAuditEvent::new("service_account.deleted", now)
            .by(caller)
            .org(org_id)
            .subject_user(account.user_id)
            .subject(account.uuid.clone())
            .details(serde_json::json!({ "name": account.name }));
        if self
            .store
            .delete_service_account(account.user_id, org_id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("service account"))
        }
    }

    pub async fn add_key(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        request: KeyRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, String)> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        self.keys
            .create(caller, (account.user_id, org_id), request, now)
            .await
    }

    pub async fn keys(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
    ) -> DomainResult<Vec<ApiKeyRecord>> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        self.keys.keys_of(account.user_id, org_id).await
    }

    pub async fn rotate_key(
        &self,
        caller: &Principal,
        org_id: i64,
        (id, key_id): (&str, &str),
        request: RotateRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, ApiKeyRecord, String)> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        self.keys
            .rotate_of(caller, (account.user_id, org_id), key_id, request, now)
            .await
    }

    /// Deletes one of its keys (any of the org's keys also goes through the org's key list).
    pub async fn delete_key(
        &self,
        caller: &Principal,
        org_id: i64,
        (id, key_id): (&str, &str),
        now: OffsetDateTime,
    ) -> DomainResult<ApiKeyRecord> {
        check_admin(caller, org_id)?;
        let account = self.find(org_id, id).await?;
        self.keys
            .delete_of(caller, (account.user_id, org_id), key_id, now)
            .await
    }

    async fn find(&self, org_id: i64, id: &str) -> DomainResult<ServiceAccountRecord> {
        self.store
            .service_account(org_id, id)
            .await?
            .ok_or(DomainError::NotFound("service account"))
    }
}

fn check_admin(caller: &Principal, org_id: i64) -> DomainResult<()> {
    if caller.administers_org(org_id) {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}
