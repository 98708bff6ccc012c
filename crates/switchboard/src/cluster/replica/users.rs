//! The replica's users: one entry per user id that another node connects, holds in a room or
//! reports a presence for, with everything the replica keeps about that user in it. Entries
//! live in a slab and are found through a hash table of 4-byte slab indices, so a remote user
//! costs one copy of its id, one entry and a few bytes of table: the budget is ≈160 bytes of
//! RSS per remote member (issue 15).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use serde_json::value::RawValue;

use crate::ids::{RoomId, UserId};
use crate::presence::Status;

/// A node's place in the replica's node table.
pub(super) type NodeIndex = u16;

/// The rooms a user is in on other nodes, each with the nodes where (bits, see
/// `Replica::holds`): inline when there is one, as for most remote users (24 bytes, where a
/// boxed slice takes 16 and a 32-byte allocation), else a boxed slice (empty: no allocation).
#[derive(Debug)]
pub(super) enum Rooms {
    One((RoomId, u64)),
    Many(Box<[(RoomId, u64)]>),
}

impl Default for Rooms {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

impl std::ops::Deref for Rooms {
    type Target = [(RoomId, u64)];

    fn deref(&self) -> &Self::Target {
        match self {
            Self::One(room) => std::slice::from_ref(room),
            Self::Many(rooms) => rooms,
        }
    }
}

impl std::ops::DerefMut for Rooms {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::One(room) => std::slice::from_mut(room),
            Self::Many(rooms) => rooms,
        }
    }
}

impl Rooms {
    /// Adds a room at the end.
    pub(super) fn push(&mut self, room: (RoomId, u64)) {
        *self = match std::mem::take(self) {
            Self::Many(rooms) if rooms.is_empty() => Self::One(room),
            Self::One(first) => Self::Many(Box::new([first, room])),
            Self::Many(rooms) => {
                let mut rooms = rooms.into_vec();
                rooms.push(room);
                Self::Many(rooms.into_boxed_slice())
            }
        };
    }

    /// Removes the room at `at` (which must be in range), keeping the others' order.
    pub(super) fn remove(&mut self, at: usize) -> (RoomId, u64) {
        match std::mem::take(self) {
            Self::One(room) => room,
            Self::Many(rooms) => {
                let mut rooms = rooms.into_vec();
                let removed = rooms.remove(at);
                *self = match <[_; 1]>::try_from(rooms) {
                    Ok([room]) => Self::One(room),
                    Err(rooms) => Self::Many(rooms.into_boxed_slice()),
                };
                removed
            }
        }
    }
}

/// What the replica knows of one user.
#[derive(Debug)]
pub(super) struct User {
    /// The id, shared by every place the replica shows it.
    pub(super) id: UserId,
    /// Rooms on other nodes.
    pub(super) rooms: Rooms,
    /// The `last_seen` of the latest presence (when `status` is set).
    pub(super) last_seen: u64,
    /// Connections on `node`, 0 when the slot is free.
    count: u32,
    /// The node of the first connection count; further nodes are in `extra`.
    node: NodeIndex,
    /// The latest presence's status, `None` when no presence is known.
    pub(super) status: Option<Status>,
    /// What most users lack (more nodes, presence metadata): boxed, so that it costs a
    /// pointer when absent.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    /// Connections on nodes other than `User::node`, each count above 0.
    counts: Vec<(NodeIndex, u32)>,
    metadata: Option<Arc<RawValue>>,
}

impl User {
    fn new(id: UserId) -> Self {
        Self {
            id,
            rooms: Rooms::default(),
            last_seen: 0,
            count: 0,
            node: 0,
            status: None,
            extra: None,
        }
    }

    /// Connections on `node`.
    pub(super) fn count_on(&self, node: NodeIndex) -> u32 {
        if self.count > 0 && self.node == node {
            return self.count;
        }
        self.extra
            .as_ref()
            .and_then(|extra| extra.counts.iter().find(|(n, _)| *n == node))
            .map_or(0, |&(_, count)| count)
    }

    /// Sets the connections on `node`.
    pub(super) fn set_count(&mut self, node: NodeIndex, count: u32) {
        if self.count > 0 && self.node == node {
            self.count = count;
            return;
        }
        if let Some(extra) = self.extra.as_mut()
            && let Some(at) = extra.counts.iter().position(|(n, _)| *n == node)
        {
            if count == 0 {
                extra.counts.swap_remove(at);
            } else {
                extra.counts[at].1 = count;
            }
        } else if count == 0 {
            return;
        } else if self.count == 0 {
            (self.node, self.count) = (node, count);
        } else {
            self.extra_mut().counts.push((node, count));
        }
        self.drop_empty_extra();
    }

    /// Connections over all other nodes.
    pub(super) fn connections(&self) -> u32 {
        let more = self.extra.as_ref().map_or(0, |extra| {
            extra.counts.iter().map(|&(_, count)| count).sum()
        });
        self.count + more
    }

    /// The presence metadata, if any.
    pub(super) fn metadata(&self) -> Option<&Arc<RawValue>> {
        self.extra
            .as_ref()
            .and_then(|extra| extra.metadata.as_ref())
    }

    /// Sets the presence (`None`: none known).
    pub(super) fn set_presence(&mut self, presence: Option<(Status, Option<Arc<RawValue>>, u64)>) {
        let (status, metadata, last_seen) = match presence {
            Some((status, metadata, last_seen)) => (Some(status), metadata, last_seen),
            None => (None, None, 0),
        };
        self.status = status;
        self.last_seen = last_seen;
        if metadata.is_some() {
            self.extra_mut().metadata = metadata;
        } else if let Some(extra) = self.extra.as_mut() {
            extra.metadata = None;
            self.drop_empty_extra();
        }
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn drop_empty_extra(&mut self) {
        if self
            .extra
            .as_ref()
            .is_some_and(|extra| extra.counts.is_empty() && extra.metadata.is_none())
        {
            self.extra = None;
        }
    }

    /// Whether the replica has nothing left to keep about the user.
    fn is_empty(&self) -> bool {
        self.connections() == 0 && self.rooms.is_empty() && self.status.is_none()
    }
}

/// The users, by id and by slab index.
#[derive(Debug, Default)]
pub(super) struct Users {
    slab: Vec<Option<User>>,
    /// Free slab indices, reused first.
    free: Vec<u32>,
    /// Slab indices, hashed by their user's id.
    index: HashTable<u32>,
    hasher: RandomState,
}

impl Users {
    /// The slab index of `id`.
    pub(super) fn find(&self, id: &UserId) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&at| {
                self.slab[at as usize]
                    .as_ref()
                    .is_some_and(|user| &user.id == id)
            })
            .copied()
    }

    /// The slab index of `id`, with a new entry (keeping this copy of the id) if it had none.
    pub(super) fn intern(&mut self, id: &UserId) -> u32 {
        if let Some(at) = self.find(id) {
            return at;
        }
        let user = Some(User::new(id.clone()));
        let at = match self.free.pop() {
            Some(at) => {
                self.slab[at as usize] = user;
                at
            }
            None => {
                if self.slab.len() == self.slab.capacity() {
                    // Grow by an eighth, not by doubling: the slab is the replica's bulk.
                    self.slab.reserve_exact((self.slab.len() / 8).max(16));
                }
                self.slab.push(user);
                u32::try_from(self.slab.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index.insert_unique(hasher.hash_one(id), at, |&at| {
            slab[at as usize]
                .as_ref()
                .map_or(0, |user| hasher.hash_one(&user.id))
        });
        at
    }

    /// The user at `at`. Panics if the slot is free: indices come from `find` or `intern`.
    pub(super) fn get(&self, at: u32) -> &User {
        self.slab[at as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("a free replica slot was read"))
    }

    /// The user at `at`, to change.
    pub(super) fn get_mut(&mut self, at: u32) -> &mut User {
        self.slab[at as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("a free replica slot was written"))
    }

    /// The user `id`, if known.
    pub(super) fn by_id(&self, id: &UserId) -> Option<&User> {
        self.find(id).map(|at| self.get(at))
    }

    /// Frees the entry at `at` if nothing is left in it; returns whether it did.
    pub(super) fn release(&mut self, at: u32) -> bool {
        if !self.get(at).is_empty() {
            return false;
        }
        let hash = self.hasher.hash_one(&self.get(at).id);
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == at) {
            entry.remove();
        }
        self.slab[at as usize] = None;
        self.free.push(at);
        true
    }

    /// Every user, with its slab index.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &User)> {
        self.slab
            .iter()
            .zip(0..)
            .filter_map(|(user, at)| user.as_ref().map(|user| (at, user)))
    }

    /// Users known.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Gives back memory after many users left (a node died): renumbers the users into a
    /// slab of their size. Returns the old index -> new index map, so that the caller can
    /// renumber what refers to users; `None` when the slab is still mostly used.
    pub(super) fn compact(&mut self) -> Option<Vec<u32>> {
        if self.len() * 2 >= self.slab.len() {
            return None;
        }
        let mut moved = vec![u32::MAX; self.slab.len()];
        let mut slab = Vec::with_capacity(self.len());
        for (old, user) in self.slab.drain(..).enumerate() {
            if let Some(user) = user {
                moved[old] = u32::try_from(slab.len()).unwrap_or(u32::MAX);
                slab.push(Some(user));
            }
        }
        self.slab = slab;
        self.free = Vec::new();
        self.index = HashTable::with_capacity(self.slab.len());
        let (slab, hasher) = (&self.slab, &self.hasher);
        let hash = |at: &u32| {
            slab[*at as usize]
                .as_ref()
                .map_or(0, |user| hasher.hash_one(&user.id))
        };
        for at in 0..u32::try_from(slab.len()).unwrap_or(u32::MAX) {
            self.index.insert_unique(hash(&at), at, hash);
        }
        Some(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> (RoomId, u64) {
        (RoomId::from_trusted(name), 1)
    }

    fn names(rooms: &Rooms) -> Vec<&str> {
        rooms.iter().map(|(room, _)| room.as_str()).collect()
    }

    /// A remote user is a slab entry of 64 bytes with its one room inline
    /// (`tests/replica_memory.rs` measures the whole).
    #[test]
    fn one_room_is_kept_inline_and_more_in_a_box() {
        assert_eq!(std::mem::size_of::<Rooms>(), 24);
        assert!(std::mem::size_of::<Option<User>>() <= 64);
        let mut rooms = Rooms::default();
        assert!(rooms.is_empty());
        rooms.push(room("a"));
        assert!(matches!(rooms, Rooms::One(_)));
        rooms.push(room("b"));
        rooms.push(room("c"));
        assert_eq!(names(&rooms), ["a", "b", "c"]);
        rooms[1].1 = 3;
        assert_eq!(rooms.remove(0).0.as_str(), "a");
        assert_eq!(names(&rooms), ["b", "c"]);
        assert_eq!(rooms[0].1, 3);
        assert_eq!(rooms.remove(1).0.as_str(), "c");
        assert!(matches!(rooms, Rooms::One(_)), "back inline");
        assert_eq!(rooms.remove(0).0.as_str(), "b");
        assert!(rooms.is_empty());
    }
}
