//! A remote user's rooms: per room, the set of other nodes where the user is in it, as bits
//! of a `u32` for the first 31 nodes of the node table and in a side table past them (a
//! cluster rarely has that many), and the room's own set of users. Arrivals in a room on the
//! first other node and departures from the last are the replica's `Joined` and `Left`.

use super::users::{NodeIndex, RoomIndex};
use super::{Change, Replica};
use crate::ids::{RoomId, UserId};

/// A membership's nodes are bits 0..WIDE_BIT of a `u32`; this bit says more are in `wide`.
const WIDE_BIT: NodeIndex = 31;

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
        let found = if is {
            Some((self.users.intern(user), self.rooms.intern(room)))
        } else {
            self.users.find(user).zip(self.rooms.find(room))
        };
        let Some((at, index)) = found else {
            return;
        };
        let bits = self.users.room_bits(at, index);
        let was = bits.is_some_and(|bits| self.holds(bits, index, at, node));
        if was == is {
            return;
        }
        let new = self.with_node(bits.unwrap_or(0), index, at, node, is);
        self.users.set_room(at, index, new);
        if new == 0 {
            // Out of the room on its last node.
            self.rooms.remove(index, at);
            self.users.release(at);
            changes.push(Change::Left {
                room: room.clone(),
                user: user.clone(),
            });
        } else if bits.is_none() {
            self.rooms.add(index, at);
            changes.push(Change::Joined {
                room: self.rooms.id(index).clone(),
                user: user.clone(),
            });
        }
    }

    /// Whether the membership bits `bits` of `user` (slab index) in `room` include `node`.
    pub(super) fn holds(&self, bits: u32, room: RoomIndex, user: u32, node: NodeIndex) -> bool {
        if node < WIDE_BIT {
            return bits & (1 << node) != 0;
        }
        bits & (1 << WIDE_BIT) != 0
            && self
                .wide
                .get(&(room, user))
                .is_some_and(|nodes| nodes.contains(&node))
    }

    /// The membership bits `bits` with `node` added (`on`) or taken away.
    fn with_node(
        &mut self,
        bits: u32,
        room: RoomIndex,
        user: u32,
        node: NodeIndex,
        on: bool,
    ) -> u32 {
        if node < WIDE_BIT {
            let bit = 1 << node;
            return if on { bits | bit } else { bits & !bit };
        }
        let nodes = self.wide.entry((room, user)).or_default();
        if on {
            nodes.push(node);
        } else {
            nodes.retain(|&other| other != node);
        }
        if nodes.is_empty() {
            self.wide.remove(&(room, user));
            bits & !(1 << WIDE_BIT)
        } else {
            bits | 1 << WIDE_BIT
        }
    }
}
