//! The replica's users: one entry per user id that another node connects, holds in a room or
//! reports a presence for. Entries are 48 bytes in a slab, found through a hash table of
//! 4-byte slab indices. An entry holds the id itself (up to 24 bytes; longer ones on the heap),
//! the connections on one node, the status and time of the latest presence, and the first room
//! with the nodes where: all that most remote users need, in no allocation of their own. What
//! few users have (connections on several nodes, several rooms, presence metadata) is in a side
//! table by slab index. The budget is ≈100 bytes of RSS per remote member (issue 15);
//! `tests/replica_memory.rs` measures the whole.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use serde_json::value::RawValue;

use crate::ids::UserId;
use crate::presence::Status;

/// A node's place in the replica's node table.
pub(super) type NodeIndex = u16;

/// A room's place in the replica's room table.
pub(super) type RoomIndex = u32;

/// A user's membership of a room on other nodes: the room, and the nodes where (bits, see
/// `Replica::holds`).
pub(super) type Membership = (RoomIndex, u32);

/// `User::room` of a user in no room.
const NO_ROOM: Membership = (RoomIndex::MAX, 0);

/// A presence as the replica keeps it: status, metadata, `last_seen`.
pub(super) type Kept = (Status, Option<Arc<RawValue>>, u64);

/// What the replica knows of one user, as far as most users need.
#[derive(Debug)]
struct User {
    /// The id, inline up to 24 bytes.
    id: CompactString,
    /// The `last_seen` of the latest presence (when `status` is set).
    last_seen: u64,
    /// Connections on `node`, 0 when none.
    count: u32,
    /// The node of the first connection count; further nodes are in `Extra::counts`.
    node: NodeIndex,
    /// The latest presence's status, `None` when no presence is known.
    status: Option<Status>,
    /// Whether `Users::extra` holds more of this user.
    more: bool,
    /// The first room (`NO_ROOM`: none); further rooms are in `Extra::rooms`.
    room: Membership,
}

/// What few users have, kept apart so that the others do not pay for it.
#[derive(Debug, Default)]
struct Extra {
    /// Connections on nodes other than `User::node`, each count above 0.
    counts: Vec<(NodeIndex, u32)>,
    /// Rooms after `User::room`, in the order the user arrived in them.
    rooms: Vec<Membership>,
    metadata: Option<Arc<RawValue>>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.rooms.is_empty() && self.metadata.is_none()
    }
}

/// The users, by id and by slab index. Indices come from [`Users::find`] or [`Users::intern`]
/// and stay valid until [`Users::release`] frees the entry or [`Users::compact`] renumbers;
/// reading a free index panics.
#[derive(Debug, Default)]
pub(super) struct Users {
    slab: Vec<Option<User>>,
    /// Free slab indices, reused first.
    free: Vec<u32>,
    /// Slab indices, hashed by their user's id.
    index: HashTable<u32>,
    hasher: RandomState,
    /// By slab index, for the users whose `more` is set.
    extra: HashMap<u32, Extra>,
}

impl Users {
    /// The slab index of `id`.
    pub(super) fn find(&self, id: &UserId) -> Option<u32> {
        let id = id.as_str();
        self.index
            .find(self.hasher.hash_one(id), |&at| self.id(at) == id)
            .copied()
    }

    /// The slab index of `id`, with a new entry if it had none.
    pub(super) fn intern(&mut self, id: &UserId) -> u32 {
        if let Some(at) = self.find(id) {
            return at;
        }
        let user = Some(User {
            id: CompactString::new(id.as_str()),
            last_seen: 0,
            count: 0,
            node: 0,
            status: None,
            more: false,
            room: NO_ROOM,
        });
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
        self.index
            .insert_unique(hasher.hash_one(id.as_str()), at, |&at| {
                hash_at(slab, hasher, at)
            });
        at
    }

    fn get(&self, at: u32) -> &User {
        self.slab[at as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("a free replica slot was read"))
    }

    fn get_mut(&mut self, at: u32) -> &mut User {
        self.slab[at as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("a free replica slot was written"))
    }

    fn extra(&self, at: u32) -> Option<&Extra> {
        if self.get(at).more {
            self.extra.get(&at)
        } else {
            None
        }
    }

    fn extra_mut(&mut self, at: u32) -> &mut Extra {
        self.get_mut(at).more = true;
        self.extra.entry(at).or_default()
    }

    /// Forgets the user's extra once nothing is left in it.
    fn drop_empty_extra(&mut self, at: u32) {
        if self.extra.get(&at).is_some_and(Extra::is_empty) {
            self.extra.remove(&at);
            self.get_mut(at).more = false;
            if self.extra.len() * 4 < self.extra.capacity() {
                self.extra.shrink_to_fit();
            }
        }
    }

    /// The id of the user at `at`.
    pub(super) fn id(&self, at: u32) -> &str {
        &self.get(at).id
    }

    /// The id of the user at `at`, as the rest of the server holds ids (a new copy).
    pub(super) fn user_id(&self, at: u32) -> UserId {
        UserId::from_trusted(self.id(at))
    }

    /// Connections on `node`.
    pub(super) fn count_on(&self, at: u32, node: NodeIndex) -> u32 {
        let user = self.get(at);
        if user.count > 0 && user.node == node {
            return user.count;
        }
        self.extra(at)
            .and_then(|extra| extra.counts.iter().find(|(n, _)| *n == node))
            .map_or(0, |&(_, count)| count)
    }

    /// Sets the connections on `node`.
    pub(super) fn set_count(&mut self, at: u32, node: NodeIndex, count: u32) {
        let user = self.get_mut(at);
        if user.count > 0 && user.node == node {
            user.count = count;
            return;
        }
        let first_free = user.count == 0;
        let more = self
            .extra(at)
            .and_then(|extra| extra.counts.iter().position(|(n, _)| *n == node));
        match more {
            Some(p) if count == 0 => {
                self.extra_mut(at).counts.swap_remove(p);
                self.drop_empty_extra(at);
            }
            Some(p) => self.extra_mut(at).counts[p].1 = count,
            None if count == 0 => {}
            None if first_free => {
                let user = self.get_mut(at);
                (user.node, user.count) = (node, count);
            }
            None => self.extra_mut(at).counts.push((node, count)),
        }
    }

    /// Connections over all other nodes.
    pub(super) fn connections(&self, at: u32) -> u32 {
        let more = self.extra(at).map_or(0, |extra| {
            extra.counts.iter().map(|&(_, count)| count).sum()
        });
        self.get(at).count + more
    }

    /// The latest presence, if any.
    pub(super) fn presence(&self, at: u32) -> Option<Kept> {
        let user = self.get(at);
        let metadata = self.extra(at).and_then(|extra| extra.metadata.clone());
        Some((user.status?, metadata, user.last_seen))
    }

    /// The latest presence's status, if any.
    pub(super) fn status(&self, at: u32) -> Option<Status> {
        self.get(at).status
    }

    /// Sets the presence (`None`: none known).
    pub(super) fn set_presence(&mut self, at: u32, presence: Option<Kept>) {
        let (status, metadata, last_seen) = match presence {
            Some((status, metadata, last_seen)) => (Some(status), metadata, last_seen),
            None => (None, None, 0),
        };
        let user = self.get_mut(at);
        (user.status, user.last_seen) = (status, last_seen);
        if metadata.is_some() {
            self.extra_mut(at).metadata = metadata;
        } else if self.get(at).more {
            self.extra_mut(at).metadata = None;
            self.drop_empty_extra(at);
        }
    }

    /// The rooms the user is in on other nodes, in the order of arrival.
    pub(super) fn rooms(&self, at: u32) -> impl Iterator<Item = Membership> + '_ {
        let first = Some(self.get(at).room).filter(|&room| room != NO_ROOM);
        let more = self.extra(at).map_or(&[][..], |extra| &extra.rooms[..]);
        first.into_iter().chain(more.iter().copied())
    }

    /// The nodes' bits of the user's membership of `room`, if the user is in it.
    pub(super) fn room_bits(&self, at: u32, room: RoomIndex) -> Option<u32> {
        self.rooms(at)
            .find(|&(r, _)| r == room)
            .map(|(_, bits)| bits)
    }

    /// Sets the nodes' bits of the user's membership of `room`: 0 takes the room away, and a
    /// room the user was not in comes last.
    pub(super) fn set_room(&mut self, at: u32, room: RoomIndex, bits: u32) {
        let user = self.get_mut(at);
        if user.room.0 == room {
            if bits != 0 {
                user.room.1 = bits;
                return;
            }
            // The next room, if any, becomes the first.
            user.room = NO_ROOM;
            if self.get(at).more && !self.extra_mut(at).rooms.is_empty() {
                let next = self.extra_mut(at).rooms.remove(0);
                self.get_mut(at).room = next;
                self.drop_empty_extra(at);
            }
            return;
        }
        let more = self
            .extra(at)
            .and_then(|extra| extra.rooms.iter().position(|&(r, _)| r == room));
        match more {
            Some(p) if bits == 0 => {
                self.extra_mut(at).rooms.remove(p);
                self.drop_empty_extra(at);
            }
            Some(p) => self.extra_mut(at).rooms[p].1 = bits,
            None if bits == 0 => {}
            None if self.get(at).room == NO_ROOM => self.get_mut(at).room = (room, bits),
            None => self.extra_mut(at).rooms.push((room, bits)),
        }
    }

    /// Frees the entry at `at` if nothing is left in it; returns whether it did.
    pub(super) fn release(&mut self, at: u32) -> bool {
        let user = self.get(at);
        if user.count > 0 || user.more || user.room != NO_ROOM || user.status.is_some() {
            return false;
        }
        let hash = self.hasher.hash_one(self.id(at));
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == at) {
            entry.remove();
        }
        self.slab[at as usize] = None;
        self.free.push(at);
        true
    }

    /// The slab index of every user.
    pub(super) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.slab
            .iter()
            .zip(0..)
            .filter_map(|(user, at)| user.as_ref().map(|_| at))
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
        self.extra = self
            .extra
            .drain()
            .map(|(at, extra)| (moved[at as usize], extra))
            .collect();
        self.index = HashTable::with_capacity(self.slab.len());
        let (slab, hasher) = (&self.slab, &self.hasher);
        for at in 0..u32::try_from(slab.len()).unwrap_or(u32::MAX) {
            self.index
                .insert_unique(hash_at(slab, hasher, at), at, |&at| {
                    hash_at(slab, hasher, at)
                });
        }
        Some(moved)
    }
}

/// The hash of the id at `at`, as `Users::find` hashes the id it looks for.
fn hash_at(slab: &[Option<User>], hasher: &RandomState, at: u32) -> u64 {
    slab[at as usize]
        .as_ref()
        .map_or(0, |user| hasher.hash_one(user.id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(users: &Users, at: u32) -> Vec<Membership> {
        users.rooms(at).collect()
    }

    /// A remote user in one room, connected to one node, is an entry of 48 bytes with its id
    /// inside and nothing else (`tests/replica_memory.rs` measures the whole).
    #[test]
    fn a_user_on_one_node_in_one_room_is_one_entry() {
        assert!(std::mem::size_of::<Option<User>>() <= 48);
        let mut users = Users::default();
        let id = UserId::from_trusted("a-user-id-of-24-bytes-xy");
        let at = users.intern(&id);
        users.set_count(at, 3, 1);
        users.set_room(at, 7, 1 << 3);
        users.set_presence(at, Some((Status::Online, None, 5)));
        assert!(users.extra.is_empty());
        assert!(!users.get(at).id.is_heap_allocated());
        assert_eq!(users.find(&id), Some(at));
        assert_eq!(users.user_id(at), id);
    }

    #[test]
    fn more_rooms_and_nodes_go_to_the_side_and_come_back() {
        let mut users = Users::default();
        let at = users.intern(&UserId::from_trusted("u"));
        for room in 1..=3 {
            users.set_room(at, room, room);
        }
        users.set_count(at, 0, 1);
        users.set_count(at, 1, 2);
        assert_eq!(rooms(&users, at), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(users.connections(at), 3);
        users.set_room(at, 2, 6);
        assert_eq!(users.room_bits(at, 2), Some(6));
        users.set_room(at, 1, 0);
        assert_eq!(
            rooms(&users, at),
            [(2, 6), (3, 3)],
            "the next room comes first"
        );
        users.set_count(at, 0, 0);
        assert_eq!(users.count_on(at, 1), 2);
        users.set_count(at, 2, 4);
        assert_eq!(users.connections(at), 6);
        users.set_room(at, 3, 0);
        users.set_count(at, 2, 0);
        users.set_count(at, 1, 0);
        assert_eq!(rooms(&users, at), [(2, 6)]);
        assert!(users.extra.is_empty(), "nothing left aside");
        assert!(!users.release(at), "still in a room");
        users.set_room(at, 2, 0);
        assert!(users.release(at));
        assert_eq!(users.len(), 0);
    }

    #[test]
    fn metadata_is_kept_aside_and_a_long_id_on_the_heap() {
        let mut users = Users::default();
        let id = UserId::from_trusted("x".repeat(100));
        let at = users.intern(&id);
        let metadata = RawValue::from_string("{}".into()).map(Arc::from).ok();
        users.set_presence(at, Some((Status::Away, metadata.clone(), 9)));
        assert_eq!(
            users
                .presence(at)
                .map(|(_, m, _)| m.map(|m| m.get().to_owned())),
            Some(Some("{}".to_owned()))
        );
        users.set_presence(at, Some((Status::Online, None, 10)));
        assert!(users.extra.is_empty());
        assert_eq!(users.find(&id), Some(at));
        assert_eq!(users.user_id(at), id);
        users.set_presence(at, None);
        assert!(users.release(at));
    }
}
