//! Rooms: membership by connection, with a per-user count so that a user with two tabs in a room
//! is one member. A room exists while it has a local member: the first join creates it and the
//! last leave removes it.
//!
//! This part owns the room map and its count. Joins, leaves and purges return what happened; it
//! knows nothing of the broker or the cluster: the first and last local member of a room and
//! each user's connection count in it are told to a [`RoomObserver`] under the room's lock, so
//! that the calls for one room come in the order of the changes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use serde::Serialize;
use triomphe::Arc;

use super::shard::Sharded;
use super::top_rooms::TopRooms;
use super::user::UserState;
use super::{ConnHandle, RoomMembers};
use crate::ids::{ConnId, RoomId, UserId};

/// Told about each room's local membership, under the room's lock.
pub(super) trait RoomObserver {
    /// `room` got its first local member.
    fn room_occupied(&self, room: &RoomId);
    /// `user` now has `count` connections in `room` on this node (0: they left it here).
    fn member_connections(&self, room: &RoomId, user: &UserId, count: u32);
    /// `room`'s last local member left.
    fn room_vacated(&self, room: &RoomId);
}

/// One room's local members.
#[derive(Default)]
struct Room {
    /// Handles keyed by their own id (one word per member), hashed with the rooms' hasher.
    members: HashTable<ConnHandle>,
    /// Connections per user in this room, each user by its state (one word, where a `UserId`
    /// takes two), found by the state's id hashed with the rooms' hasher. A user who connects
    /// again while an older connection is still in the room finds the entry by id, and the
    /// older state lives until the entry goes.
    users: HashTable<(Arc<UserState>, u32)>,
}

impl Room {
    /// Adds a connection; returns its user's connections in the room after the join, or `None`
    /// when it was a member already.
    fn add(&mut self, conn: &ConnHandle, hasher: &RandomState) -> Option<u32> {
        let id = conn.id();
        let slot = self.members.entry(
            hasher.hash_one(id),
            |member| member.id() == id,
            |member| hasher.hash_one(member.id()),
        );
        let hashbrown::hash_table::Entry::Vacant(slot) = slot else {
            return None;
        };
        slot.insert(conn.clone());
        let user = conn.user();
        let (_, count) = self
            .users
            .entry(hasher.hash_one(user), is_user(user), |(state, _)| {
                hasher.hash_one(state.user())
            })
            .or_insert_with(|| (conn.user_state().clone(), 0))
            .into_mut();
        *count += 1;
        Some(*count)
    }

    /// Removes a connection; returns its user's connections left in the room, or `None` when
    /// it was not a member.
    fn remove(&mut self, conn: ConnId, user: &UserId, hasher: &RandomState) -> Option<u32> {
        let found = self
            .members
            .find_entry(hasher.hash_one(conn), |member| member.id() == conn);
        found.ok()?.remove();
        let Ok(mut entry) = self.users.find_entry(hasher.hash_one(user), is_user(user)) else {
            return Some(0);
        };
        let (_, count) = entry.get_mut();
        if *count > 1 {
            *count -= 1;
            return Some(*count);
        }
        entry.remove();
        Some(0)
    }

    /// Whether `user` has a connection in the room.
    fn has_user(&self, user: &UserId, hasher: &RandomState) -> bool {
        self.users
            .find(hasher.hash_one(user), is_user(user))
            .is_some()
    }

    /// The room's users, with their connections in it.
    fn users(&self) -> impl Iterator<Item = (&UserId, u32)> {
        self.users
            .iter()
            .map(|(state, count)| (state.user(), *count))
    }
}

/// Whether a room's count entry is `user`'s.
fn is_user(user: &UserId) -> impl Fn(&(Arc<UserState>, u32)) -> bool {
    move |(state, _)| state.user() == user
}

/// What a join changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The connection was a member already: nothing changed.
    Already,
    /// The connection joined; its user now has `user_connections` connections in the room here.
    Joined {
        /// The user's connections in the room on this node, this one included.
        user_connections: u32,
    },
}

/// A room as listed by the library and server APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room.
    pub room: RoomId,
    /// Distinct users in the room.
    pub members: usize,
    /// Connections in the room.
    pub connections: usize,
}

/// A room's distinct users, listed up to a cap, and counted exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberList {
    /// At most the cap asked for.
    pub(crate) users: Vec<UserId>,
    /// Every distinct user.
    pub(crate) count: usize,
}

/// What a purge removed.
#[derive(Default)]
pub(super) struct Purged {
    /// Each removed membership.
    pub(super) members: Vec<(RoomId, ConnHandle)>,
    /// Rooms left empty and removed.
    pub(super) rooms: usize,
}

/// The node's rooms.
pub(super) struct Rooms {
    rooms: Sharded<RoomId, Room>,
    count: AtomicUsize,
    /// Hashes connection ids in every room's member table.
    hasher: RandomState,
}

impl Rooms {
    pub(super) fn new() -> Self {
        Self {
            rooms: Sharded::new(),
            count: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }

    /// Adds `conn` to `room`, creating the room on its first member.
    pub(super) fn join(
        &self,
        room: &RoomId,
        conn: &ConnHandle,
        observer: &impl RoomObserver,
    ) -> Joined {
        let mut rooms = self.rooms.write(room);
        let entry = rooms.entry(room.clone()).or_insert_with(|| {
            self.count.fetch_add(1, Ordering::Relaxed);
            observer.room_occupied(room);
            Room::default()
        });
        match entry.add(conn, &self.hasher) {
            None => Joined::Already,
            Some(user_connections) => {
                observer.member_connections(room, conn.user(), user_connections);
                Joined::Joined { user_connections }
            }
        }
    }

    /// The room's own copy of its name when it exists here, else a copy of `room`: those who
    /// keep a joined room's name keep this one, so that every member shares one allocation
    /// instead of holding the name its join parsed.
    pub(super) fn shared_name(&self, room: &RoomId) -> RoomId {
        let rooms = self.rooms.read(room);
        rooms
            .get_key_value(room)
            .map_or_else(|| room.clone(), |(name, _)| name.clone())
    }

    /// Removes `conn` from `room`, deleting the room when it empties. Returns the user's
    /// connections left in the room here, or `None` when `conn` was not a member.
    pub(super) fn leave(
        &self,
        room: &RoomId,
        conn: &ConnHandle,
        observer: &impl RoomObserver,
    ) -> Option<u32> {
        let mut rooms = self.rooms.write(room);
        let Entry::Occupied(mut entry) = rooms.entry(room.clone()) else {
            return None;
        };
        let remaining = entry
            .get_mut()
            .remove(conn.id(), conn.user(), &self.hasher)?;
        observer.member_connections(room, conn.user(), remaining);
        if entry.get().members.is_empty() {
            entry.remove();
            self.count.fetch_sub(1, Ordering::Relaxed);
            observer.room_vacated(room);
        }
        Some(remaining)
    }

    /// Removes the connections for which `dead` holds from every room, and rooms left empty.
    pub(super) fn purge(
        &self,
        dead: impl Fn(&ConnHandle) -> bool,
        observer: &impl RoomObserver,
    ) -> Purged {
        let mut purged = Purged::default();
        self.rooms.retain(|room, entry| {
            let gone: Vec<ConnHandle> = entry.members.iter().filter(|h| dead(h)).cloned().collect();
            for handle in gone {
                if let Some(remaining) = entry.remove(handle.id(), handle.user(), &self.hasher) {
                    observer.member_connections(room, handle.user(), remaining);
                    purged.members.push((room.clone(), handle));
                }
            }
            let keep = !entry.members.is_empty();
            if !keep {
                purged.rooms += 1;
                self.count.fetch_sub(1, Ordering::Relaxed);
                observer.room_vacated(room);
            }
            keep
        });
        purged
    }

    /// Offers a frame to each member of `room` but `except` with `deliver`; returns how many
    /// took it. One shard read lock, no allocation.
    pub(super) fn deliver(
        &self,
        room: &RoomId,
        except: Option<ConnId>,
        mut deliver: impl FnMut(&ConnHandle) -> bool,
    ) -> usize {
        let rooms = self.rooms.read(room);
        let Some(entry) = rooms.get(room) else {
            return 0;
        };
        let mut delivered = 0;
        for handle in &entry.members {
            if Some(handle.id()) != except && deliver(handle) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Adds the connections in `room` to `into`.
    pub(super) fn collect_members(&self, room: &RoomId, into: &mut HashMap<ConnId, ConnHandle>) {
        if let Some(entry) = self.rooms.read(room).get(room) {
            into.extend(entry.members.iter().map(|h| (h.id(), h.clone())));
        }
    }

    /// How many connections of `room` are not `except`.
    pub(super) fn connection_count(&self, room: &RoomId, except: Option<ConnId>) -> usize {
        let rooms = self.rooms.read(room);
        rooms.get(room).map_or(0, |entry| {
            let excluded = except.is_some_and(|id| {
                let found = entry
                    .members
                    .find(self.hasher.hash_one(id), |m| m.id() == id);
                found.is_some()
            });
            entry.members.len() - usize::from(excluded)
        })
    }

    /// Whether `room` has a local member.
    pub(super) fn contains(&self, room: &RoomId) -> bool {
        self.rooms.read(room).contains_key(room)
    }

    /// Whether `user` is in `room` on this node.
    pub(super) fn has_user(&self, room: &RoomId, user: &UserId) -> bool {
        let rooms = self.rooms.read(room);
        rooms
            .get(room)
            .is_some_and(|entry| entry.has_user(user, &self.hasher))
    }

    /// The room's local users followed by `others` not among them: at most `cap` listed, all
    /// counted.
    pub(super) fn member_list(&self, room: &RoomId, others: Vec<UserId>, cap: usize) -> MemberList {
        let rooms = self.rooms.read(room);
        let local = rooms.get(room);
        let mut users: Vec<UserId> = local
            .map(|entry| {
                entry
                    .users()
                    .take(cap)
                    .map(|(user, _)| user.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut count = local.map_or(0, |entry| entry.users.len());
        for user in others {
            if local.is_some_and(|entry| entry.has_user(&user, &self.hasher)) {
                continue;
            }
            count += 1;
            if users.len() < cap {
                users.push(user);
            }
        }
        MemberList { users, count }
    }

    /// The connections in `room`.
    pub(super) fn connections(&self, room: &RoomId) -> Vec<ConnHandle> {
        let rooms = self.rooms.read(room);
        rooms
            .get(room)
            .map(|entry| entry.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every room with its member counts.
    pub(super) fn summaries(&self) -> Vec<RoomSummary> {
        let mut all = Vec::new();
        self.rooms.for_each(|room, entry| {
            all.push(RoomSummary {
                room: room.clone(),
                members: entry.users.len(),
                connections: entry.members.len(),
            });
        });
        all
    }

    /// The `n` rooms with the most distinct users, most first (ties by name); one pass, only
    /// the rooms that enter the running top are cloned.
    pub(super) fn top(&self, n: usize) -> Vec<RoomMembers> {
        let mut top = TopRooms::new(n);
        self.rooms
            .for_each(|room, entry| top.offer(room, entry.users.len()));
        top.into_sorted()
    }

    /// Visits every room with its distinct users.
    pub(super) fn for_each(
        &self,
        mut visit: impl FnMut(&RoomId, &mut dyn Iterator<Item = (&UserId, u32)>),
    ) {
        self.rooms.for_each(|room, entry| {
            visit(room, &mut entry.users());
        });
    }

    /// Rooms with at least one local member.
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
