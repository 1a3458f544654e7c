//! In-process key locks: one write or delete per key at a time. A second
//! caller is told to retry (`409`) rather than queued, as minikeyvalue does.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use trove_common::key::Key;

/// The set of keys with an operation in flight.
#[derive(Default)]
pub struct KeyLocks {
    held: Mutex<HashSet<Key>>,
}

/// Holds a key's lock until dropped.
pub struct KeyGuard {
    locks: Arc<KeyLocks>,
    key: Key,
}

impl KeyLocks {
    /// Takes the key's lock, or `None` when someone holds it.
    pub fn try_lock(self: &Arc<Self>, key: &Key) -> Option<KeyGuard> {
        let mut held = self.held.lock();
        held.insert(key.clone()).then(|| KeyGuard {
            locks: Arc::clone(self),
            key: key.clone(),
        })
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.locks.held.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_key() {
        let locks = Arc::new(KeyLocks::default());
        let a = Key::new("/a").unwrap();
        let guard = locks.try_lock(&a).unwrap();
        assert!(locks.try_lock(&a).is_none());
        assert!(locks.try_lock(&Key::new("/b").unwrap()).is_some());
        drop(guard);
        assert!(locks.try_lock(&a).is_some());
    }
}
