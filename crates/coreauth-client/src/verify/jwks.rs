//! The verifying keys of a coreauth server, fetched from `/.well-known/jwks.json` and cached.
//! A token naming a `kid` not in the cache triggers a refetch (a key rotation), but at most one
//! fetch per `refetch_interval`, so a flood of tokens with made-up `kid`s costs coreauth nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::VerifyError;
use crate::clock::Clock;
use crate::wire;

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// When the last successful fetch completed (client clock, epoch ms).
    fetched_at: Option<i64>,
}

pub(crate) struct Jwks {
    url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    refetch_interval: i64,
    max_age: i64,
    current: RwLock<Arc<KeySet>>,
    /// One fetch at a time; holds when the last one was tried (epoch ms).
    fetching: Mutex<Option<i64>>,
    fetches: AtomicU64,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
}

impl Jwks {
    pub(crate) fn new(
        server: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Self {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            url: format!("{server}/.well-known/jwks.json"),
            http,
            clock,
            refetch_interval: millis(refetch_interval),
            max_age: millis(max_age),
            current: RwLock::new(Arc::new(KeySet::default())),
            fetching: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key named `kid`, fetching the set when it is unknown or the cache is old.
    pub(crate) async fn key(&self, kid: &str) -> Result<DecodingKey, VerifyError> {
        let fresh = |set: &KeySet, now: i64| {
            set.fetched_at
                .is_some_and(|at| now.saturating_sub(at) < self.max_age)
        };
        let set = self.snapshot();
        if let Some(key) = set.keys.get(kid)
            && fresh(&set, self.clock.now_millis())
        {
            return Ok(key.clone());
        }
        let mut last_try = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let set = self.snapshot();
        let now = self.clock.now_millis();
        if let Some(key) = set.keys.get(kid)
            && fresh(&set, now)
        {
            return Ok(key.clone());
        }
        let recently = last_try.is_some_and(|at| now.saturating_sub(at) < self.refetch_interval);
        if !recently {
            *last_try = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    let fetched = Arc::new(KeySet {
                        keys,
                        fetched_at: Some(self.clock.now_millis()),
                    });
                    match self.current.write() {
                        Ok(mut current) => *current = fetched.clone(),
                        Err(poisoned) => *poisoned.into_inner() = fetched.clone(),
                    }
                    return fetched
                        .keys
                        .get(kid)
                        .cloned()
                        .ok_or(VerifyError::Unauthenticated("no key has this kid"));
                }
                Err(e) => tracing::warn!("fetching coreauth's JWKS failed: {e}"),
            }
        }
        // No new set: an old key still verifies; with no keys at all nothing can be checked.
        let set = self.snapshot();
        match set.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if set.fetched_at.is_none() => Err(VerifyError::Unavailable(
                "coreauth's signing keys could not be fetched".into(),
            )),
            None => Err(VerifyError::Unauthenticated("no key has this kid")),
        }
    }

    async fn fetch(&self) -> crate::Result<HashMap<String, DecodingKey>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self.http.get(&self.url).send().await?;
        let set: JwkSet = wire::answer(response).await?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|jwk| {
                // Only what coreauth signs with: Ed25519 signature keys for EdDSA.
                let usable = jwk.kty == "OKP"
                    && jwk.crv.as_deref() == Some("Ed25519")
                    && jwk.alg.as_deref().is_none_or(|alg| alg == "EdDSA")
                    && jwk.usage.as_deref().is_none_or(|usage| usage == "sig");
                if !usable {
                    return None;
                }
                let key = DecodingKey::from_ed_components(jwk.x.as_deref()?).ok()?;
                Some((jwk.kid?, key))
            })
            .collect())
    }
}
