//! API keys ("auth headers", seed 004): long-lived credentials for static integrations. A key
//! acts as its owner (a person, or a service account of the org) in the org it was made in,
//! with the owner's current role narrowed by the key's scopes (`scopes`), and stops working the
//! moment it is deleted, expires, or its owner or membership is deactivated. A rotation makes a
//! successor and lets the old key live on for an overlap the caller chooses.
//!
//! A key is `cak_` + 256 bits from the OS, shown once and stored only as its SHA-256 (a fast
//! hash is right for high-entropy secrets: there is nothing to brute-force). Lookups go through
//! a unique index on the hash, so checking a key costs one indexed read, like a session.

pub use crate::store::records::{ApiKeyContext, ApiKeyRecord, NewApiKey};

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::org::Name;
use super::origin::RequestOrigin;
use super::scopes::Scopes;
use super::session::{AuthMethod, Principal};
use crate::cache::CachedReads;
use crate::store::Store;

/// Every key starts with this, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "cak_";
pub const MAX_KEYS_PER_USER: i64 = 50;
const MAX_NAME_CHARS: usize = 100;
/// Characters of the key kept for display (`cak_` + 8).
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;

/// Which key to delete: the full key (as the seed's `{text}`) or its public id.
#[derive(Debug)]
pub enum KeySelector {
    FullKey(String),
    Id(String),
}

/// What a caller asked for when creating a key.
#[derive(Debug, Default)]
pub struct KeyRequest {
    pub name: String,
    /// Unix epoch milliseconds; must be in the future.
    pub expires_at: Option<i64>,
    /// Scope names; none given: the caller's own (every scope, for a session).
    pub scopes: Option<Vec<String>>,
    /// The seed-era form of `scopes: ["read"]`.
    pub read_only: bool,
}

/// What a caller asked for when rotating a key.
#[derive(Debug, Default)]
pub struct RotateRequest {
    /// How long the old key keeps working: default `DEFAULT_OVERLAP_SECS`, at most
    /// `MAX_OVERLAP_SECS`; 0 ends it at once.
    pub overlap_secs: Option<u64>,
    /// The new key's expiry (epoch ms); none given: as long a life as the old key was given.
    pub expires_at: Option<i64>,
}

pub const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;
pub const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

/// Where a key stands, as lists show it.
pub fn key_state(key: &ApiKeyRecord, now_ms: i64) -> &'static str {
    if key.expires_at.is_some_and(|at| at <= now_ms) {
        "expired"
    } else if key.replaced_by.is_some() {
        "rotating"
    } else {
        "active"
    }
}

pub fn hash_key(full_key: &str) -> Vec<u8> {
    Sha256::digest(full_key.as_bytes()).to_vec()
}

pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

fn generate_key() -> DomainResult<String> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(DomainError::internal)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ))
}

/// When each key was last used, kept in memory and written in batches (`ApiKeys::flush_usage`),
/// so validating a key never waits on a database write.
#[derive(Default)]
pub struct KeyUsage {
    /// The address stays an `IpAddr` until written: recording a use allocates nothing.
    pending: Mutex<HashMap<i64, (i64, Option<IpAddr>)>>,
}

impl KeyUsage {
    fn record(&self, key_id: i64, at: i64, address: Option<IpAddr>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(key_id, (at, address));
        }
    }

    fn pending_for(&self, key_id: i64) -> Option<(i64, Option<String>)> {
        let (at, address) = *self.pending.lock().ok()?.get(&key_id)?;
        Some((at, address.map(|a| a.to_string())))
    }

    fn take(&self) -> Vec<(i64, i64, Option<String>)> {
        match self.pending.lock() {
            Ok(mut pending) => pending
                .drain()
                .map(|(id, (at, address))| (id, at, address.map(|a| a.to_string())))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

pub struct ApiKeys {
    store: Arc<dyn Store>,
    /// Key look-ups, through the session cache.
    reads: Arc<CachedReads>,
    usage: KeyUsage,
    /// (key, address) pairs already known to be recorded, so only a first sighting costs a write.
    seen_addresses: Mutex<HashSet<(i64, IpAddr)>>,
}

/// A fresh key of `owner` (user id, org id), not yet stored, and its full text.
fn new_key(
    (owner, org_id): (i64, i64),
    name: String,
    scopes: Scopes,
    now_ms: i64,
) -> DomainResult<(String, NewApiKey)> {
    let full_key = generate_key()?;
    let new = NewApiKey {
        public_id: uuid::Uuid::new_v4().to_string(),
        user_id: owner,
        org_id,
        name,
        prefix: full_key.chars().take(SHOWN_CHARS).collect(),
        key_hash: hash_key(&full_key),
        scopes: scopes.to_stored(),
        created_at: now_ms,
        expires_at: None,
    };
    Ok((full_key, new))
}

/// The scopes a new key gets: those asked for (or `read` for `readOnly`), else the caller's
/// own; never more than the caller's.
fn requested_scopes(caller: &Principal, request: &KeyRequest) -> DomainResult<Scopes> {
    let scopes = match &request.scopes {
        Some(names) => Scopes::parse(names)?,
        None if request.read_only => Scopes::READ,
        None => caller.scopes,
    };
    if request.read_only && !scopes.read_only() {
        return Err(DomainError::invalid(
            "readOnly keys take only read scopes: drop readOnly or the write scopes",
        ));
    }
    if !scopes.within(caller.scopes) {
        return Err(DomainError::ForbiddenBecause(
            "a key can only make keys within its own scopes".into(),
        ));
    }
    Ok(scopes)
}

/// A new key's expiry: in the future, and, for a key made by a key, never past the maker's (a
/// leaked key must not outlast its own expiry through a child).
fn bounded_expiry(
    caller: &Principal,
    wanted: Option<i64>,
    now_ms: i64,
) -> DomainResult<Option<i64>> {
    if wanted.is_some_and(|at| at <= now_ms) {
        return Err(DomainError::invalid("expiresAt must be in the future"));
    }
    match (wanted, caller.key_expires_at) {
        (Some(at), Some(limit)) if at > limit => Err(DomainError::invalid(
            "a key cannot make a key that outlives it: expiresAt must be before your key's",
        )),
        (None, Some(limit)) => Ok(Some(limit)),
        (wanted, _) => Ok(wanted),
    }
}

/// Past this many remembered (key, address) pairs the memory is cleared and rebuilt from use.
const MAX_SEEN_ADDRESSES: usize = 100_000;

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>, reads: Arc<CachedReads>) -> Self {
        Self {
            store,
            reads,
            usage: KeyUsage::default(),
            seen_addresses: Mutex::new(HashSet::new()),
        }
    }

    /// The caller behind a key, as the owner is now.
    pub async fn authenticate(
        &self,
        full_key: &str,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Principal> {
        let ctx = self
            .reads
            .api_key_context(&hash_key(full_key))
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let now_ms = to_millis(now);
        let expired = ctx.key.expires_at.is_some_and(|at| at <= now_ms);
        if expired || !ctx.user_active || !ctx.membership_active {
            return Err(DomainError::Unauthenticated);
        }
        self.usage.record(ctx.key.id, now_ms, origin.address);
        if let Some(address) = origin.address {
            self.note_address(&ctx.key, address, &origin, now).await?;
        }
        Ok(Principal {
            user_id: ctx.key.user_id,
            user_uuid: ctx.user_uuid,
            org_id: ctx.key.org_id,
            role: ctx.role,
            // A key acts in its org only: platform power is for sessions opened with the
            // platform admin's own password (`SessionRecord::grants_platform_power`), and a key
            // made in any other session must not carry what that session lacked.
            is_platform_admin: false,
            method: AuthMethod::ApiKey,
            session: None,
            scopes: Scopes::from_stored(&ctx.key.scopes),
            key_expires_at: ctx.key.expires_at,
            origin,
            token: None,
        })
    }

    /// The first use of a key from an address is an audit event.
    async fn note_address(
        &self,
        key: &ApiKeyRecord,
        address: IpAddr,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let pair = (key.id, address);
        let known = self
            .seen_addresses
            .lock()
            .map(|seen| seen.contains(&pair))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let audit = NewAuditEvent::new("apikey.new_address", now)
            .from(origin)
            .org(key.org_id)
            .actor(key.user_id)
            .subject_user(key.user_id)
            .subject(key.public_id.clone())
            .details(serde_json::json!({ "name": key.name }));
        self.store
            .note_api_key_address(key.id, &address.to_string(), to_millis(now), &audit)
            .await?;
        if let Ok(mut seen) = self.seen_addresses.lock() {
            if seen.len() >= MAX_SEEN_ADDRESSES {
                seen.clear();
            }
            seen.insert(pair);
        }
        Ok(())
    }

    /// A new key for the caller in the caller's org; the full key is returned this once.
    pub async fn add(
        &self,
        caller: &Principal,
        request: KeyRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, String)> {
        self.create(caller, (caller.user_id, caller.org_id), request, now)
            .await
    }

    /// A new key of `owner` (a user id, in org id) made by `caller`, who may make it: the
    /// owner themself, or an admin for a service account of the org (`ServiceAccounts`).
    pub(super) async fn create(
        &self,
        caller: &Principal,
        (owner, org_id): (i64, i64),
        request: KeyRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, String)> {
        let name = Name::parse("name", &request.name, false)?;
        if name.as_str().chars().count() > MAX_NAME_CHARS {
            return Err(DomainError::invalid(format!(
                "name must be at most {MAX_NAME_CHARS} characters"
            )));
        }
        let scopes = requested_scopes(caller, &request)?;
        let now_ms = to_millis(now);
        let expires_at = bounded_expiry(caller, request.expires_at, now_ms)?;
        let (full_key, new) = new_key((owner, org_id), name.into_string(), scopes, now_ms)?;
        let new = NewApiKey { expires_at, ..new };
        let audit = NewAuditEvent::new("apikey.added", now)
            .by(caller)
            .org(org_id)
            .subject_user(owner)
            .subject(new.public_id.clone())
            .details(serde_json::json!({
                "name": new.name,
                "scopes": scopes.names(),
                "expiresAt": expires_at,
            }));
        let record = self
            .store
            .create_api_key(new, MAX_KEYS_PER_USER, &audit)
            .await?;
        Ok((record, full_key))
    }

    /// Replaces one of the caller's keys (by public id) with a new one; the old one keeps
    /// working until the overlap ends.
    pub async fn rotate(
        &self,
        caller: &Principal,
        id: &str,
        request: RotateRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, ApiKeyRecord, String)> {
        self.rotate_of(caller, (caller.user_id, caller.org_id), id, request, now)
            .await
    }

    /// `rotate` for a key of `owner` (user id, org id), whom `caller` may act for.
    pub(super) async fn rotate_of(
        &self,
        caller: &Principal,
        (owner, org_id): (i64, i64),
        id: &str,
        request: RotateRequest,
        now: OffsetDateTime,
    ) -> DomainResult<(ApiKeyRecord, ApiKeyRecord, String)> {
        let overlap = request.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
        if overlap > MAX_OVERLAP_SECS {
            return Err(DomainError::invalid(format!(
                "overlapSeconds must be at most {MAX_OVERLAP_SECS} (7 days)"
            )));
        }
        let now_ms = to_millis(now);
        let old = self
            .store
            .api_keys_of(owner, org_id)
            .await?
            .into_iter()
            .find(|key| key.public_id == id)
            .ok_or(DomainError::NotFound("API key"))?;
        let scopes = Scopes::from_stored(&old.scopes);
        // A new secret for a key is that key's power: a key may only renew what it could make.
        if !scopes.within(caller.scopes) {
            return Err(DomainError::ForbiddenBecause(
                "this key has scopes yours lacks: rotate it with a session or a broader key".into(),
            ));
        }
        let lifetime = old.expires_at.map(|at| at - old.created_at);
        let wanted = request
            .expires_at
            .or_else(|| lifetime.map(|life| now_ms + life));
        let expires_at = bounded_expiry(caller, wanted, now_ms)?;
        let (full_key, new) = new_key((owner, org_id), old.name.clone(), scopes, now_ms)?;
        let new = NewApiKey { expires_at, ..new };
        let overlap_ends = now_ms + i64::try_from(overlap * 1000).unwrap_or(i64::MAX);
        let audit = NewAuditEvent::new("apikey.rotated", now)
            .by(caller)
            .org(org_id)
            .subject_user(owner)
            .subject(old.public_id.clone())
            .details(serde_json::json!({
                "name": old.name,
                "replacedBy": new.public_id,
                "overlapEndsAt": overlap_ends,
            }));
        let (old, new) = self
            .store
            .rotate_api_key(&old.public_id, owner, org_id, new, overlap_ends, &audit)
            .await?
            .ok_or(DomainError::NotFound("API key"))?;
        Ok((old, new, full_key))
    }

    /// The caller's keys in the caller's org.
    pub async fn list(&self, caller: &Principal) -> DomainResult<Vec<ApiKeyRecord>> {
        let keys = self
            .store
            .api_keys_of(caller.user_id, caller.org_id)
            .await?;
        Ok(self.with_usage(keys))
    }

    /// Deletes one of the caller's own keys in the caller's org. Anything else — someone else's
    /// key, an unknown one — is "not found", so deleting is no way to learn a key exists.
    pub async fn delete(
        &self,
        caller: &Principal,
        which: KeySelector,
        now: OffsetDateTime,
    ) -> DomainResult<ApiKeyRecord> {
        let audit = NewAuditEvent::new("apikey.deleted", now).by(caller);
        let (user, org) = (caller.user_id, caller.org_id);
        let deleted = match which {
            KeySelector::FullKey(key) => {
                match self
                    .store
                    .delete_api_key_by_hash(&hash_key(&key), user, org, &audit)
                    .await?
                {
                    Some(deleted) => Some(deleted),
                    None => self.delete_listed(caller, &key, &audit).await?,
                }
            }
            KeySelector::Id(id) => {
                self.store
                    .delete_api_key(&id, Some(user), org, &audit)
                    .await?
            }
        };
        deleted.ok_or(DomainError::NotFound("API key"))
    }

    /// Deletes the caller's key whose listed `token` (its first characters, which
    /// `/authheader/list` shows) is `shown`: a client written from seed 004 lists, then deletes
    /// with what the list gave it. Not a secret, so compared plainly; several keys starting
    /// alike are a conflict (delete by `id` then).
    async fn delete_listed(
        &self,
        caller: &Principal,
        shown: &str,
        audit: &NewAuditEvent,
    ) -> DomainResult<Option<ApiKeyRecord>> {
        if shown.chars().count() != SHOWN_CHARS {
            return Ok(None);
        }
        let keys = self
            .store
            .api_keys_of(caller.user_id, caller.org_id)
            .await?;
        let named: Vec<&ApiKeyRecord> = keys.iter().filter(|k| k.prefix == shown).collect();
        match named.as_slice() {
            [] => Ok(None),
            [key] => Ok(self
                .store
                .delete_api_key(&key.public_id, Some(caller.user_id), caller.org_id, audit)
                .await?),
            _ => Err(DomainError::Conflict(
                "several of your keys start with this token: delete by `id`".into(),
            )),
        }
    }

    /// The keys of `owner` in `org_id`, for whoever may see them (`ServiceAccounts`).
    pub(super) async fn keys_of(&self, owner: i64, org_id: i64) -> DomainResult<Vec<ApiKeyRecord>> {
        let keys = self.store.api_keys_of(owner, org_id).await?;
        Ok(self.with_usage(keys))
    }

    /// Deletes a key of `owner` in `org_id` by its public id, for whoever may.
    pub(super) async fn delete_of(
        &self,
        caller: &Principal,
        (owner, org_id): (i64, i64),
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<ApiKeyRecord> {
        let audit = NewAuditEvent::new("apikey.deleted", now)
            .by(caller)
            .org(org_id);
        self.store
            .delete_api_key(id, Some(owner), org_id, &audit)
            .await?
            .ok_or(DomainError::NotFound("API key"))
    }

    /// Every key of an org's members (org admins and platform admins).
    pub async fn list_in_org(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<ApiKeyRecord>> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let keys = self.store.api_keys_in_org(org_id).await?;
        Ok(self.with_usage(keys))
    }

    pub async fn delete_in_org(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<ApiKeyRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("apikey.deleted", now)
            .by(caller)
            .org(org_id);
        self.store
            .delete_api_key(id, None, org_id, &audit)
            .await?
            .ok_or(DomainError::NotFound("API key"))
    }

    /// Writes the usage seen since the last flush.
    pub async fn flush_usage(&self) -> DomainResult<()> {
        let batch = self.usage.take();
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.store.record_api_key_usage(&batch).await?)
    }

    fn with_usage(&self, mut keys: Vec<ApiKeyRecord>) -> Vec<ApiKeyRecord> {
        for key in &mut keys {
            if let Some((at, address)) = self.usage.pending_for(key.id)
                && key.last_used_at.is_none_or(|stored| stored < at)
            {
                key.last_used_at = Some(at);
                key.last_used_address = address;
            }
        }
        keys
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_carry_256_random_bits() {
        let key = generate_key().unwrap();
        assert!(key.starts_with("cak_"));
        let body = URL_SAFE_NO_PAD.decode(&key[4..]).unwrap();
        assert_eq!(body.len(), 32);
        assert_ne!(key, generate_key().unwrap());
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_whole_key() {
        let hash = hash_key("cak_abc");
        assert_eq!(hash.len(), 32);
        assert_eq!(hash, Sha256::digest(b"cak_abc").to_vec());
    }

    #[test]
    fn usage_keeps_the_latest_use_until_taken() {
        let usage = KeyUsage::default();
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        usage.record(1, 10, ip("10.0.0.1"));
        usage.record(1, 20, ip("10.0.0.2"));
        assert_eq!(usage.pending_for(1), Some((20, Some("10.0.0.2".into()))));
        assert_eq!(usage.take(), vec![(1, 20, Some("10.0.0.2".into()))]);
        assert!(usage.take().is_empty());
    }
}
