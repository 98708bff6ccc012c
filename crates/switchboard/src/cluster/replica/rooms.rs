//! The replica's room table: each room with a member on another node, at a small index that
//! the users' memberships refer to (4 bytes, not the room's name), with the set of its users'
//! slab indices.

use std::collections::{HashMap, HashSet};

use super::users::RoomIndex;
use crate::ids::RoomId;

#[derive(Debug)]
struct Room {
    id: RoomId,
    /// Its users on other nodes (slab indices).
    users: HashSet<u32>,
}

/// The rooms. An index comes from [`Rooms::find`] or [`Rooms::intern`] and stays valid while
/// the room has users; reading a free index panics.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    slots: Vec<Option<Room>>,
    /// Free indices, reused first.
    free: Vec<RoomIndex>,
    index: HashMap<RoomId, RoomIndex>,
}

impl Rooms {
    /// The index of `id`.
    pub(super) fn find(&self, id: &RoomId) -> Option<RoomIndex> {
        self.index.get(id).copied()
    }

    /// The index of `id`, with a new room (keeping this copy of the id) if it had none. A new
    /// room must get a user ([`Rooms::add`]) before anything else.
    pub(super) fn intern(&mut self, id: &RoomId) -> RoomIndex {
        if let Some(at) = self.find(id) {
            return at;
        }
        let room = Some(Room {
            id: id.clone(),
            users: HashSet::new(),
        });
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = room;
                at
            }
            None => {
                self.slots.push(room);
                RoomIndex::try_from(self.slots.len() - 1).unwrap_or(RoomIndex::MAX)
            }
        };
        self.index.insert(id.clone(), at);
        at
    }

    fn get(&self, at: RoomIndex) -> &Room {
        self.slots[at as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("a free replica room was read"))
    }

    fn get_mut(&mut self, at: RoomIndex) -> &mut Room {
        self.slots[at as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("a free replica room was written"))
    }

    /// The room's id.
    pub(super) fn id(&self, at: RoomIndex) -> &RoomId {
        &self.get(at).id
    }

    /// The room's users (slab indices).
    pub(super) fn users(&self, at: RoomIndex) -> impl Iterator<Item = u32> + '_ {
        self.get(at).users.iter().copied()
    }

    /// Adds a user to the room.
    pub(super) fn add(&mut self, at: RoomIndex, user: u32) {
        self.get_mut(at).users.insert(user);
    }

    /// Takes a user out of the room; frees the room when it was the last.
    pub(super) fn remove(&mut self, at: RoomIndex, user: u32) {
        let users = &mut self.get_mut(at).users;
        users.remove(&user);
        if !users.is_empty() {
            if users.len() * 4 < users.capacity() {
                users.shrink_to_fit();
            }
            return;
        }
        if let Some(room) = self.slots[at as usize].take() {
            self.index.remove(&room.id);
        }
        self.free.push(at);
    }

    /// Every room's id.
    pub(super) fn ids(&self) -> impl Iterator<Item = &RoomId> {
        self.index.keys()
    }

    /// Renumbers the users after `Users::compact` (`moved`: old index -> new).
    pub(super) fn renumber(&mut self, moved: &[u32]) {
        for room in self.slots.iter_mut().flatten() {
            room.users = room.users.iter().map(|&at| moved[at as usize]).collect();
        }
    }

    /// Gives back the memory of rooms gone, once the table is much larger than the rooms.
    pub(super) fn shrink(&mut self) {
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        let len = self.slots.len();
        self.free.retain(|&at| (at as usize) < len);
        if self.index.len() * 4 < self.index.capacity() {
            self.index.shrink_to_fit();
            self.slots.shrink_to_fit();
            self.free.shrink_to_fit();
        }
    }
}
