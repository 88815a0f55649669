//! What this instance remembers of the database, so that authenticating a request does not read
//! it every time: the session cache (`entries`), the reads that go through it (`reads`), the
//! member profiles it shares (`profile`) and the memory of verified tokens (`token_memo`).
//!
//! It sits beneath the domain and above the store: the domain reads through `CachedReads` what
//! every request needs, and writes through the store, which announces each change
//! (`store::changes`) to the cache, as PostgreSQL's notices announce other instances' changes.
//! No write path can forget to invalidate: the store announces, whoever wrote.

mod entries;
mod profile;
mod reads;
pub mod token_memo;

pub use entries::{CacheStats, DEFAULT_CAPACITY, Lease, SessionCache, Ticket};
pub use profile::MemberProfile;
pub use reads::{CachedReads, MonotonicNow};
