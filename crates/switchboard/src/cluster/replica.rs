//! This node's copy of what the *other* nodes hold: their users (with connection counts), room
//! memberships, channels and the latest presence of their users. Pure data: events and
//! snapshots go in, the changes this node must announce to its own clients come out.
//!
//! Every fact is keyed by node and carries an absolute count, so applying an event twice, or a
//! snapshot after events, converges to the same state. Events and snapshots of a node also
//! carry its [`Version`], so that what a snapshot already holds is not applied again when
//! the event that brought it arrives after the snapshot (a node's events and its snapshot
//! reach the others by different connections): each change is shown to clients once, and
//! computed against the state that preceded it.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, RoomId, UserId};
use crate::presence::{Presence, Status};

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
    /// no connection on any other node.
    Presence {
        /// The presence.
        presence: Presence,
        /// The user's rooms on other nodes.
        rooms: Vec<RoomId>,
    },
}

/// The replica.
#[derive(Debug, Default)]
pub struct Replica {
    nodes: HashMap<NodeId, Snapshot>,
    /// (room, user) -> number of nodes where the user is in the room.
    members: HashMap<RoomId, HashMap<UserId, u32>>,
    /// user -> rooms (with the number of nodes where the user is in each).
    user_rooms: HashMap<UserId, HashMap<RoomId, u32>>,
    /// user -> connections over all other nodes.
    users: HashMap<UserId, u32>,
    /// channel -> number of nodes subscribed.
    channels: HashMap<String, u32>,
    /// The latest presence each user's nodes reported.
    presence: HashMap<UserId, Presence>,
}

impl Replica {
    /// Applies an event from `origin`; returns what it means for this node's clients. A user's
    /// arrival in a room on the first other node, or departure from the last, is a
    /// [`Change`], whichever brings it first: this event, or a snapshot of the origin loaded
    /// before or after it. That makes it the one source of another node's `user_joined` and
    /// `user_left` here, announced once (the origin tells only its own clients). Presence
    /// events always come back as a [`Change`]: every node delivers them to its own clients.
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
        match self.nodes.get(origin).and_then(|state| state.version) {
            Some(known) if known.covers(version) => return changes,
            Some(known) if known.instance != version.instance => {
                changes = self.replace(origin, Some(Snapshot::default()));
            }
            _ => {}
        }
        self.node(origin).version = Some(version);
        changes.extend(self.apply_event(origin, event));
        changes
    }

    fn apply_event(&mut self, origin: &NodeId, event: Event) -> Vec<Change> {
        match event {
            Event::User { user, count } => {
                self.set_user(origin, &user, count);
                if self.user_connections(&user) == 0 {
                    self.presence.remove(&user);
                }
            }
            Event::Member { room, user, count } => {
                let mut changes = Vec::new();
                self.set_member(origin, room, user, count, &mut changes);
                return changes;
            }
            Event::Channel { channel, present } => self.set_channel(origin, channel, present),
            Event::Presence(presence) => {
                let rooms = self.user_rooms(&presence.user_id);
                let user = presence.user_id.clone();
                if presence.status == Status::Offline {
                    self.node(origin).presence.remove(&user);
                    if self.user_connections(&user) == 0 {
                        self.presence.remove(&user);
                    }
                } else {
                    self.node(origin)
                        .presence
                        .insert(user.clone(), presence.clone());
                    self.presence.insert(user, presence.clone());
                }
                return vec![Change::Presence { presence, rooms }];
            }
            Event::Reload => {}
            Event::Dead { node } => return self.replace(&node, None),
        }
        Vec::new()
    }

    /// Replaces everything `node` holds (`None`: the node is gone) and says what changed for
    /// clients: users no longer connected anywhere else go offline (announced first), then
    /// other presence changes, then room departures and arrivals. A snapshot older than what
    /// the replica holds of the node (its version covered) changes nothing.
    pub fn replace(&mut self, node: &NodeId, snapshot: Option<Snapshot>) -> Vec<Change> {
        let known = self.nodes.get(node).and_then(|state| state.version);
        if let (Some(known), Some(new)) = (known, snapshot.as_ref().and_then(|s| s.version))
            && known.covers(new)
        {
            return Vec::new();
        }
        let gone = snapshot.is_none();
        let new = snapshot.unwrap_or_default();
        let old = self.nodes.get(node).cloned().unwrap_or_default();
        let mut presence = self.presence_changes(&old, &new);
        let mut changes = Vec::new();
        for (room, user) in old.members.keys() {
            if !new.members.contains_key(&(room.clone(), user.clone())) {
                self.set_member(node, room.clone(), user.clone(), 0, &mut changes);
            }
        }
        let mut offline = Vec::new();
        for user in old.users.keys() {
            if new.users.contains_key(user) {
                continue;
            }
            self.set_user(node, user, 0);
            if self.user_connections(user) == 0 {
                let last = self
                    .presence
                    .remove(user)
                    .or_else(|| old.presence.get(user).cloned());
                // Shown in the rooms the user was in there, before the departures.
                let rooms = old
                    .members
                    .keys()
                    .filter(|(_, member)| member == user)
                    .map(|(room, _)| room.clone())
                    .collect();
                offline.push(Change::Presence {
                    presence: Presence {
                        user_id: user.clone(),
                        status: Status::Offline,
                        metadata: last.as_ref().and_then(|p| p.metadata.clone()),
                        last_seen: last.map_or(0, |p| p.last_seen),
                    },
                    rooms,
                });
            }
        }
        for channel in old.channels.difference(&new.channels) {
            self.set_channel(node, channel.clone(), false);
        }
        for (user, count) in &new.users {
            self.set_user(node, user, *count);
        }
        for ((room, user), count) in &new.members {
            self.set_member(node, room.clone(), user.clone(), *count, &mut changes);
        }
        for channel in &new.channels {
            self.set_channel(node, channel.clone(), true);
        }
        for (user, presence) in new.presence {
            self.node(node)
                .presence
                .insert(user.clone(), presence.clone());
            self.presence.insert(user, presence);
        }
        if gone {
            self.nodes.remove(node);
        } else {
            // Known from now on, even with nothing in it.
            self.node(node).version = new.version;
        }
        offline.append(&mut presence);
        offline.append(&mut changes);
        offline
    }

    /// The presences `new` shows that `old` did not (a user who arrived, or whose status or
    /// metadata changed), each for the rooms the user is in on other nodes before the
    /// replacement, as the events that made the change would have shown it.
    fn presence_changes(&self, old: &Snapshot, new: &Snapshot) -> Vec<Change> {
        new.presence
            .iter()
            .filter(|(user, presence)| {
                let metadata = |p: &Presence| p.metadata.as_ref().map(|m| m.get().to_owned());
                old.presence.get(*user).is_none_or(|before| {
                    before.status != presence.status || metadata(before) != metadata(presence)
                })
            })
            .map(|(user, presence)| Change::Presence {
                presence: presence.clone(),
                rooms: self.user_rooms(user),
            })
            .collect()
    }

    fn node(&mut self, node: &NodeId) -> &mut Snapshot {
        self.nodes.entry(node.clone()).or_default()
    }

    /// Sets the node's count for a user.
    fn set_user(&mut self, node: &NodeId, user: &UserId, count: u32) {
        let state = self.node(node);
        let previous = if count == 0 {
            state.presence.remove(user);
            state.users.remove(user).unwrap_or(0)
        } else {
            state.users.insert(user.clone(), count).unwrap_or(0)
        };
        let total = self.users.entry(user.clone()).or_insert(0);
        *total = (*total + count).saturating_sub(previous);
        if *total == 0 {
            self.users.remove(user);
        }
    }

    fn set_member(
        &mut self,
        node: &NodeId,
        room: RoomId,
        user: UserId,
        count: u32,
        changes: &mut Vec<Change>,
    ) {
        let key = (room.clone(), user.clone());
        let state = self.node(node);
        let was = if count == 0 {
            state.members.remove(&key).is_some()
        } else {
            state.members.insert(key, count).is_some()
        };
        let is = count > 0;
        if was == is {
            return;
        }
        let nodes = self
            .members
            .entry(room.clone())
            .or_default()
            .entry(user.clone())
            .or_insert(0);
        if is {
            *nodes += 1;
        } else {
            *nodes = nodes.saturating_sub(1);
        }
        let nodes = *nodes;
        let user_rooms = self.user_rooms.entry(user.clone()).or_default();
        user_rooms.insert(room.clone(), nodes);
        if nodes == 0 {
            user_rooms.remove(&room);
            if user_rooms.is_empty() {
                self.user_rooms.remove(&user);
            }
            if let Some(users) = self.members.get_mut(&room) {
                users.remove(&user);
                if users.is_empty() {
                    self.members.remove(&room);
                }
            }
            changes.push(Change::Left { room, user });
        } else if is && nodes == 1 {
            changes.push(Change::Joined { room, user });
        }
    }

    fn set_channel(&mut self, node: &NodeId, channel: String, present: bool) {
        let state = self.node(node);
        let changed = if present {
            state.channels.insert(channel.clone())
        } else {
            state.channels.remove(&channel)
        };
        if !changed {
            return;
        }
        let count = self.channels.entry(channel.clone()).or_insert(0);
        if present {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.channels.remove(&channel);
            }
        }
    }

    /// Whether `user` is in `room` on another node.
    pub fn in_room(&self, room: &RoomId, user: &UserId) -> bool {
        self.members
            .get(room)
            .is_some_and(|users| users.contains_key(user))
    }

    /// The users in `room` on other nodes.
    pub fn room_users(&self, room: &RoomId) -> Vec<UserId> {
        self.members
            .get(room)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The rooms `user` is in on other nodes.
    pub fn user_rooms(&self, user: &UserId) -> Vec<RoomId> {
        self.user_rooms
            .get(user)
            .map(|rooms| rooms.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `user`'s connections on other nodes.
    pub fn user_connections(&self, user: &UserId) -> u32 {
        self.users.get(user).copied().unwrap_or(0)
    }

    /// Connections on the other nodes.
    pub fn connections(&self) -> u64 {
        self.users.values().map(|&count| u64::from(count)).sum()
    }

    /// The latest presence of a user connected to another node.
    pub fn presence(&self, user: &UserId) -> Option<Presence> {
        self.presence.get(user).cloned()
    }

    /// Every user connected to another node, with the latest presence known (online when none
    /// was reported yet).
    pub fn users(&self) -> Vec<Presence> {
        self.users
            .keys()
            .map(|user| {
                self.presence.get(user).cloned().unwrap_or(Presence {
                    user_id: user.clone(),
                    status: Status::Online,
                    metadata: None,
                    last_seen: 0,
                })
            })
            .collect()
    }

    /// Rooms with a member on another node.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.members.keys()
    }

    /// Channels and patterns with a subscriber on another node.
    pub fn channels(&self) -> impl Iterator<Item = &String> {
        self.channels.keys()
    }

    /// The other nodes this replica has heard of.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.keys()
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
