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
//!
//! A remembered token also keeps what the last request with it found in the session cache:
//! the session behind it and its member's profile, each with the cache's `Lease`. The next
//! request uses them while the cache says the lease holds, under the rules the cache's own
//! entries live by (TTL, nothing invalidated since), so it skips two look-ups whose memory is
//! seldom warm (bench/README.md) and decides nothing differently: every check of the session
//! is still made on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coreauth_proto::SessionClaims;

use super::{Lease, MemberProfile};
use crate::store::records::SessionContext;

/// A token that passed every check but expiry, and what was last found for it.
pub struct VerifiedToken {
    claims: SessionClaims,
    found: Mutex<Found>,
}

/// The claims and whether anything is remembered, not what: a profile holds the user record,
/// password hash included, and a `Principal` (which carries its token) must be safe to print.
impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (session, profile) = self.found.lock().map_or((false, false), |found| {
            (found.session.is_some(), found.profile.is_some())
        });
        f.debug_struct("VerifiedToken")
            .field("claims", &self.claims)
            .field("session_remembered", &session)
            .field("profile_remembered", &profile)
            .finish()
    }
}

#[derive(Default)]
struct Found {
    session: Option<(SessionContext, Lease)>,
    /// By the member it shows (user and org ids), so that checking it is for the caller
    /// reads no memory of the profile's own.
    profile: Option<((i64, i64), Arc<MemberProfile>, Lease)>,
}

impl VerifiedToken {
    pub fn new(claims: SessionClaims) -> Self {
        Self {
            claims,
            found: Mutex::default(),
        }
    }

    pub fn claims(&self) -> &SessionClaims {
        &self.claims
    }

    /// The session last found for this token, if its lease still `holds`.
    pub fn session(&self, holds: impl FnOnce(&Lease) -> bool) -> Option<SessionContext> {
        let (ctx, lease) = self.found.lock().ok()?.session.clone()?;
        holds(&lease).then_some(ctx)
    }

    /// Remembers the session found for this token, or forgets the last one when the cache
    /// gave no lease.
    pub fn found_session(&self, ctx: &SessionContext, lease: Option<Lease>) {
        if let Ok(mut found) = self.found.lock() {
            found.session = lease.map(|lease| (ctx.clone(), lease));
        }
    }

    /// The profile of `member` (user and org ids) last found for this token, if its lease
    /// still `holds`.
    pub fn profile(
        &self,
        member: (i64, i64),
        holds: impl FnOnce(&Lease) -> bool,
    ) -> Option<Arc<MemberProfile>> {
        let (shows, profile, lease) = self.found.lock().ok()?.profile.clone()?;
        (shows == member && holds(&lease)).then_some(profile)
    }

    /// Remembers the profile found for this token, as `found_session` does.
    pub fn found_profile(&self, profile: &Arc<MemberProfile>, lease: Option<Lease>) {
        if let Ok(mut found) = self.found.lock() {
            let member = (profile.user().id, profile.org().id);
            found.profile = lease.map(|lease| (member, profile.clone(), lease));
        }
    }
}

/// Tokens per generation.
pub const DEFAULT_CAPACITY: usize = 16_384;

pub struct VerifiedTokens {
    capacity: usize,
    generations: Mutex<Generations>,
}

/// Keys are whole tokens (~500 bytes): foldhash, seeded per process, hashes one in a fraction
/// of SipHash's time. Its weaker flooding resistance is enough here because only tokens that
/// passed the signature check are inserted; anyone else's text is only looked up.
type Tokens = HashMap<Box<str>, Arc<VerifiedToken>, foldhash::fast::RandomState>;

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

    /// `token` if it was verified before (shared: a hit copies no text).
    pub fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let generations = self.generations.lock().ok()?;
        generations
            .current
            .get(token)
            .or_else(|| generations.previous.get(token))
            .cloned()
    }

    /// Remembers a token that passed every check but expiry, with its claims.
    pub fn insert(&self, token: &str, claims: SessionClaims) -> Arc<VerifiedToken> {
        let verified = Arc::new(VerifiedToken::new(claims));
        if let Ok(mut generations) = self.generations.lock() {
            if generations.current.len() >= self.capacity {
                generations.previous = std::mem::take(&mut generations.current);
            }
            generations.current.insert(token.into(), verified.clone());
        }
        verified
    }

    /// Forgets every token (a signing key was retired).
    pub fn clear(&self) {
        if let Ok(mut generations) = self.generations.lock() {
            *generations = Generations::default();
        }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(sid: &str) -> SessionClaims {
        SessionClaims {
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
            scope: None,
            client_id: None,
        }
    }

    #[test]
    fn only_the_exact_token_is_found() {
        let memo = VerifiedTokens::new(8);
        memo.insert("a.b.c", claims("s1"));
        assert_eq!(
            memo.get("a.b.c").map(|t| t.claims().sid.clone()),
            Some("s1".into())
        );
        assert!(memo.get("a.b.d").is_none());
        assert!(memo.get("a.b.").is_none());
    }

    /// What was found for a token is given back only while the cache says its lease holds,
    /// and forgotten when a later look-up came without one.
    #[test]
    fn what_was_found_for_a_token_lasts_as_long_as_its_lease() {
        use crate::cache::SessionCache;
        use crate::store::records::Role;
        use crate::store::records::SessionRecord;
        use std::time::{Duration, Instant};

        let cache = SessionCache::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        let ctx = SessionContext {
            session: Arc::new(SessionRecord::for_tests("s1", 1, 1, 0, 1)),
            user_uuid: "u-1".into(),
            user_active: true,
            is_platform_admin: false,
            role: Role::Member,
            membership_active: true,
        };
        let memo = VerifiedTokens::new(8);
        let token = memo.insert("a.b.c", claims("s1"));
        let holds = |lease: &Lease| cache.holds(lease, t0);
        assert!(token.session(holds).is_none(), "nothing found yet");

        let lease = cache.insert_session(cache.ticket(), &ctx, t0);
        token.found_session(&ctx, lease);
        let again = memo.get("a.b.c").unwrap();
        let found = again.session(holds).unwrap();
        assert!(Arc::ptr_eq(&found.session, &ctx.session));

        cache.invalidate_session("s1");
        assert!(again.session(holds).is_none(), "the logout ended the lease");
        token.found_session(&ctx, None);
        assert!(token.session(|_| true).is_none(), "no lease, nothing kept");
        let lease = cache.insert_session(cache.ticket(), &ctx, t0);
        token.found_session(&ctx, lease);
        assert!(token.session(holds).is_some());
        assert!(
            token.profile((1, 1), |_| true).is_none(),
            "no profile was found"
        );

        // A profile is given back for the member it shows only.
        let profile = MemberProfile::for_tests(1, 1);
        let lease = cache.insert_profile(cache.ticket(), &profile, t0);
        token.found_profile(&profile, lease);
        assert!(token.profile((1, 1), holds).is_some());
        assert!(token.profile((1, 2), holds).is_none());
        assert!(token.profile((2, 1), holds).is_none());
        cache.invalidate_org(7);
        assert!(
            token.profile((1, 1), holds).is_none(),
            "any change ends the lease"
        );
    }

    /// A principal carries its token: printing one shows no remembered profile's contents.
    #[test]
    fn a_token_prints_no_profile() {
        use crate::cache::SessionCache;
        use std::time::{Duration, Instant};

        let cache = SessionCache::new(Duration::from_secs(1), 10);
        let token = VerifiedToken::new(claims("s1"));
        let profile = MemberProfile::for_tests(1, 1);
        let lease = cache.insert_profile(cache.ticket(), &profile, Instant::now());
        token.found_profile(&profile, lease);
        let printed = format!("{token:?}");
        assert!(printed.contains("profile_remembered: true"), "{printed}");
        assert!(!printed.contains("a@b.example"), "{printed}");
    }

    #[test]
    fn memory_is_bounded_by_two_generations() {
        let memo = VerifiedTokens::new(2);
        for n in 0..10 {
            memo.insert(&format!("t{n}"), claims("s"));
            assert!(memo.len() <= 4);
        }
        // The newest are still found, the oldest are gone.
        assert!(memo.get("t9").is_some());
        assert!(memo.get("t8").is_some());
        assert!(memo.get("t0").is_none());
    }
}
