//! This node's copy of what the *other* nodes hold: their users (with connection counts), room
//! memberships and the latest presence of their users (their channels only the state store
//! counts). Pure data: events and snapshots go in, the changes this node must announce to its
//! own clients come out.
//!
//! Every fact is keyed by node and carries an absolute count, so applying an event twice, or a
//! snapshot after events, converges to the same state. Events and snapshots of a node also
//! carry its [`Version`], so that what a snapshot already holds is not applied again when
//! the event that brought it arrives after the snapshot (a node's events and its snapshot
//! reach the others by different connections): each change is shown to clients once, and
//! computed against the state that preceded it.
//!
//! A user's presence is kept once, the latest any node reported (not once per node), or this
//! node's own change of a user it connects too ([`Replica::shown_here`]): what this node's
//! clients saw last. A reloaded node's snapshot shows a presence change when it differs from
//! that. The layout is sized for many remote members (issue 15:
//! ≈100 B of RSS each); `tests/replica_memory.rs` holds it to that.

mod members;
mod nodes;
mod rooms;
mod users;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, RoomId, UserId};
use crate::presence::{Presence, Status};
use nodes::Node;
use rooms::Rooms;
use users::{NodeIndex, RoomIndex, Users};

/// A change one node announces to the others. Counts are absolute (the node's new total).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    /// The node has `count` connections of `user` (0: none left).
    User {
        /// The user.
        user: UserId,
        /// Their connections on the node.
        count: u32,
    },
    /// The node has `count` connections of `user` in `room` (0: the user left it there).
    Member {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// Their connections in the room on the node.
        count: u32,
    },
    /// The node has (or no longer has) a subscriber for a channel or pattern.
    Channel {
        /// The channel name, or a pattern ending in `*`.
        channel: String,
        /// Whether the node has a subscriber.
        present: bool,
    },
    /// A user's presence changed on the node.
    Presence(Presence),
    /// The user's connections on the node went idle: their presence there is now this `away`.
    /// Another node where the user is active shows nothing and reports its own presence
    /// again, since a user is away only once all of their connections are idle.
    Idle(Presence),
    /// The node rewrote its whole state (after a reconnect): reload it.
    Reload,
    /// The node is gone: it stopped refreshing its liveness key (announced by its reaper), or
    /// it left the cluster on a clean stop (announced by itself).
    Dead {
        /// The dead node.
        node: NodeId,
    },
}

/// Where an event or a snapshot stands in its node's sequence of announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The node's process, random at start: a node restarted under the same id begins a new
    /// sequence.
    pub instance: u64,
    /// Announcements the process had made, this one included.
    pub seq: u64,
}

impl Version {
    /// Whether the node's state at `self` already holds what happened at `other`.
    fn covers(self, other: Version) -> bool {
        self.instance == other.instance && self.seq >= other.seq
    }
}

/// Everything one node holds, as stored in its Redis hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The last announcement the state includes (`None`: not versioned, such as the hub's
    /// own snapshot before it is written).
    pub version: Option<Version>,
    /// Connections per user.
    pub users: HashMap<UserId, u32>,
    /// Connections per user per room.
    pub members: HashMap<(RoomId, UserId), u32>,
    /// Channels and patterns with a subscriber.
    pub channels: HashSet<String>,
    /// The presence of each connected user.
    pub presence: HashMap<UserId, Presence>,
}

/// What a replica change means for this node's clients. The hub still checks its own local
/// state (a user who left a room remotely may still be in it here).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `user` is no longer in `room` on any other node.
    Left {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// `user` is now in `room` on another node, and was in it on no other node before.
    Joined {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// A user's presence as another node reports it. An `offline` presence means the user has
    /// no connection on any other node, or chose to appear offline there.
    Presence {
        /// The presence.
        presence: Presence,
        /// The user's rooms on other nodes.
        rooms: Vec<RoomId>,
        /// The `away` of a node where the user's connections went idle ([`Event::Idle`]).
        idle: bool,
    },
}

/// The replica.
///
/// A remote user is one entry of a slab (its id, connection counts per node, latest presence
/// and rooms, each room with the set of nodes where), found through a table of slab indices;
/// a room is an entry of the room table (its id and the set of its users' slab indices); a
/// node is a small index into the node table. Ids are interned: one copy per distinct user or
/// room, whichever event brought it. What one node holds is not kept apart: `replace` (a
/// node's reload or death, rare) derives it by scanning the users.
#[derive(Debug, Default)]
pub struct Replica {
    /// The node table: a node's index is its place; free places are reused.
    nodes: Vec<Option<Node>>,
    node_index: HashMap<NodeId, NodeIndex>,
    users: Users,
    rooms: Rooms,
    /// The nodes past the membership bits (index `WIDE_BIT` and above) where a user (slab
    /// index) is in a room; such a membership has `WIDE_BIT` set.
    wide: HashMap<(RoomIndex, u32), Vec<NodeIndex>>,
}

/// What a node held, derived before a `replace`.
struct Held {
    users: HashSet<UserId>,
    members: Vec<(RoomId, UserId)>,
}

impl Replica {
    /// Applies an event from `origin`; returns what it means for this node's clients. A user's
    /// arrival in a room on the first other node, or departure from the last, is a
    /// [`Change`], whichever brings it first: this event, or a snapshot of the origin loaded
    /// before or after it. That makes it the one source of another node's `user_joined` and
    /// `user_left` here, announced once (the origin tells only its own clients). A presence is
    /// a [`Change`] when it differs (status or metadata) from the latest one this replica holds
    /// of the user, whichever brought that one: an `online` is shown once, although a node's
    /// snapshot may already hold the presence its next events announce (the node rewrites its
    /// whole state after a reconnect, events still queued included); an `offline` the user
    /// chose while connected there ("appear offline") is such a presence too. An `offline`
    /// that reports the origin's last connection of the user closing is a [`Change`] unless
    /// another node still has one (a node reports it whether or not it knows of the others:
    /// two tabs on two nodes that close at once each think the other remains).
    ///
    /// An event older than what the replica holds of `origin` (`version` covered) changes
    /// nothing; one from a new process under the same id first drops what the old one held.
    pub fn apply(
        &mut self,
        origin: &NodeId,
        event: Event,
        version: Option<Version>,
    ) -> Vec<Change> {
        let Some(version) = version else {
            return self.apply_event(origin, event);
        };
        let mut changes = Vec::new();
        match self.version(origin) {
            Some(known) if known.covers(version) => return changes,
            Some(known) if known.instance != version.instance => {
                changes = self.replace(origin, Some(Snapshot::default()));
            }
            _ => {}
        }
        let node = self.node(origin);
        self.node_mut(node).version = Some(version);
        changes.extend(self.apply_event(origin, event));
        changes
    }

    fn apply_event(&mut self, origin: &NodeId, event: Event) -> Vec<Change> {
        match event {
            Event::User { user, count } => {
                let node = self.node(origin);
                self.set_user(node, &user, count);
                if self.user_connections(&user) == 0 {
                    self.take_presence(&user);
                }
            }
            Event::Member { room, user, count } => {
                let node = self.node(origin);
                let mut changes = Vec::new();
                self.set_member(node, &room, &user, count, &mut changes);
                return changes;
            }
            // The state store counts channels (`/stats?scope=cluster`); nothing here needs
            // the others'.
            Event::Channel { .. } => {
                self.node(origin);
            }
            Event::Presence(presence) => return self.apply_presence(origin, presence, false),
            Event::Idle(presence) => return self.apply_presence(origin, presence, true),
            Event::Reload => {}
            Event::Dead { node } => return self.replace(&node, None),
        }
        Vec::new()
    }

    /// Applies a presence `origin` reported ([`Event::Presence`], or [`Event::Idle`] when
    /// `idle`).
    fn apply_presence(&mut self, origin: &NodeId, presence: Presence, idle: bool) -> Vec<Change> {
        let node = self.node(origin);
        let user = &presence.user_id;
        // Not a choice ("appear offline") while connected there: the origin's last connection
        // of the user closed.
        let gone_there = presence.status == Status::Offline
            && self
                .users
                .find(user)
                .is_none_or(|at| self.users.count_on(at, node) == 0);
        if gone_there {
            if self.user_connections(user) > 0 {
                // Others remain.
                return Vec::new();
            }
            self.take_presence(user);
        } else {
            let shown = self
                .presence(user)
                .is_some_and(|held| held.shows_the_same(&presence));
            self.set_presence(user, &presence);
            if shown {
                return Vec::new();
            }
        }
        let rooms = self.user_rooms(user);
        vec![Change::Presence {
            presence,
            rooms,
            idle,
        }]
    }

    /// Replaces everything `node` holds (`None`: the node is gone) and says what changed for
    /// clients: users no longer connected anywhere else go offline (announced first), then
    /// other presence changes, then room departures and arrivals. A snapshot older than what
    /// the replica holds of the node (its version covered) changes nothing.
    pub fn replace(&mut self, node: &NodeId, snapshot: Option<Snapshot>) -> Vec<Change> {
        let known = self.version(node);
        if let (Some(known), Some(new)) = (known, snapshot.as_ref().and_then(|s| s.version))
            && known.covers(new)
        {
            return Vec::new();
        }
        let Some(new) = snapshot else {
            return match self.node_index.get(node) {
                Some(&index) => self.replace_at(index, Snapshot::default(), true),
                None => Vec::new(),
            };
        };
        let index = self.node(node);
        self.replace_at(index, new, false)
    }

    fn replace_at(&mut self, node: NodeIndex, new: Snapshot, gone: bool) -> Vec<Change> {
        let old = self.held(node);
        let mut presence = self.presence_changes(&new);
        let mut changes = Vec::new();
        for (room, user) in &old.members {
            if !new.members.contains_key(&(room.clone(), user.clone())) {
                self.set_member(node, room, user, 0, &mut changes);
            }
        }
        let mut rooms_of: HashMap<&UserId, Vec<RoomId>> = HashMap::new();
        for (room, user) in &old.members {
            rooms_of.entry(user).or_default().push(room.clone());
        }
        let mut offline = Vec::new();
        for user in &old.users {
            if new.users.contains_key(user) {
                continue;
            }
            self.set_user(node, user, 0);
            if self.user_connections(user) == 0 {
                let last = self.take_presence(user);
                offline.push(Change::Presence {
                    idle: false,
                    presence: Presence {
                        user_id: user.clone(),
                        status: Status::Offline,
                        metadata: last.as_ref().and_then(|p| p.metadata.clone()),
                        last_seen: last.map_or(0, |p| p.last_seen),
                    },
                    // Shown in the rooms the user was in there, before the departures.
                    rooms: rooms_of.remove(user).unwrap_or_default(),
                });
            }
        }
        for (user, count) in &new.users {
            self.set_user(node, user, *count);
        }
        for ((room, user), count) in &new.members {
            self.set_member(node, room, user, *count, &mut changes);
        }
        for (user, presence) in &new.presence {
            self.set_presence(user, presence);
        }
        if gone {
            self.remove_node(node);
        } else {
            // Known from now on, even with nothing in it.
            self.node_mut(node).version = new.version;
        }
        offline.append(&mut presence);
        offline.append(&mut changes);
        offline
    }

    /// What `node` holds: its users and its memberships.
    fn held(&self, node: NodeIndex) -> Held {
        let mut users = HashSet::new();
        let mut members = Vec::new();
        for at in self.users.indices() {
            if self.users.count_on(at, node) > 0 {
                users.insert(self.users.user_id(at));
            }
            for (room, bits) in self.users.rooms(at) {
                if self.holds(bits, room, at, node) {
                    members.push((self.rooms.id(room).clone(), self.users.user_id(at)));
                }
            }
        }
        Held { users, members }
    }

    /// The presences `new` shows that this node does not show yet (a user who arrived, or whose
    /// status or metadata changed: the rule of [`Event::Presence`]), each for the rooms the
    /// user is in on other nodes before the replacement, as the events that made the change
    /// would have shown it. A node's presence for a user it connects is the latest one reported.
    fn presence_changes(&self, new: &Snapshot) -> Vec<Change> {
        new.presence
            .iter()
            .filter(|(user, presence)| {
                self.presence(user)
                    .is_none_or(|before| !before.shows_the_same(presence))
            })
            .map(|(user, presence)| Change::Presence {
                idle: false,
                presence: presence.clone(),
                rooms: self.user_rooms(user),
            })
            .collect()
    }

    /// Sets the node's count for a user.
    fn set_user(&mut self, node: NodeIndex, user: &UserId, count: u32) {
        if count == 0 {
            if let Some(at) = self.users.find(user) {
                self.users.set_count(at, node, 0);
                self.users.release(at);
            }
        } else {
            let at = self.users.intern(user);
            self.users.set_count(at, node, count);
        }
    }

    /// Notes that this node showed `presence` to its clients, a change of its own connections
    /// of a user whom other nodes connect too: another node's report is then news only when
    /// it differs from that ([`Replica::apply`]). Nothing for a user no other node connects.
    pub fn shown_here(&mut self, presence: &Presence) {
        if self.user_connections(&presence.user_id) > 0 {
            self.set_presence(&presence.user_id, presence);
        }
    }

    /// Keeps `presence` as `user`'s latest.
    fn set_presence(&mut self, user: &UserId, presence: &Presence) {
        let at = self.users.intern(user);
        self.users.set_presence(
            at,
            Some((
                presence.status,
                presence.metadata.clone(),
                presence.last_seen,
            )),
        );
    }

    /// Forgets `user`'s presence; returns it.
    fn take_presence(&mut self, user: &UserId) -> Option<Presence> {
        let at = self.users.find(user)?;
        let last = self.presence(user);
        self.users.set_presence(at, None);
        self.users.release(at);
        last
    }

    /// Whether `user` is in `room` on another node.
    pub fn in_room(&self, room: &RoomId, user: &UserId) -> bool {
        let found = self.users.find(user).zip(self.rooms.find(room));
        found.is_some_and(|(at, room)| self.users.room_bits(at, room).is_some())
    }

    /// The users in `room` on other nodes.
    pub fn room_users(&self, room: &RoomId) -> Vec<UserId> {
        self.rooms
            .find(room)
            .map(|room| {
                self.rooms
                    .users(room)
                    .map(|at| self.users.user_id(at))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rooms `user` is in on other nodes.
    pub fn user_rooms(&self, user: &UserId) -> Vec<RoomId> {
        self.users
            .find(user)
            .map(|at| {
                self.users
                    .rooms(at)
                    .map(|(room, _)| self.rooms.id(room).clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `user`'s connections on other nodes.
    pub fn user_connections(&self, user: &UserId) -> u32 {
        self.users
            .find(user)
            .map_or(0, |at| self.users.connections(at))
    }

    /// Connections on the other nodes.
    pub fn connections(&self) -> u64 {
        self.users
            .indices()
            .map(|at| u64::from(self.users.connections(at)))
            .sum()
    }

    /// The latest presence of a user connected to another node.
    pub fn presence(&self, user: &UserId) -> Option<Presence> {
        let (status, metadata, last_seen) = self.users.presence(self.users.find(user)?)?;
        Some(Presence {
            user_id: user.clone(),
            status,
            metadata,
            last_seen,
        })
    }

    /// Every user connected to another node, with the latest presence known (online when none
    /// was reported yet).
    pub fn users(&self) -> Vec<Presence> {
        self.users
            .indices()
            .filter(|&at| self.users.connections(at) > 0)
            .map(|at| {
                let presence = self.users.presence(at);
                let (metadata, last_seen) = presence.map_or((None, 0), |(_, m, seen)| (m, seen));
                Presence {
                    user_id: self.users.user_id(at),
                    status: self.users.status(at).unwrap_or(Status::Online),
                    metadata,
                    last_seen,
                }
            })
            .collect()
    }

    /// Rooms with a member on another node.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.rooms.ids()
    }

    /// The other nodes this replica has heard of.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.node_index.keys()
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
