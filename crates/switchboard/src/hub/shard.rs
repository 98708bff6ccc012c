//! Hash maps split into independently locked shards, so that readers and writers of different
//! keys never wait on one global lock: [`Sharded`], a map, and [`ShardedSet`], a set of values
//! that carry their own key (a connection's handle its id, a user's state the user's id), which
//! stores each key once instead of beside its value.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;
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

/// A value that carries its own key.
pub(crate) trait Keyed {
    type Key: Hash + Eq + ?Sized;
    fn key(&self) -> &Self::Key;
}

/// A sharded set of [`Keyed`] values: a map from each value's key to the value, one word per
/// entry for a handle or an `Arc`. One hash per operation: its bits 32..38 pick the shard and
/// the table uses the rest (its bucket index comes from the low bits and its tag from the top
/// seven, so neither is constant within a shard).
pub(crate) struct ShardedSet<T> {
    hasher: RandomState,
    shards: Box<[RwLock<HashTable<T>>]>,
}

impl<T: Keyed> ShardedSet<T> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
        }
    }

    fn locate(&self, key: &T::Key) -> (u64, &RwLock<HashTable<T>>) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[(hash >> 32) as usize & (SHARDS - 1)])
    }

    /// Runs `read` on the value keyed `key`, under its shard's read lock.
    pub(crate) fn with<R>(&self, key: &T::Key, read: impl FnOnce(Option<&T>) -> R) -> R {
        let (hash, shard) = self.locate(key);
        read(shard.read().find(hash, |value| value.key() == key))
    }

    /// The shard holding `key`, write-locked, for a lookup that may insert or remove.
    pub(crate) fn write(&self, key: &T::Key) -> SetShard<'_, T> {
        let (hash, shard) = self.locate(key);
        SetShard {
            table: shard.write(),
            hash,
            hasher: &self.hasher,
        }
    }

    /// Visits every value, one shard read lock at a time.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&T)) {
        for shard in self.shards.iter() {
            shard.read().iter().for_each(&mut visit);
        }
    }
}

/// One write-locked shard of a [`ShardedSet`], for the key it was locked for.
pub(crate) struct SetShard<'a, T> {
    table: RwLockWriteGuard<'a, HashTable<T>>,
    hash: u64,
    hasher: &'a RandomState,
}

impl<T: Keyed> SetShard<'_, T> {
    /// The value keyed `key` (the key the shard was locked for).
    pub(crate) fn get(&mut self, key: &T::Key) -> Option<&mut T> {
        self.table.find_mut(self.hash, |value| value.key() == key)
    }

    /// Adds `value`, whose key is the one the shard was locked for and is not in the set.
    pub(crate) fn insert_new(&mut self, value: T) {
        let hasher = self.hasher;
        self.table
            .insert_unique(self.hash, value, |value| hasher.hash_one(value.key()));
    }

    /// Removes and returns the value keyed `key` (the key the shard was locked for).
    pub(crate) fn remove(&mut self, key: &T::Key) -> Option<T> {
        let found = self.table.find_entry(self.hash, |value| value.key() == key);
        found.ok().map(|entry| entry.remove().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Keyed for (u32, u32) {
        type Key = u32;
        fn key(&self) -> &u32 {
            &self.0
        }
    }

    #[test]
    fn a_set_finds_values_by_their_own_key_in_every_shard() {
        let set: ShardedSet<(u32, u32)> = ShardedSet::new();
        for i in 0..1000 {
            let mut shard = set.write(&i);
            assert!(shard.get(&i).is_none());
            shard.insert_new((i, i * 2));
        }
        assert_eq!(set.with(&500, |found| found.copied()), Some((500, 1000)));
        set.write(&7).get(&7).unwrap().1 = 0;
        assert_eq!(set.write(&7).remove(&7), Some((7, 0)));
        assert_eq!(set.write(&7).remove(&7), None);
        assert_eq!(set.with(&7, |found| found.copied()), None);
        let mut count = 0;
        set.for_each(|_| count += 1);
        assert_eq!(count, 999);
        let used = set.shards.iter().filter(|s| !s.read().is_empty()).count();
        assert_eq!(used, SHARDS, "999 keys land in every shard");
    }

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
