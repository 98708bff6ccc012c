//! Rooms: membership by connection, with a per-user count so that `user_joined` and `user_left`
//! describe users (a user with two tabs in a room is one member). A room exists while it has a
//! member: it is created by the first join and removed with the last leave.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;

use super::{ConnHandle, ConnInfo, Hub, RoomMembers};
use crate::broker::Topic;
use crate::cluster::Event;
use crate::ids::{ConnId, RoomId, UserId};

/// Most members listed in a `room_joined` reply; `memberCount` is always exact.
pub(crate) const MAX_MEMBERS_LISTED: usize = 1000;

#[derive(Default)]
pub(crate) struct Room {
    members: HashMap<ConnId, ConnHandle>,
    /// Connections per user in this room.
    users: HashMap<UserId, u32>,
}

impl Room {
    pub(super) fn has_user(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub(super) fn users(&self) -> impl Iterator<Item = (&UserId, &u32)> {
        self.users.iter()
    }
}

/// Payload of `user_joined` and `user_left`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberEvent<'a> {
    pub(crate) user_id: &'a UserId,
    pub(crate) room: &'a RoomId,
}

/// The outcome of a join.
#[derive(Debug)]
pub(crate) struct Joined {
    /// Whether the connection was not a member before (false: nothing changed).
    pub(crate) new: bool,
    /// Whether it is the user's first connection in the room (others see `user_joined`).
    pub(crate) first_of_user: bool,
    /// The room's users, at most [`MAX_MEMBERS_LISTED`].
    pub(crate) members: Vec<UserId>,
    /// The number of distinct users in the room.
    pub(crate) member_count: usize,
}

/// The outcome of a leave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Left {
    /// The connection was not a member.
    NotMember,
    /// The connection left.
    Left {
        /// Whether it was the user's last connection in the room (others see `user_left`).
        last_of_user: bool,
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

impl Hub {
    /// Adds `conn` to `room`, creating the room (and subscribing the broker) on first join.
    pub(crate) fn join_room(&self, room: &RoomId, conn: &ConnHandle) -> Joined {
        let inner = &self.inner;
        let mut rooms = inner.rooms.write(room);
        let entry = rooms.entry(room.clone()).or_insert_with(|| {
            inner.room_count.fetch_add(1, Ordering::Relaxed);
            inner.broker.subscribe(&Topic::Room(room.clone()));
            Room::default()
        });
        let new = entry.members.insert(conn.id(), conn.clone()).is_none();
        let mut first_of_user = false;
        if new {
            conn.user_state().add_room(room);
            let count = entry.users.entry(conn.user().clone()).or_insert(0);
            *count += 1;
            let count = *count;
            first_of_user = count == 1 && !self.in_room_elsewhere(room, conn.user());
            self.announce(|| Event::Member {
                room: room.clone(),
                user: conn.user().clone(),
                count,
            });
        }
        let mut members: Vec<UserId> = entry
            .users
            .keys()
            .take(MAX_MEMBERS_LISTED)
            .cloned()
            .collect();
        let mut member_count = entry.users.len();
        // Members on other nodes count too (each user once).
        self.with_replica(|replica| {
            for user in replica.room_users(room) {
                if !entry.users.contains_key(&user) {
                    member_count += 1;
                    if members.len() < MAX_MEMBERS_LISTED {
                        members.push(user);
                    }
                }
            }
        });
        Joined {
            new,
            first_of_user,
            members,
            member_count,
        }
    }

    /// Removes `conn` from `room`, deleting the room (and unsubscribing) when it empties.
    pub(crate) fn leave_room(&self, room: &RoomId, conn: &ConnHandle) -> Left {
        let inner = &self.inner;
        let mut rooms = inner.rooms.write(room);
        let Entry::Occupied(mut entry) = rooms.entry(room.clone()) else {
            return Left::NotMember;
        };
        if entry.get_mut().members.remove(&conn.id()).is_none() {
            return Left::NotMember;
        }
        conn.user_state().remove_room(room);
        let users = &mut entry.get_mut().users;
        let remaining = match users.get_mut(conn.user()) {
            Some(count) if *count > 1 => {
                *count -= 1;
                *count
            }
            _ => {
                users.remove(conn.user());
                0
            }
        };
        self.announce(|| Event::Member {
            room: room.clone(),
            user: conn.user().clone(),
            count: remaining,
        });
        let last_of_user = remaining == 0 && !self.in_room_elsewhere(room, conn.user());
        if entry.get().members.is_empty() {
            entry.remove();
            inner.room_count.fetch_sub(1, Ordering::Relaxed);
            inner.broker.unsubscribe(&Topic::Room(room.clone()));
        }
        Left::Left { last_of_user }
    }

    pub(crate) fn deliver_to_room(
        &self,
        room: &RoomId,
        frame: &Bytes,
        except: Option<ConnId>,
    ) -> usize {
        let rooms = self.inner.rooms.read(room);
        let Some(entry) = rooms.get(room) else {
            return 0;
        };
        let mut delivered = 0;
        for (id, handle) in &entry.members {
            if Some(*id) != except && self.deliver(handle, frame) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Every room on this node with its member counts.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let mut all = Vec::new();
        self.inner.rooms.for_each(|room, entry| {
            all.push(RoomSummary {
                room: room.clone(),
                members: entry.users.len(),
                connections: entry.members.len(),
            });
        });
        all
    }

    /// The `n` rooms on this node with the most members (distinct users), most first; rooms
    /// with as many members are ordered by name. One pass over the rooms, one shard read lock
    /// at a time; only rooms that enter the running top `n` are cloned.
    pub fn top_rooms(&self, n: usize) -> Vec<RoomMembers> {
        let mut top = TopRooms::new(n);
        self.inner.rooms.for_each(|room, entry| {
            top.offer(room, entry.users.len());
        });
        top.into_sorted()
    }

    /// [`top_rooms`](Self::top_rooms) over the whole cluster: a user in a room on two nodes
    /// counts once. On a lone node, the same as `top_rooms`.
    pub fn cluster_top_rooms(&self, n: usize) -> Vec<RoomMembers> {
        let mut members: HashMap<RoomId, HashSet<UserId>> = HashMap::new();
        self.inner.rooms.for_each(|room, entry| {
            members
                .entry(room.clone())
                .or_default()
                .extend(entry.users.keys().cloned());
        });
        self.with_replica(|replica| {
            for room in replica.rooms() {
                members
                    .entry(room.clone())
                    .or_default()
                    .extend(replica.room_users(room));
            }
        });
        let mut top = TopRooms::new(n);
        for (room, users) in &members {
            top.offer(room, users.len());
        }
        top.into_sorted()
    }

    /// The distinct users in `room`, on this node and (in a cluster) on every other node.
    pub fn room_members(&self, room: &RoomId) -> Vec<UserId> {
        let mut members: Vec<UserId> = self
            .inner
            .rooms
            .read(room)
            .get(room)
            .map(|entry| entry.users.keys().cloned().collect())
            .unwrap_or_default();
        self.add_remote_members(room, &mut members);
        members
    }

    /// Adds the users in `room` on other nodes that are not in `members` yet.
    pub(crate) fn add_remote_members(&self, room: &RoomId, members: &mut Vec<UserId>) {
        self.with_replica(|replica| {
            let known: std::collections::HashSet<UserId> = members.iter().cloned().collect();
            members.extend(
                replica
                    .room_users(room)
                    .into_iter()
                    .filter(|user| !known.contains(user)),
            );
        });
    }

    /// The connections in `room` on this node.
    pub fn room_connections(&self, room: &RoomId) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let rooms = self.inner.rooms.read(room);
        rooms
            .get(room)
            .map(|entry| entry.members.values().map(|h| h.info(now)).collect())
            .unwrap_or_default()
    }

    /// Adds the connections in `room` to `into`.
    pub(crate) fn collect_room_members(
        &self,
        room: &RoomId,
        into: &mut HashMap<ConnId, ConnHandle>,
    ) {
        if let Some(entry) = self.inner.rooms.read(room).get(room) {
            into.extend(entry.members.iter().map(|(id, h)| (*id, h.clone())));
        }
    }

    /// Removes the connections for which `dead` holds from every room, and rooms left empty.
    /// Returns (members removed, rooms removed).
    pub(crate) fn purge_rooms(&self, dead: impl Fn(&ConnHandle) -> bool) -> (usize, usize) {
        let inner = &self.inner;
        let (mut members_removed, mut rooms_removed) = (0, 0);
        inner.rooms.retain(|room, entry| {
            entry.members.retain(|_, handle| {
                if !dead(handle) {
                    return true;
                }
                members_removed += 1;
                handle.user_state().remove_room(room);
                let remaining = match entry.users.get_mut(handle.user()) {
                    Some(count) if *count > 1 => {
                        *count -= 1;
                        *count
                    }
                    _ => {
                        entry.users.remove(handle.user());
                        0
                    }
                };
                self.announce(|| Event::Member {
                    room: room.clone(),
                    user: handle.user().clone(),
                    count: remaining,
                });
                false
            });
            let keep = !entry.members.is_empty();
            if !keep {
                rooms_removed += 1;
                inner.room_count.fetch_sub(1, Ordering::Relaxed);
                inner.broker.unsubscribe(&Topic::Room(room.clone()));
            }
            keep
        });
        (members_removed, rooms_removed)
    }
}

/// The running top `n` rooms of a pass: a min-heap whose root is the weakest room kept.
struct TopRooms {
    n: usize,
    /// Ordered by (members, reversed name): the greatest is the best room.
    heap: BinaryHeap<Reverse<(usize, Reverse<RoomId>)>>,
}

impl TopRooms {
    fn new(n: usize) -> Self {
        Self {
            n,
            heap: BinaryHeap::with_capacity(n + 1),
        }
    }

    /// Considers `room` with `members`; clones it only if it enters the top `n`.
    fn offer(&mut self, room: &RoomId, members: usize) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() == self.n {
            let Some(Reverse((weakest, Reverse(name)))) = self.heap.peek() else {
                return;
            };
            if members < *weakest || (members == *weakest && room >= name) {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(Reverse((members, Reverse(room.clone()))));
    }

    /// The rooms kept, best first.
    fn into_sorted(self) -> Vec<RoomMembers> {
        // Ascending order of `Reverse(key)` is descending order of the key: best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse((members, Reverse(room)))| RoomMembers { room, members })
            .collect()
    }
}

#[cfg(test)]
mod top_rooms_tests {
    use super::*;

    fn top(n: usize, rooms: &[(&str, usize)]) -> Vec<(String, usize)> {
        let mut top = TopRooms::new(n);
        for (room, members) in rooms {
            top.offer(&RoomId::from_trusted(*room), *members);
        }
        top.into_sorted()
            .into_iter()
            .map(|r| (r.room.as_str().to_owned(), r.members))
            .collect()
    }

    #[test]
    fn keeps_the_largest_rooms_most_first_and_ties_by_name() {
        let rooms = [("d", 1), ("b", 5), ("a", 2), ("c", 5), ("e", 9), ("f", 2)];
        assert_eq!(
            top(4, &rooms),
            vec![
                ("e".into(), 9),
                ("b".into(), 5),
                ("c".into(), 5),
                ("a".into(), 2)
            ]
        );
        assert_eq!(top(10, &rooms).len(), 6);
        assert_eq!(top(0, &rooms), vec![]);
        assert_eq!(top(3, &[]), vec![]);
    }
}
