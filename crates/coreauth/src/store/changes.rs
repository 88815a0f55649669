//! What a write changed, in the terms of whoever keeps copies of what the store holds (the
//! session cache, `crate::cache`). The store announces each change when the call that made it
//! returns, committed or not: a commit that reported a failure may still have landed.
//! PostgreSQL's triggers announce the changes of other instances in the same terms
//! (`pg_changes`), so one listener hears both.

use std::sync::{Arc, OnceLock};

use super::records::Renewal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One session: revoked, restricted, or its restriction lifted.
    Session(String),
    /// Anything about a user: the account, a membership, their sessions, keys or second factor.
    User(i64),
    /// An org's settings: its password policy, SSO configuration or domains.
    Org(i64),
    /// A renewal written: the session's count and token expiry moved forward, nothing else.
    Renewed(Renewal),
    /// Anything at all: a write whose target is not known failed, or a notice was not understood.
    Everything,
}

pub trait ChangeListener: Send + Sync {
    fn changed(&self, change: &Change);

    /// Whether every change made elsewhere is heard from now on; while not, nothing copied may
    /// be used (`pg_changes` says so when its connection is lost, and when it listens again).
    fn hearing(&self, _everything: bool) {}
}

/// Where a store announces its changes: to one listener, set once at start.
#[derive(Default)]
pub struct Changes {
    listener: OnceLock<Arc<dyn ChangeListener>>,
}

impl Changes {
    /// Sets the listener; false when one was set already (it stays).
    pub fn listen(&self, listener: Arc<dyn ChangeListener>) -> bool {
        self.listener.set(listener).is_ok()
    }

    pub fn announce(&self, change: &Change) {
        if let Some(listener) = self.listener.get() {
            listener.changed(change);
        }
    }

    /// Announces `change` when the returned guard is dropped: at the end of the write, on
    /// every path out of it (an error, a `?`), after its transaction was committed or dropped.
    pub(super) fn on_return(&self, change: Change) -> Announcement<'_> {
        Announcement {
            changes: self,
            change: Some(change),
        }
    }
}

/// A change to announce when dropped (`Changes::on_return`).
pub(super) struct Announcement<'a> {
    changes: &'a Changes,
    change: Option<Change>,
}

impl Announcement<'_> {
    /// Announces `change` instead; `None`: nothing changed after all.
    pub(super) fn instead(&mut self, change: Option<Change>) {
        self.change = change;
    }
}

impl Drop for Announcement<'_> {
    fn drop(&mut self) {
        if let Some(change) = self.change.take() {
            self.changes.announce(&change);
        }
    }
}
