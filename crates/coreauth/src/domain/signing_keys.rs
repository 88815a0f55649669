//! The life of the keys tokens are signed with: a new key is made every `rotate_every`,
//! published (JWKS) `publish_ahead` before it signs so that every verifier has fetched it first,
//! and retired once the last token the previous key signed has expired. Every instance runs
//! `maintain` every few seconds: the schedule is read from the database, so instances agree on
//! the signing key by the clock alone, and the first one due adds the next key for all.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::{from_millis, to_millis};
use super::error::{DomainError, DomainResult};
use super::tokens::{StoredSigningKey, TokenSigner};
use crate::store::Store;

/// How keys rotate.
#[derive(Debug, Clone, Copy)]
pub struct KeySchedule {
    /// A new key this long after the last one started signing (`COREAUTH_SIGNING_KEY_ROTATION`,
    /// 30 days); zero: only by hand.
    pub rotate_every: Duration,
    /// How long a new key is published before it signs (`COREAUTH_SIGNING_KEY_PUBLISH_AHEAD`,
    /// 24 hours).
    pub publish_ahead: Duration,
    /// The longest a token lives (session or integration): a key still verifies this long after
    /// it stopped signing, and is retired then.
    pub longest_token: Duration,
}

/// Tolerated clock difference between instances: a key stopped signing on a slow clock a little
/// later than on the reader's.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, signing later.
    Next,
    /// Signing now.
    Active,
    /// Verifying the tokens it signed until they expire.
    Previous,
    /// Neither published nor accepted; its private half is erased.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Previous => "previous",
            Self::Retired => "retired",
        }
    }
}

/// One key, as `coreauth admin signing-keys list` shows it.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub kid: String,
    pub state: KeyState,
    pub created_at: OffsetDateTime,
    pub activates_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

pub struct SigningKeys {
    store: Arc<dyn Store>,
    signer: Arc<TokenSigner>,
    schedule: KeySchedule,
}

impl SigningKeys {
    pub fn new(store: Arc<dyn Store>, signer: Arc<TokenSigner>, schedule: KeySchedule) -> Self {
        Self {
            store,
            signer,
            schedule,
        }
    }

    /// Every key, oldest first, with its state at `now`.
    pub async fn list(&self, now: OffsetDateTime) -> DomainResult<Vec<KeyView>> {
        let keys = self.store.signing_keys().await?;
        self.signer.reload(keys.clone())?;
        let active = self.signer.signing_kid(now);
        Ok(keys
            .iter()
            .map(|key| KeyView {
                kid: key.kid.clone(),
                state: if key.retired_at.is_some() {
                    KeyState::Retired
                } else if key.kid == active {
                    KeyState::Active
                } else if key.activates_at > to_millis(now) {
                    KeyState::Next
                } else {
                    KeyState::Previous
                },
                created_at: from_millis(key.created_at),
                activates_at: from_millis(key.activates_at),
                retired_at: key.retired_at.map(from_millis),
            })
            .collect())
    }

    /// A new key by hand, published now and signing `publish_ahead` from now. To replace a
    /// key at once (it leaked), rotate and then retire it: the new key signs from then on.
    pub async fn rotate(&self, now: OffsetDateTime) -> DomainResult<StoredSigningKey> {
        let key = self.next_key(now)?;
        self.store
            .add_signing_key(&key, None, &created(&key, now, "by hand"))
            .await?;
        self.refresh().await?;
        Ok(key)
    }

    /// Retires a key by hand: from the next `maintain` of each instance (seconds), tokens it
    /// signed are refused everywhere. The last key not retired cannot be retired.
    pub async fn retire(&self, kid: &str, now: OffsetDateTime) -> DomainResult<()> {
        let keys = self.store.signing_keys().await?;
        let live: Vec<&StoredSigningKey> = keys.iter().filter(|k| k.retired_at.is_none()).collect();
        if !live.iter().any(|k| k.kid == kid) {
            return Err(DomainError::NotFound("signing key"));
        }
        if live.len() == 1 {
            return Err(DomainError::Conflict(
                "the only signing key left: rotate first, then retire it".into(),
            ));
        }
        let audit = retired(kid, now, "by hand");
        self.store
            .retire_signing_key(kid, to_millis(now), &audit)
            .await?;
        self.refresh().await
    }

    /// What each instance does every few seconds: adds the next key when one is due, retires
    /// keys whose tokens have all expired, and takes in what the database holds.
    pub async fn maintain(&self, now: OffsetDateTime) -> DomainResult<()> {
        let at = to_millis(now);
        let keys = self.store.signing_keys().await?;
        let live: Vec<&StoredSigningKey> = keys.iter().filter(|k| k.retired_at.is_none()).collect();
        // Whether the keys read are out of date: this instance, or another, wrote since.
        let mut stale = false;
        if let Some(newest) = live.last()
            && !self.schedule.rotate_every.is_zero()
            && at
                >= newest.activates_at + millis(self.schedule.rotate_every)
                    - millis(self.schedule.publish_ahead)
        {
            let key = self.next_key(now)?;
            let audit = created(&key, now, "on schedule");
            stale = true;
            if self
                .store
                .add_signing_key(&key, Some(newest.activates_at), &audit)
                .await?
            {
                tracing::info!(kid = key.kid, "made the next signing key");
            }
        }
        // A key stopped signing when the next one activated; its tokens are gone once the
        // longest lifetime has passed since.
        let kept = millis(self.schedule.longest_token) + millis(CLOCK_SKEW);
        for pair in live.windows(2) {
            let (older, newer) = (pair[0], pair[1]);
            if at >= newer.activates_at + kept {
                let audit = retired(&older.kid, now, "on schedule");
                stale = true;
                if self
                    .store
                    .retire_signing_key(&older.kid, at, &audit)
                    .await?
                {
                    tracing::info!(kid = older.kid, "retired a signing key");
                }
            }
        }
        if stale {
            self.refresh().await
        } else {
            self.take_in(keys)
        }
    }

    /// Takes in the keys the database holds now.
    pub async fn refresh(&self) -> DomainResult<()> {
        self.take_in(self.store.signing_keys().await?)
    }

    fn take_in(&self, keys: Vec<StoredSigningKey>) -> DomainResult<()> {
        if self.signer.reload(keys)? {
            tracing::info!("signing keys changed");
        }
        Ok(())
    }

    fn next_key(&self, now: OffsetDateTime) -> DomainResult<StoredSigningKey> {
        let mut key = StoredSigningKey::generate(now)?;
        key.activates_at = to_millis(now) + millis(self.schedule.publish_ahead);
        Ok(key)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn created(key: &StoredSigningKey, now: OffsetDateTime, how: &str) -> NewAuditEvent {
    NewAuditEvent::new("signing_key.created", now)
        .subject(format!("signing_key:{}", key.kid))
        .details(serde_json::json!({ "activatesAt": key.activates_at, "how": how }))
}

fn retired(kid: &str, now: OffsetDateTime, how: &str) -> NewAuditEvent {
    NewAuditEvent::new("signing_key.retired", now)
        .subject(format!("signing_key:{kid}"))
        .details(serde_json::json!({ "how": how }))
}
