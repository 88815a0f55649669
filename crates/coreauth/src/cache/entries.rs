//! A short-lived memory of what authenticating a request reads: session contexts by session id,
//! API key contexts by key hash, and member profiles (what `/user/me` and renewals show) by user
//! and org. Without it every request costs several database reads; with it, a busy session
//! costs one read per TTL. Two org settings every password login reads after the hash, the
//! password policy and the SSO connections, are kept by org the same way.
//!
//! Correctness rests on three rules:
//! - Entries live at most `ttl` (`COREAUTH_SESSION_CACHE_TTL`, 60 s), so a change made by
//!   another instance (a logout, a deactivation) is seen here within that time even if its
//!   notice is missed. Notices come much sooner: on PostgreSQL the triggers' NOTIFY
//!   (`store::pg_changes`, milliseconds, with the cache suspended whenever they cannot be
//!   heard); on SQLite the file's `data_version`, checked every second.
//! - Changes made through this instance invalidate at once: `invalidate_session`,
//!   `invalidate_user`, `invalidate_org`, `clear` (the caching store calls them after each write).
//! - A read that raced with an invalidation is not remembered: callers take a `Ticket` before
//!   reading the database and `insert` refuses it if anything was invalidated since, so a read
//!   made just before a logout cannot bring the session back after it.
//!
//! What the cache serves or keeps comes with a `Lease`, which lets a verified token remember
//! its session and its member's profile (`token_memo`) and skip the look-ups next time. A lease
//! holds under the same rules as the entry: for the entry's TTL, and only while nothing at all
//! was invalidated since it was given (every invalidation, renewal, `clear`, `suspend` and
//! `resume` moves the generation it was given under). An entry dropped only to make room, or
//! replaced by a newer read, leaves its leases holding: no change made it wrong.
//!
//! An entry in use is read again before its TTL ends (`refresh_due`, the TTL's last quarter):
//! the caching store serves the entry, which is still within its TTL, and reads it once more in
//! the background under the third rule, so a busy session never waits for the database when
//! its TTL ends. The copy read again starts a TTL of its own; nothing older than the TTL is
//! served either way.
//!
//! Time here is the monotonic clock of the process, not the domain clock: the cache only decides
//! how old a copy may be; every rule (expiry, revocation) is still checked on the copy with the
//! request's own time.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::profile::MemberProfile;
use crate::store::SsoConnectionRecord;
use crate::store::changes::{Change, ChangeListener};
use crate::store::records::{ApiKeyContext, PasswordPolicy, Renewal, SessionContext};

/// Entries per map; past it, stale entries are dropped, and if that is not enough, all of them.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// Proof of the cache's state before a database read; see the module's third rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What the cache gives with an entry it serves or keeps: the entry may be used again without
/// looking it up for as long as `SessionCache::holds` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    generation: u64,
    stored_at: Instant,
}

struct Entry<V> {
    value: V,
    user_id: i64,
    org_id: i64,
    stored_at: Instant,
}

/// Hashed with foldhash, seeded per process, as the token memo is: every authenticated request
/// makes two look-ups here, and SipHash showed in its profile. Its weaker flooding resistance is
/// enough because only what the database returned is inserted (sessions of verified tokens,
/// keys that exist, members); anyone's text is only looked up, which collisions cannot slow.
struct Map<K, V> {
    entries: HashMap<K, Entry<V>, foldhash::fast::RandomState>,
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn new() -> Self {
        Self {
            entries: HashMap::default(),
        }
    }

    /// The value and when it was stored, if it is younger than `ttl`.
    fn get<Q>(&self, key: &Q, ttl: Duration, now: Instant) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entry = self.entries.get(key)?;
        (now.saturating_duration_since(entry.stored_at) < ttl)
            .then(|| (entry.value.clone(), entry.stored_at))
    }

    fn insert(&mut self, key: K, entry: Entry<V>, ttl: Duration, capacity: usize) {
        if self.entries.len() >= capacity && !self.entries.contains_key(&key) {
            let now = entry.stored_at;
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.stored_at) < ttl);
            if self.entries.len() >= capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, entry);
    }

    fn retain(&mut self, keep: impl Fn(&Entry<V>) -> bool) {
        self.entries.retain(|_, e| keep(e));
    }
}

struct Inner {
    /// Set while changes made elsewhere cannot be heard (see `suspend`): nothing is served or
    /// kept.
    suspended: bool,
    sessions: Map<String, SessionContext>,
    keys: Map<Vec<u8>, ApiKeyContext>,
    profiles: Map<(i64, i64), Arc<MemberProfile>>,
    /// By org, `None` when the org has none (that is worth remembering too). These entries
    /// belong to no user: `invalidate_org` and `clear` forget them, `invalidate_user` does not.
    policies: Map<i64, Option<PasswordPolicy>>,
    sso_connections: Map<i64, Vec<SsoConnectionRecord>>,
}

impl Inner {
    fn clear(&mut self) {
        self.sessions.entries.clear();
        self.keys.entries.clear();
        self.profiles.entries.clear();
        self.policies.entries.clear();
        self.sso_connections.entries.clear();
    }

    fn org_entries(&self) -> usize {
        self.policies.entries.len() + self.sso_connections.entries.len()
    }
}

pub struct SessionCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
    /// Moved (only with `inner` locked) by every change that may make an entry out of date:
    /// tickets and leases taken before it are refused. Atomic so that `holds` needs no lock.
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    refreshes: AtomicU64,
}

/// What `/metrics` shows of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory, and lookups that went to the database (none are counted
    /// while the cache is off).
    pub hits: u64,
    pub misses: u64,
    /// Entries read again in the background before their TTL ended (`refresh_due`).
    pub refreshes: u64,
    /// Sessions, keys, profiles and org settings held.
    pub entries: usize,
    /// Whether the cache is suspended (see `suspend`).
    pub suspended: bool,
}

impl SessionCache {
    /// A cache keeping entries for `ttl`; `Duration::ZERO` keeps nothing.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                suspended: false,
                sessions: Map::new(),
                keys: Map::new(),
                profiles: Map::new(),
                policies: Map::new(),
                sso_connections: Map::new(),
            }),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Runs `f` on the maps; a poisoned lock (a panic elsewhere while holding it) is treated
    /// as an empty cache rather than a failure: the database still answers.
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut inner| f(&mut inner))
    }

    /// What `find` finds, with its lease, unless the cache is off or suspended.
    fn lookup<T>(&self, find: impl FnOnce(&Inner) -> Option<(T, Instant)>) -> Option<(T, Lease)> {
        if !self.enabled() {
            return None;
        }
        let found = self
            .with(|i| {
                if i.suspended {
                    return None;
                }
                let (value, stored_at) = find(i)?;
                let generation = self.generation.load(Ordering::SeqCst);
                Some((
                    value,
                    Lease {
                        generation,
                        stored_at,
                    },
                ))
            })
            .flatten();
        self.count(found.is_some());
        found
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the generation: called with `inner` locked, by every change that may make an
    /// entry out of date.
    fn invalidating(&self, f: impl FnOnce(&mut Inner)) {
        self.with(|i| {
            self.generation.fetch_add(1, Ordering::SeqCst);
            f(i);
        });
    }

    /// To be taken before reading what will be inserted.
    pub fn ticket(&self) -> Ticket {
        Ticket(
            self.with(|_| self.generation.load(Ordering::SeqCst))
                .unwrap_or(u64::MAX),
        )
    }

    /// Whether what was served or kept with `lease` may still be used at `now` as if it had
    /// just been looked up: its entry is within the TTL and nothing was invalidated since.
    /// Counted as a hit when it may. A cache whose lock was poisoned holds nothing, as it
    /// serves nothing: its invalidations may not have run.
    pub fn holds(&self, lease: &Lease, now: Instant) -> bool {
        let held = self.enabled()
            && now.saturating_duration_since(lease.stored_at) < self.ttl
            && self.generation.load(Ordering::SeqCst) == lease.generation
            && !self.inner.is_poisoned();
        if held {
            self.count(true);
        }
        held
    }

    /// Whether what was served with `lease` is in the last quarter of its TTL at `now`, and
    /// so should be read again before the TTL ends. Whether it still holds is for `holds`.
    pub fn refresh_due(&self, lease: &Lease, now: Instant) -> bool {
        now.saturating_duration_since(lease.stored_at) >= self.ttl - self.ttl / 4
    }

    /// Counts one entry read again ahead of its TTL's end, for `/metrics`.
    pub fn count_refresh(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// The cached session, with its lease.
    pub fn session(&self, id: &str, now: Instant) -> Option<(SessionContext, Lease)> {
        self.lookup(|i| i.sessions.get(id, self.ttl, now))
    }

    /// Keeps a session read with `ticket`, unless something was invalidated since; the lease
    /// of what was kept.
    pub fn insert_session(
        &self,
        ticket: Ticket,
        ctx: &SessionContext,
        now: Instant,
    ) -> Option<Lease> {
        let entry = Entry {
            value: ctx.clone(),
            user_id: ctx.session.user_id,
            org_id: ctx.session.org_id,
            stored_at: now,
        };
        self.insert_with(ticket, now, |i, ttl, cap| {
            i.sessions.insert(ctx.session.id.clone(), entry, ttl, cap);
        })
    }

    /// The cached API key, with its lease.
    pub fn key_leased(&self, hash: &[u8], now: Instant) -> Option<(ApiKeyContext, Lease)> {
        self.lookup(|i| i.keys.get(hash, self.ttl, now))
    }

    pub fn insert_key(&self, ticket: Ticket, hash: &[u8], ctx: &ApiKeyContext, now: Instant) {
        let entry = Entry {
            value: ctx.clone(),
            user_id: ctx.key.user_id,
            org_id: ctx.key.org_id,
            stored_at: now,
        };
        self.insert_with(ticket, now, |i, ttl, cap| {
            i.keys.insert(hash.to_vec(), entry, ttl, cap);
        });
    }

    /// The cached profile, with its lease.
    pub fn profile(
        &self,
        user_id: i64,
        org_id: i64,
        now: Instant,
    ) -> Option<(Arc<MemberProfile>, Lease)> {
        self.lookup(|i| i.profiles.get(&(user_id, org_id), self.ttl, now))
    }

    /// Keeps a profile read with `ticket`, as `insert_session` does.
    pub fn insert_profile(
        &self,
        ticket: Ticket,
        profile: &Arc<MemberProfile>,
        now: Instant,
    ) -> Option<Lease> {
        let (user_id, org_id) = (profile.user().id, profile.org().id);
        let entry = Entry {
            value: profile.clone(),
            user_id,
            org_id,
            stored_at: now,
        };
        self.insert_with(ticket, now, |i, ttl, cap| {
            i.profiles.insert((user_id, org_id), entry, ttl, cap);
        })
    }

    /// The org's password policy as last read (`Some(None)`: it has none).
    pub fn policy(&self, org_id: i64, now: Instant) -> Option<Option<PasswordPolicy>> {
        self.policy_leased(org_id, now).map(|(policy, _)| policy)
    }

    /// `policy`, with its lease.
    pub fn policy_leased(
        &self,
        org_id: i64,
        now: Instant,
    ) -> Option<(Option<PasswordPolicy>, Lease)> {
        self.lookup(|i| i.policies.get(&org_id, self.ttl, now))
    }

    pub fn insert_policy(
        &self,
        ticket: Ticket,
        org_id: i64,
        policy: Option<PasswordPolicy>,
        now: Instant,
    ) {
        let entry = org_entry(org_id, policy, now);
        self.insert_with(ticket, now, |i, ttl, cap| {
            i.policies.insert(org_id, entry, ttl, cap);
        });
    }

    /// The org's SSO connections as last read (`Some(vec![])`: it has none).
    pub fn sso_connections(&self, org_id: i64, now: Instant) -> Option<Vec<SsoConnectionRecord>> {
        self.sso_connections_leased(org_id, now)
            .map(|(connections, _)| connections)
    }

    /// `sso_connections`, with its lease.
    pub fn sso_connections_leased(
        &self,
        org_id: i64,
        now: Instant,
    ) -> Option<(Vec<SsoConnectionRecord>, Lease)> {
        self.lookup(|i| i.sso_connections.get(&org_id, self.ttl, now))
    }

    pub fn insert_sso_connections(
        &self,
        ticket: Ticket,
        org_id: i64,
        connections: &[SsoConnectionRecord],
        now: Instant,
    ) {
        let entry = org_entry(org_id, connections.to_vec(), now);
        self.insert_with(ticket, now, |i, ttl, cap| {
            i.sso_connections.insert(org_id, entry, ttl, cap);
        });
    }

    /// Runs `f` (an insert stored at `now`) unless the cache is off or suspended or `ticket`
    /// is out of date; the lease of what was inserted.
    fn insert_with(
        &self,
        ticket: Ticket,
        now: Instant,
        f: impl FnOnce(&mut Inner, Duration, usize),
    ) -> Option<Lease> {
        if !self.enabled() {
            return None;
        }
        self.with(|i| {
            // Something was invalidated since the read began: the read may predate it.
            let generation = self.generation.load(Ordering::SeqCst);
            (!i.suspended && generation == ticket.0).then(|| {
                f(i, self.ttl, self.capacity);
                Lease {
                    generation,
                    stored_at: now,
                }
            })
        })
        .flatten()
    }

    /// Applies written renewals to the cached copy of their session, if there is one, so the
    /// copy keeps its renewal count and token expiry without another read. Earlier leases and
    /// tickets end: the copies they stand for lack the renewal.
    pub fn note_renewal(&self, renewal: &Renewal) {
        self.invalidating(|i| {
            if let Some(entry) = i.sessions.entries.get_mut(renewal.session_id.as_str()) {
                let session = Arc::make_mut(&mut entry.value.session);
                session.renew_count += renewal.count;
                session.last_renewed_at = session.last_renewed_at.max(Some(renewal.renewed_at));
                session.token_expires_at = session.token_expires_at.max(renewal.token_expires_at);
            }
        });
    }

    /// Forgets one session (logout, ending a session).
    pub fn invalidate_session(&self, id: &str) {
        self.invalidating(|i| {
            i.sessions.entries.remove(id);
        });
    }

    /// Forgets everything about a user: sessions, keys, profiles (deactivation, role change,
    /// password change, second factor, key deletion, revoking their sessions).
    pub fn invalidate_user(&self, user_id: i64) {
        self.invalidating(|i| {
            i.sessions.retain(|e| e.user_id != user_id);
            i.keys.retain(|e| e.user_id != user_id);
            i.profiles.retain(|e| e.user_id != user_id);
        });
    }

    /// Forgets an org's settings and the profiles of its members (its password policy or SSO
    /// configuration changed).
    pub fn invalidate_org(&self, org_id: i64) {
        self.invalidating(|i| {
            i.profiles.retain(|e| e.org_id != org_id);
            i.policies.entries.remove(&org_id);
            i.sso_connections.entries.remove(&org_id);
        });
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.invalidating(Inner::clear);
    }

    /// Forgets everything and keeps nothing until `resume`: for while this instance cannot hear
    /// the changes other instances make (PostgreSQL's change feed is not connected), so that
    /// every request reads the database instead of a copy that may have been revoked elsewhere.
    pub fn suspend(&self) {
        self.invalidating(|i| {
            i.clear();
            i.suspended = true;
        });
    }

    /// Starts keeping entries again, from empty: what was missed while suspended is not known.
    pub fn resume(&self) {
        self.invalidating(|i| {
            i.clear();
            i.suspended = false;
        });
    }

    /// Sessions, keys and profiles held (org settings are not counted here), for tests.
    pub fn len(&self) -> (usize, usize, usize) {
        self.with(|i| {
            (
                i.sessions.entries.len(),
                i.keys.entries.len(),
                i.profiles.entries.len(),
            )
        })
        .unwrap_or_default()
    }

    /// Whether nothing at all is held, org settings included.
    pub fn is_empty(&self) -> bool {
        self.stats().entries == 0
    }

    pub fn stats(&self) -> CacheStats {
        let (entries, suspended) = self
            .with(|i| {
                let held = i.sessions.entries.len() + i.keys.entries.len();
                (
                    held + i.profiles.entries.len() + i.org_entries(),
                    i.suspended,
                )
            })
            .unwrap_or((0, true));
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            entries,
            suspended,
        }
    }
}

/// An entry of an org-level map: it belongs to no user.
fn org_entry<V>(org_id: i64, value: V, now: Instant) -> Entry<V> {
    Entry {
        value,
        user_id: 0,
        org_id,
        stored_at: now,
    }
}

/// Each change the store or another instance announces forgets what it made stale.
impl ChangeListener for SessionCache {
    fn changed(&self, change: &Change) {
        match change {
            Change::Session(id) => self.invalidate_session(id),
            Change::User(id) => self.invalidate_user(*id),
            Change::Org(id) => self.invalidate_org(*id),
            Change::Renewed(renewal) => self.note_renewal(renewal),
            Change::Everything => self.clear(),
        }
    }

    fn hearing(&self, everything: bool) {
        if everything {
            self.resume();
        } else {
            self.suspend();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
