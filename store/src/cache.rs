//! The read cache of a [`Store`](crate::Store): decoded copies of every
//! record of the tables a daemon reads on hot paths (kubelet lists pods and
//! containers every second), so those reads decode nothing.
//!
//! A table is cached once [`Store::cache`](crate::Store::cache) loaded it;
//! from then on every committed write of it updates the copy. Writes apply
//! to the cache under its lock taken before the redb commit and released
//! after the update, and redb runs one write transaction at a time, so the
//! cache sees commits in commit order and never a write that was not
//! committed.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

/// A decoded record, shared by the cache and its readers.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

type Tables = HashMap<&'static str, BTreeMap<String, Shared>>;

/// Cached tables: table name → key → decoded record.
#[derive(Default)]
pub(crate) struct Cache {
    tables: RwLock<Tables>,
}

/// One change of a cached table made by a transaction, applied on commit.
pub(crate) enum Change {
    Put(&'static str, String, Shared),
    Delete(&'static str, String),
}

impl Cache {
    pub fn is_cached(&self, table: &'static str) -> bool {
        self.read().contains_key(table)
    }

    /// The records of a cached table in key order, or None when the table
    /// is not cached.
    pub fn list(&self, table: &'static str) -> Option<Vec<Shared>> {
        self.read()
            .get(table)
            .map(|t| t.values().cloned().collect())
    }

    /// `Some(record or None)` for a cached table, None when not cached.
    pub fn get(&self, table: &'static str, key: &str) -> Option<Option<Shared>> {
        self.read().get(table).map(|t| t.get(key).cloned())
    }

    /// Locks the cache for a commit; see the module comment.
    pub fn lock_for_commit(&self) -> RwLockWriteGuard<'_, Tables> {
        self.write()
    }

    pub fn apply(tables: &mut Tables, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Put(table, key, value) => {
                    if let Some(t) = tables.get_mut(table) {
                        t.insert(key, value);
                    }
                }
                Change::Delete(table, key) => {
                    if let Some(t) = tables.get_mut(table) {
                        t.remove(&key);
                    }
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent maps (every
        // update is a single insert or remove): keep using them.
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }
}
