//! Tables keyed by a member's [`NameKey`]: the node's member records and the directory's
//! known identities. Every node holds one entry per member in each, so at 10,000 members in
//! the simulator (10^8 entries in one process) their size per entry is most of the memory.
//!
//! A [`KeyTable`] is a hash table whose buckets hold the values alone (the key is read from
//! the value: a [`NodeId`] holds it behind its pointer, in the copy all holders share),
//! hashed by the key itself (it is already a hash, FNV-1a). A `HashMap<NameKey, NodeId>` spends 8 more bytes a bucket on a copy of the
//! key, and a `BTreeMap<NameKey, Record>` about 50 bytes an entry in its nodes.
//!
//! Its iteration order is deterministic (no random hash state: the same operations give the
//! same order) but arbitrary; the core sorts what it iterates wherever the order decides
//! anything.

use std::fmt;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::identity::{NameKey, NodeId};

/// A value that carries its own [`NameKey`].
pub(crate) trait Keyed {
    /// The key the value is stored under.
    fn name_key(&self) -> NameKey;
}

impl Keyed for NodeId {
    fn name_key(&self) -> NameKey {
        self.key()
    }
}

/// Values by their [`NameKey`], at most one per key. See the module documentation.
pub(crate) struct KeyTable<T>(HashTable<T>);

impl<T> Default for KeyTable<T> {
    fn default() -> Self {
        Self(HashTable::new())
    }
}

impl<T: fmt::Debug> fmt::Debug for KeyTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Keyed> KeyTable<T> {
    /// The value stored under `key`.
    pub(crate) fn get(&self, key: NameKey) -> Option<&T> {
        self.0.find(key.0, |v| v.name_key() == key)
    }

    /// The value stored under `key`, to change (not its key).
    pub(crate) fn get_mut(&mut self, key: NameKey) -> Option<&mut T> {
        self.0.find_mut(key.0, |v| v.name_key() == key)
    }

    /// True when a value is stored under `key`.
    pub(crate) fn contains(&self, key: NameKey) -> bool {
        self.get(key).is_some()
    }

    /// Stores `v` under its key; returns the value it replaced.
    pub(crate) fn insert(&mut self, v: T) -> Option<T> {
        match self.entry(v.name_key()) {
            Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), v)),
            Entry::Vacant(e) => {
                e.insert(v);
                None
            }
        }
    }

    /// Removes and returns the value stored under `key`.
    pub(crate) fn remove(&mut self, key: NameKey) -> Option<T> {
        match self.0.find_entry(key.0, |v| v.name_key() == key) {
            Ok(e) => Some(e.remove().0),
            Err(_) => None,
        }
    }

    /// The slot for `key`, occupied or not (one search for a lookup and an insert).
    pub(crate) fn entry(&mut self, key: NameKey) -> Entry<'_, T> {
        self.0
            .entry(key.0, |v| v.name_key() == key, |v| v.name_key().0)
    }

    /// How many values are stored.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no value is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every value, in the table's order: deterministic but arbitrary, so sort what a
    /// decision depends on.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct V(u64, &'static str);

    impl Keyed for V {
        fn name_key(&self) -> NameKey {
            NameKey(self.0)
        }
    }

    #[test]
    fn behaves_like_a_map_by_key() {
        let mut t = KeyTable::default();
        let mut model = std::collections::BTreeMap::new();
        // Keys that share low bits (the bucket index) and high bits (the control byte).
        let keys: Vec<u64> = (0..300u64)
            .map(|i| (i % 7) << 57 | (i % 5) | (i << 8))
            .chain([0, 1, u64::MAX, 1 << 63])
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = keys[(x % keys.len() as u64) as usize];
            match x >> 62 {
                0 | 1 => {
                    let label = if step % 2 == 0 { "a" } else { "b" };
                    assert_eq!(
                        t.insert(V(k, label)).map(|v| v.1),
                        model.insert(k, label),
                        "step {step}"
                    );
                }
                2 => assert_eq!(t.remove(NameKey(k)).map(|v| v.1), model.remove(&k)),
                _ => {
                    if let Some(v) = t.get_mut(NameKey(k)) {
                        v.1 = "c";
                        model.insert(k, "c");
                    }
                }
            }
            assert_eq!(t.get(NameKey(k)).map(|v| v.1), model.get(&k).copied());
            assert_eq!(t.contains(NameKey(k)), model.contains_key(&k));
            assert_eq!(t.len(), model.len());
        }
        let mut all: Vec<(u64, &str)> = t.values().map(|v| (v.0, v.1)).collect();
        all.sort_unstable();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        assert_eq!(t.is_empty(), all.is_empty());
    }
}
