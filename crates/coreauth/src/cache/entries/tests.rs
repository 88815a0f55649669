//! The session cache's rules, one by one.

use super::*;
use crate::store::records::{ApiKeyRecord, Role, SessionRecord};

const TTL: Duration = Duration::from_secs(1);

fn session(id: &str, user_id: i64, org_id: i64) -> SessionContext {
    SessionContext {
        session: Arc::new(SessionRecord::for_tests(id, user_id, org_id, 0, 1)),
        user_uuid: format!("u-{user_id}").into(),
        user_active: true,
        is_platform_admin: false,
        role: Role::Member,
        membership_active: true,
    }
}

fn key(user_id: i64, org_id: i64) -> ApiKeyContext {
    ApiKeyContext {
        key: Arc::new(ApiKeyRecord {
            id: 7,
            public_id: "k".into(),
            user_id,
            org_id,
            name: "ci".into(),
            prefix: "cak_x".into(),
            scopes: "read".into(),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            last_used_address: None,
            replaced_by: None,
            replaced_at: None,
        }),
        user_uuid: format!("u-{user_id}").into(),
        user_active: true,
        role: Role::Member,
        membership_active: true,
    }
}

fn profile(user_id: i64, org_id: i64) -> Arc<MemberProfile> {
    MemberProfile::for_tests(user_id, org_id)
}

/// The profile the cache hands out is the one it was given, rendering included; a profile
/// read anew, as after any change, renders its own; a failed rendering is not kept.
#[test]
fn a_rendering_belongs_to_one_profile_read() {
    let render = |p: &MemberProfile| Ok::<_, ()>(p.org().id.to_string().into_bytes().into());
    let never = |_: &MemberProfile| Err::<Box<[u8]>, ()>(());
    let read = profile(1, 7);
    assert!(read.shown(never).is_err());
    assert_eq!(read.shown(render).unwrap(), b"7");
    assert_eq!(read.clone().shown(never).unwrap(), b"7");

    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_profile(cache.ticket(), &read, t0);
    let (served, _) = cache.profile(1, 7, t0).unwrap();
    assert_eq!(served.shown(never).unwrap(), b"7");
    assert!(profile(1, 7).shown(never).is_err());
}

/// A lease holds under its entry's rules: within the TTL, and until anything at all is
/// invalidated or renewed; a refused insert gives none.
#[test]
fn a_lease_holds_within_the_ttl_until_anything_changes() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    let kept = cache
        .insert_session(cache.ticket(), &session("s1", 1, 1), t0)
        .unwrap();
    let (_, served) = cache.session("s1", t0).unwrap();
    assert_eq!(served, kept);
    assert!(cache.holds(&kept, t0 + Duration::from_millis(999)));
    assert!(!cache.holds(&kept, t0 + TTL), "past the TTL");

    let renewal = Renewal {
        session_id: "s1".into(),
        count: 1,
        token_expires_at: 500,
        renewed_at: 42,
    };
    // Suspending last: nothing is leased while suspended.
    let changes: [&dyn Fn(&SessionCache); 6] = [
        &|c| c.invalidate_session("another"),
        &|c| c.invalidate_user(99),
        &|c| c.invalidate_org(99),
        &|c| c.note_renewal(&renewal),
        &SessionCache::clear,
        &SessionCache::suspend,
    ];
    for change in changes {
        let lease = cache
            .insert_session(cache.ticket(), &session("s1", 1, 1), t0)
            .unwrap();
        cache.insert_profile(cache.ticket(), &profile(1, 1), t0);
        let (_, profile_lease) = cache.profile(1, 1, t0).unwrap();
        assert!(cache.holds(&lease, t0) && cache.holds(&profile_lease, t0));
        change(&cache);
        assert!(
            !cache.holds(&lease, t0),
            "a session's lease outlived a change"
        );
        assert!(
            !cache.holds(&profile_lease, t0),
            "a profile's lease outlived a change"
        );
    }

    cache.resume();
    // A read that raced with a change is neither kept nor leased.
    let ticket = cache.ticket();
    cache.invalidate_session("s1");
    assert!(
        cache
            .insert_session(ticket, &session("s1", 1, 1), t0)
            .is_none()
    );
    assert!(cache.insert_profile(ticket, &profile(1, 1), t0).is_none());
    // Nor is anything while suspended, or by a cache that keeps nothing.
    cache.suspend();
    assert!(
        cache
            .insert_session(cache.ticket(), &session("s1", 1, 1), t0)
            .is_none()
    );
    let off = SessionCache::new(Duration::ZERO, 10);
    assert!(
        off.insert_session(off.ticket(), &session("s1", 1, 1), t0)
            .is_none()
    );
}

#[test]
fn a_lease_that_holds_counts_as_a_hit() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    let lease = cache
        .insert_session(cache.ticket(), &session("s1", 1, 1), t0)
        .unwrap();
    assert!(cache.holds(&lease, t0));
    assert!(!cache.holds(&lease, t0 + TTL));
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 0));
}

/// An entry is due to be read again in its TTL's last quarter, and only then.
#[test]
fn an_entry_is_due_for_a_refresh_in_the_last_quarter_of_its_ttl() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    let lease = cache
        .insert_session(cache.ticket(), &session("s1", 1, 1), t0)
        .unwrap();
    assert!(!cache.refresh_due(&lease, t0));
    assert!(!cache.refresh_due(&lease, t0 + Duration::from_millis(749)));
    assert!(cache.refresh_due(&lease, t0 + Duration::from_millis(750)));
    assert!(cache.holds(&lease, t0 + Duration::from_millis(750)));
    assert!(cache.refresh_due(&lease, t0 + TTL));
}

#[test]
fn entries_are_served_until_their_ttl_ends() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    assert!(cache.session("s1", t0).is_some());
    assert!(
        cache
            .session("s1", t0 + Duration::from_millis(999))
            .is_some()
    );
    assert!(cache.session("s1", t0 + TTL).is_none());
    assert!(cache.session("s2", t0).is_none());
}

#[test]
fn a_zero_ttl_keeps_nothing() {
    let cache = SessionCache::new(Duration::ZERO, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    assert!(cache.session("s1", t0).is_none());
    assert!(cache.is_empty());
}

#[test]
fn a_logout_forgets_that_session_only() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    cache.insert_session(cache.ticket(), &session("s2", 1, 1), t0);
    cache.invalidate_session("s1");
    assert!(cache.session("s1", t0).is_none());
    assert!(cache.session("s2", t0).is_some());
}

#[test]
fn a_renewal_updates_the_cached_copy() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    let renewal = |id: &str| Renewal {
        session_id: id.into(),
        count: 1,
        token_expires_at: 500,
        renewed_at: 42,
    };
    cache.note_renewal(&renewal("s1"));
    cache.note_renewal(&renewal("nope"));
    let s = cache.session("s1", t0).unwrap().0.session;
    assert_eq!(
        (s.renew_count, s.last_renewed_at, s.token_expires_at),
        (1, Some(42), 500)
    );
    assert_eq!(cache.len().0, 1);
}

#[test]
fn a_user_change_forgets_their_sessions_keys_and_profiles() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    cache.insert_session(cache.ticket(), &session("s2", 2, 1), t0);
    cache.insert_key(cache.ticket(), b"h1", &key(1, 1), t0);
    cache.insert_key(cache.ticket(), b"h2", &key(2, 1), t0);
    cache.insert_profile(cache.ticket(), &profile(1, 1), t0);
    cache.insert_profile(cache.ticket(), &profile(2, 1), t0);
    cache.invalidate_user(1);
    assert!(cache.session("s1", t0).is_none());
    assert!(cache.key_leased(b"h1", t0).is_none());
    assert!(cache.profile(1, 1, t0).is_none());
    assert!(cache.session("s2", t0).is_some());
    assert!(cache.key_leased(b"h2", t0).is_some());
    assert!(cache.profile(2, 1, t0).is_some());
}

#[test]
fn an_org_change_forgets_its_profiles() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_profile(cache.ticket(), &profile(1, 1), t0);
    cache.insert_profile(cache.ticket(), &profile(1, 2), t0);
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    cache.invalidate_org(1);
    assert!(cache.profile(1, 1, t0).is_none());
    assert!(cache.profile(1, 2, t0).is_some());
    assert!(cache.session("s1", t0).is_some());
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn org_settings_are_kept_by_org_and_forgotten_with_it_not_with_a_user() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    let strict = PasswordPolicy {
        require_mfa: true,
        ..PasswordPolicy::default()
    };
    cache.insert_policy(cache.ticket(), 1, Some(strict), t0);
    cache.insert_policy(cache.ticket(), 2, None, t0);
    cache.insert_sso_connections(cache.ticket(), 1, &[], t0);
    // An org without a policy is remembered as such, not as unknown.
    assert_eq!(cache.policy(1, t0), Some(Some(strict)));
    assert_eq!(cache.policy(2, t0), Some(None));
    assert_eq!(cache.sso_connections(1, t0), Some(vec![]));
    assert_eq!(cache.policy(3, t0), None);
    assert_eq!(cache.stats().entries, 3);
    assert!(!cache.is_empty());
    // User 1 is no org: its change leaves org 1's settings alone.
    cache.invalidate_user(1);
    assert!(cache.policy(1, t0).is_some());
    assert!(cache.policy(1, t0 + TTL).is_none(), "past the TTL");
    cache.invalidate_org(1);
    assert!(cache.policy(1, t0).is_none());
    assert!(cache.sso_connections(1, t0).is_none());
    assert!(cache.policy(2, t0).is_some());
    // A read that raced with the change is not kept.
    let ticket = cache.ticket();
    cache.invalidate_org(2);
    cache.insert_policy(ticket, 2, None, t0);
    assert!(cache.policy(2, t0).is_none());
    cache.insert_sso_connections(cache.ticket(), 4, &[], t0);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn a_read_that_raced_with_an_invalidation_is_not_kept() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    // The read starts, a logout lands, then the (older) read comes back.
    let ticket = cache.ticket();
    cache.invalidate_session("s1");
    cache.insert_session(ticket, &session("s1", 1, 1), t0);
    assert!(cache.session("s1", t0).is_none());
    // A read started after it is kept.
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    assert!(cache.session("s1", t0).is_some());
}

#[test]
fn a_suspended_cache_serves_and_keeps_nothing_until_resumed_from_empty() {
    let cache = SessionCache::new(TTL, 10);
    let t0 = Instant::now();
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    let before = cache.ticket();
    cache.suspend();
    assert!(cache.is_empty());
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    cache.insert_key(cache.ticket(), b"h1", &key(1, 1), t0);
    cache.insert_profile(cache.ticket(), &profile(1, 1), t0);
    assert!(cache.is_empty());
    assert!(cache.session("s1", t0).is_none());
    // A read begun before resuming may have missed a change: not kept.
    let during = cache.ticket();
    cache.resume();
    cache.insert_session(before, &session("s1", 1, 1), t0);
    cache.insert_session(during, &session("s1", 1, 1), t0);
    assert!(cache.is_empty());
    cache.insert_session(cache.ticket(), &session("s1", 1, 1), t0);
    assert!(cache.session("s1", t0).is_some());
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.suspended), (1, false));
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

#[test]
fn the_cache_stays_within_its_capacity() {
    let cache = SessionCache::new(TTL, 3);
    let t0 = Instant::now();
    for n in 0..3 {
        cache.insert_session(cache.ticket(), &session(&format!("s{n}"), n, 1), t0);
    }
    // Full of fresh entries: making room drops them all.
    cache.insert_session(cache.ticket(), &session("s9", 9, 1), t0);
    assert_eq!(cache.len().0, 1);
    assert!(cache.session("s9", t0).is_some());
    // Stale ones go first.
    let later = t0 + TTL + Duration::from_millis(1);
    for n in 0..2 {
        cache.insert_session(cache.ticket(), &session(&format!("t{n}"), n, 1), t0);
    }
    cache.insert_session(cache.ticket(), &session("fresh", 5, 1), later);
    assert_eq!(cache.len().0, 1);
    assert!(cache.session("fresh", later).is_some());
}
