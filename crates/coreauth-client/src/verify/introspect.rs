//! Online confirmation through `POST /token/introspect`: an offline check cannot see a logout
//! before the token expires; coreauth can. Answers are cached for a few seconds per token
//! (keyed by the token's SHA-256, so no token is kept), which bounds both the load on coreauth
//! and how long a revoked token is still let through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coreauth_proto as proto;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::VerifyError;
use crate::clock::Clock;
use crate::wire;

/// Past this many cached answers, stale ones are dropped; if that is not enough, all are.
const MAX_CACHED: usize = 10_000;

pub(crate) struct Introspection {
    url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    api_key: SecretString,
    ttl: i64,
    /// token hash → (active, answered at).
    cache: Mutex<HashMap<[u8; 32], (bool, i64)>>,
    calls: AtomicU64,
}

impl Introspection {
    pub(crate) fn new(
        server: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        api_key: SecretString,
        ttl: Duration,
    ) -> Self {
        Self {
            url: format!("{server}/token/introspect"),
            http,
            clock,
            api_key,
            ttl: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            cache: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether coreauth still honours `token` (from the cache when the answer is recent).
    pub(crate) async fn confirm(&self, token: &str) -> Result<(), VerifyError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now_millis();
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).copied())
            .filter(|(_, at)| now.saturating_sub(*at) < self.ttl);
        let active = match cached {
            Some((active, _)) => active,
            None => {
                let active = self.ask(token).await?.active;
                self.remember(key, active, self.clock.now_millis());
                active
            }
        };
        if active {
            Ok(())
        } else {
            Err(VerifyError::Unauthenticated(
                "coreauth no longer honours this token",
            ))
        }
    }

    async fn ask(&self, token: &str) -> Result<proto::IntrospectResponse, VerifyError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let body = proto::IntrospectRequest {
            token: proto::SecretText::new(token),
            token_type_hint: None,
        };
        let answer = async {
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(self.api_key.expose_secret())
                .json(&body)
                .send()
                .await?;
            wire::answer(response).await
        };
        answer.await.map_err(|e: crate::Error| {
            // Our own credential refused, or coreauth unreachable: nothing can be confirmed.
            tracing::warn!("token introspection failed: {e}");
            VerifyError::Unavailable("coreauth could not confirm the token".into())
        })
    }

    fn remember(&self, key: [u8; 32], active: bool, now: i64) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, at)| now.saturating_sub(*at) < self.ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (active, now));
    }
}
