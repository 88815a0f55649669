//! SCIM 2.0 provisioning (RFC 7643/7644): an org's directory (Entra ID, Okta) adds, changes and
//! removes the org's people and groups, authenticated by a bearer token of the org.
//!
//! - `mod.rs`: the service, its tokens, and the groups → role table admins set;
//! - `users.rs`, `groups.rs`: the resources' operations; `resources.rs`: their JSON;
//! - `filter.rs`, `patch.rs`: filters and PATCH, on resources as shown;
//! - `schemas.rs`: the attributes, and the discovery documents;
//! - `error.rs`: SCIM's error statuses and `scimType`s.
//!
//! A token reaches only its own org: every read and write below is keyed by the token's org.

mod error;
mod filter;
mod groups;
mod patch;
mod resources;
pub mod schemas;
mod users;

pub use error::{ScimError, ScimResult};

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::org::{Name, Role};
use super::origin::RequestOrigin;
use super::session::Principal;
use crate::store::Store;
use crate::store::records::{GroupRoles, NewScimToken, ScimTokenRecord};

/// Every SCIM token starts with this, so a leaked one is recognised (and never taken for an API
/// key or a session token).
pub const TOKEN_PREFIX: &str = "scim_";

/// At most this many tokens per org: a directory needs one, a rotation two.
const MAX_TOKENS: usize = 10;
/// At most this many rows in an org's groups → role table.
const MAX_GROUP_ROLES: usize = 200;

/// A directory's request: the org its token belongs to, which token, and from where.
#[derive(Debug, Clone)]
pub struct ScimCaller {
    pub org_id: i64,
    pub token_id: String,
    pub origin: RequestOrigin,
}

impl ScimCaller {
    /// An audit event of this caller: in its org, naming the token that made the change.
    fn audit(&self, event: &str, now: OffsetDateTime, mut details: Value) -> NewAuditEvent {
        if let Value::Object(details) = &mut details {
            details.insert("scimToken".into(), self.token_id.clone().into());
        }
        NewAuditEvent::new(event, now)
            .org(self.org_id)
            .from(&self.origin)
            .client(Some("scim"))
            .details(details)
    }
}

/// A list request's query (RFC 7644 §3.4.2).
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded_attributes: Vec<String>,
}

impl ListQuery {
    /// The page asked for: its first index (1-based) and size.
    fn page(&self) -> (usize, usize) {
        let start = self.start_index.unwrap_or(1).max(1);
        let count = self.count.unwrap_or(100).clamp(0, schemas::MAX_PAGE as i64);
        (
            usize::try_from(start).unwrap_or(1),
            usize::try_from(count).unwrap_or(0),
        )
    }
}

/// What one resource's read or write shows: which attributes.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded_attributes: Vec<String>,
}

impl Projection {
    fn shows(&self, attribute: &str) -> bool {
        let named = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(attribute));
        (self.attributes.is_empty() || named(&self.attributes)) && !named(&self.excluded_attributes)
    }

    fn apply(&self, resource: &mut Value) {
        resources::project(resource, &self.attributes, &self.excluded_attributes);
    }
}

pub struct Scim {
    store: Arc<dyn Store>,
    /// Where the service is reached: `<public URL>/scim/v2`, for `meta.location`.
    base: String,
}

impl Scim {
    pub fn new(store: Arc<dyn Store>, public_url: &str) -> Self {
        Self {
            store,
            base: format!("{}/scim/v2", public_url.trim_end_matches('/')),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The caller a bearer token makes, or 401.
    pub async fn authenticate(
        &self,
        token: &str,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> ScimResult<ScimCaller> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Err(ScimError::unauthorized());
        }
        let found = self
            .store
            .use_scim_token(&hash_token(token), to_millis(now))
            .await?;
        let token = found.ok_or_else(ScimError::unauthorized)?;
        Ok(ScimCaller {
            org_id: token.org_id,
            token_id: token.public_id,
            origin,
        })
    }

    /// A new token for the org's directory, shown this once.
    pub async fn create_token(
        &self,
        caller: &Principal,
        org_id: i64,
        name: &str,
        now: OffsetDateTime,
    ) -> DomainResult<(ScimTokenRecord, String)> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let name = Name::parse("name", name, false)?;
        if self.store.scim_tokens(org_id).await?.len() >= MAX_TOKENS {
            return Err(DomainError::Conflict(format!(
                "an org has at most {MAX_TOKENS} SCIM tokens; revoke one first"
            )));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_text(32)?);
        let public_id = random_text(12)?;
        let audit = NewAuditEvent::new("scim.token.created", now)
            .by(caller)
            .org(org_id)
            .subject(public_id.clone())
            .details(serde_json::json!({ "name": name.as_str() }));
        let record = self
            .store
            .create_scim_token(
                &NewScimToken {
                    public_id,
                    org_id,
                    name: name.into_string(),
                    token_hash: hash_token(&token),
                    created_by: Some(caller.user_id),
                    created_at: to_millis(now),
                },
                &audit,
            )
            .await?;
        Ok((record, token))
    }

    pub async fn tokens(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<ScimTokenRecord>> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        Ok(self.store.scim_tokens(org_id).await?)
    }

    /// Revokes a token: the directory's next request with it is refused.
    pub async fn revoke_token(
        &self,
        caller: &Principal,
        org_id: i64,
        token_id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("scim.token.revoked", now)
            .by(caller)
            .org(org_id)
            .subject(token_id);
        if self
            .store
            .delete_scim_token(org_id, token_id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("SCIM token"))
        }
    }

    pub async fn group_roles(&self, caller: &Principal, org_id: i64) -> DomainResult<GroupRoles> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        Ok(self.store.group_roles(org_id).await?)
    }

    /// Replaces the org's groups → role table; the members of the directory's groups get the
    /// roles it gives at once.
    pub async fn set_group_roles(
        &self,
        caller: &Principal,
        org_id: i64,
        table: &BTreeMap<String, String>,
        now: OffsetDateTime,
    ) -> DomainResult<GroupRoles> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        if table.len() > MAX_GROUP_ROLES {
            return Err(DomainError::invalid(format!(
                "at most {MAX_GROUP_ROLES} groups"
            )));
        }
        let roles = table
            .iter()
            .map(|(group, role)| {
                let name = group.trim();
                if name.is_empty()
                    || name.chars().count() > 256
                    || name.chars().any(char::is_control)
                {
                    return Err(DomainError::invalid("group names are 1-256 characters"));
                }
                Ok((name.to_owned(), Role::parse(role)?))
            })
            .collect::<DomainResult<GroupRoles>>()?;
        let audit = NewAuditEvent::new("group_roles.updated", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({
                "groups": roles.iter().map(|(g, r)| (g.clone(), r.as_str())).collect::<BTreeMap<_, _>>(),
            }));
        self.store.set_group_roles(org_id, &roles, &audit).await?;
        Ok(roles)
    }
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_text(bytes: usize) -> DomainResult<String> {
    let mut buffer = zeroize::Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(buffer.as_mut_slice()).map_err(DomainError::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(buffer.as_slice()))
}

/// One page of `resources`, as a list response.
fn page(resources: Vec<Value>, query: &ListQuery) -> Value {
    let (start, count) = query.page();
    let total = resources.len();
    let shown: Vec<Value> = resources.into_iter().skip(start - 1).take(count).collect();
    schemas::list_response(total, start, shown)
}
