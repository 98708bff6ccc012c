//! A hash map split into independently locked shards, so that readers and writers of different
//! keys never wait on one global lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of shards: a power of two comfortably above the core count of the machines we target,
/// so two threads rarely meet on one lock.
const SHARDS: usize = 64;

/// A sharded `HashMap<K, V>`.
pub(crate) struct Sharded<K, V> {
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<K, V>>]>,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V>> {
        let index = self.hasher.hash_one(key) as usize & (SHARDS - 1);
        &self.shards[index]
    }

    /// Read access to the shard holding `key`.
    pub(crate) fn read<Q: Hash + ?Sized>(&self, key: &Q) -> RwLockReadGuard<'_, HashMap<K, V>> {
        self.shard(key).read()
    }

    /// Write access to the shard holding `key`.
    pub(crate) fn write<Q: Hash + ?Sized>(&self, key: &Q) -> RwLockWriteGuard<'_, HashMap<K, V>> {
        self.shard(key).write()
    }

    /// Visits every entry, one shard read lock at a time.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            for (key, value) in shard.read().iter() {
                visit(key, value);
            }
        }
    }

    /// Keeps only the entries for which `keep` returns true, one shard write lock at a time.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for shard in self.shards.iter() {
            shard.write().retain(|key, value| keep(key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_in_one_shard_and_are_all_visited() {
        let map: Sharded<u32, u32> = Sharded::new();
        for i in 0..1000 {
            map.write(&i).insert(i, i * 2);
        }
        assert_eq!(map.read(&500).get(&500), Some(&1000));
        let mut sum = 0;
        map.for_each(|_, v| sum += *v);
        assert_eq!(sum, (0..1000).map(|i| i * 2).sum::<u32>());
        map.retain(|k, _| k % 2 == 0);
        let mut count = 0;
        map.for_each(|_, _| count += 1);
        assert_eq!(count, 500);
    }
}
