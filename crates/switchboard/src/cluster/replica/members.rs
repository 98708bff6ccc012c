//! A remote user's rooms: per room, the set of other nodes where the user is in it, as bits
//! of a `u64` for the first 63 nodes of the node table and in a side table past them (a
//! cluster rarely has that many), and the room's own set of users. Arrivals in a room on the
//! first other node and departures from the last are the replica's `Joined` and `Left`.

use std::collections::HashSet;

use super::users::NodeIndex;
use super::{Change, Replica};
use crate::ids::{RoomId, UserId};

/// A membership's nodes are bits 0..WIDE_BIT of a `u64`; this bit says more are in `wide`.
const WIDE_BIT: NodeIndex = 63;

impl Replica {
    /// Sets whether `node` has `user` in `room` (`count` connections there).
    pub(super) fn set_member(
        &mut self,
        node: NodeIndex,
        room: &RoomId,
        user: &UserId,
        count: u32,
        changes: &mut Vec<Change>,
    ) {
        let is = count > 0;
        let at = if is {
            self.users.intern(user)
        } else if let Some(at) = self.users.find(user) {
            at
        } else {
            return;
        };
        let position = self.users.get(at).rooms.iter().position(|(r, _)| r == room);
        let bits = position.map_or(0, |p| self.users.get(at).rooms[p].1);
        let was = position.is_some() && self.holds(bits, room, at, node);
        if was == is {
            return;
        }
        if let Some(p) = position {
            let bits = self.with_node(bits, room, at, node, is);
            if bits != 0 {
                self.users.get_mut(at).rooms[p].1 = bits;
                return;
            }
            // Out of the room on its last node.
            let entry = self.users.get_mut(at);
            let (room, _) = entry.rooms.remove(p);
            let user = entry.id.clone();
            if let Some(users) = self.rooms.get_mut(&room) {
                users.remove(&at);
                if users.is_empty() {
                    self.rooms.remove(&room);
                } else {
                    shrink_set(users);
                }
            }
            self.users.release(at);
            changes.push(Change::Left { room, user });
        } else {
            let room = match self.rooms.get_key_value(room) {
                Some((room, _)) => room.clone(),
                None => room.clone(),
            };
            let bits = self.with_node(0, &room, at, node, true);
            self.rooms.entry(room.clone()).or_default().insert(at);
            let entry = self.users.get_mut(at);
            entry.rooms.push((room.clone(), bits));
            let user = entry.id.clone();
            changes.push(Change::Joined { room, user });
        }
    }

    /// Whether the membership bits `bits` of `user` (slab index) in `room` include `node`.
    pub(super) fn holds(&self, bits: u64, room: &RoomId, user: u32, node: NodeIndex) -> bool {
        if node < WIDE_BIT {
            return bits & (1 << node) != 0;
        }
        bits & (1 << WIDE_BIT) != 0
            && self
                .wide
                .get(&(room.clone(), user))
                .is_some_and(|nodes| nodes.contains(&node))
    }

    /// The membership bits `bits` with `node` added (`on`) or taken away.
    fn with_node(&mut self, bits: u64, room: &RoomId, user: u32, node: NodeIndex, on: bool) -> u64 {
        if node < WIDE_BIT {
            let bit = 1 << node;
            return if on { bits | bit } else { bits & !bit };
        }
        let key = (room.clone(), user);
        let nodes = self.wide.entry(key.clone()).or_default();
        if on {
            nodes.push(node);
        } else {
            nodes.retain(|&other| other != node);
        }
        if nodes.is_empty() {
            self.wide.remove(&key);
            bits & !(1 << WIDE_BIT)
        } else {
            bits | 1 << WIDE_BIT
        }
    }
}

/// As `shrink`, for a room's users.
fn shrink_set(set: &mut HashSet<u32>) {
    if set.len() * 4 < set.capacity() {
        set.shrink_to_fit();
    }
}
