//! A memory of session tokens whose signature, header, issuer and audience were already checked,
//! so a client sending the same token on every call pays for one Ed25519 verification, not one
//! per request. Only the parts of a token that cannot change are remembered: expiry is checked
//! against the request's time on every call, and the session behind the token is read (or taken
//! from the session cache) on every call as before.
//!
//! A token is found only by its whole text, compared in full, so a token differing in any byte
//! from a checked one is checked afresh. Memory stays bounded with two generations: when the
//! current one is full it becomes the previous one and the older previous is dropped, so tokens
//! in use stay found and forgotten ones age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::tokens::SessionClaims;

/// Tokens per generation.
pub const DEFAULT_CAPACITY: usize = 16_384;

pub struct VerifiedTokens {
    capacity: usize,
    generations: Mutex<Generations>,
}

/// Keys are whole tokens (~500 bytes): foldhash, seeded per process, hashes one in a fraction
/// of SipHash's time. Its weaker flooding resistance is enough here because only tokens that
/// passed the signature check are inserted; anyone else's text is only looked up.
type Tokens = HashMap<Box<str>, Arc<SessionClaims>, foldhash::fast::RandomState>;

#[derive(Default)]
struct Generations {
    current: Tokens,
    previous: Tokens,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::new(Generations::default()),
        }
    }

    /// The claims of `token` if it was verified before (shared: a hit copies no text).
    pub fn get(&self, token: &str) -> Option<Arc<SessionClaims>> {
        let generations = self.generations.lock().ok()?;
        generations
            .current
            .get(token)
            .or_else(|| generations.previous.get(token))
            .cloned()
    }

    /// Remembers a token that passed every check but expiry.
    pub fn insert(&self, token: &str, claims: &Arc<SessionClaims>) {
        let Ok(mut generations) = self.generations.lock() else {
            return;
        };
        if generations.current.len() >= self.capacity {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.current.insert(token.into(), claims.clone());
    }

    /// Tokens remembered, both generations.
    pub fn len(&self) -> usize {
        self.generations
            .lock()
            .map_or(0, |g| g.current.len() + g.previous.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sid: &str) -> Arc<SessionClaims> {
        Arc::new(SessionClaims {
            iss: "coreauth".into(),
            aud: "coreauth".into(),
            sub: "u".into(),
            uid: 1,
            org: 1,
            role: "member".into(),
            sid: sid.into(),
            iat: 0,
            exp: 900,
            jti: "j".into(),
        })
    }

    #[test]
    fn only_the_exact_token_is_found() {
        let memo = VerifiedTokens::new(8);
        memo.insert("a.b.c", &claims("s1"));
        assert_eq!(memo.get("a.b.c").map(|c| c.sid.clone()), Some("s1".into()));
        assert!(memo.get("a.b.d").is_none());
        assert!(memo.get("a.b.").is_none());
    }

    #[test]
    fn memory_is_bounded_by_two_generations() {
        let memo = VerifiedTokens::new(2);
        for n in 0..10 {
            memo.insert(&format!("t{n}"), &claims("s"));
            assert!(memo.len() <= 4);
        }
        // The newest are still found, the oldest are gone.
        assert!(memo.get("t9").is_some());
        assert!(memo.get("t8").is_some());
        assert!(memo.get("t0").is_none());
    }
}
