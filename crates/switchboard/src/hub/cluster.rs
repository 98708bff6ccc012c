//! The hub's side of cluster membership: applying other nodes' changes to this node's clients,
//! describing this node's state, and cluster-wide statistics.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{Hub, RoomMembers, Sink, TOP_ROOMS, Target};
use crate::cluster::{Change, MembershipSink, Snapshot};
use crate::ids::{ConnId, RoomId, UserId};
use crate::presence::{Presence, Status};
use crate::protocol::{ServerFrame, ServerKind};

impl MembershipSink for Sink {
    fn changes(&self, changes: Vec<Change>) {
        if let Some(inner) = self.0.upgrade() {
            let hub = Hub { inner };
            for change in changes {
                hub.apply_remote_change(change);
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.0
            .upgrade()
            .map(|inner| Hub { inner }.snapshot())
            .unwrap_or_default()
    }

    fn stats(&self) -> serde_json::Value {
        self.0
            .upgrade()
            .and_then(|inner| serde_json::to_value(Hub { inner }.stats()).ok())
            .unwrap_or_default()
    }
}

/// Cluster-wide statistics (`GET /stats?scope=cluster`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStats {
    /// Open connections on every node.
    pub connections: u64,
    /// Distinct rooms with a member on any node.
    pub rooms: usize,
    /// Distinct users connected to any node.
    pub online_users: usize,
    /// Distinct channels and patterns with a subscriber on any node.
    pub channels: usize,
    /// Client messages received by every node.
    pub messages_in: u64,
    /// Frames queued to connections by every node.
    pub messages_out: u64,
    /// Sum of the nodes' inbound rates.
    pub messages_in_per_sec: f64,
    /// Sum of the nodes' outbound rates.
    pub messages_out_per_sec: f64,
    /// Live nodes, this one included.
    pub node_count: usize,
    /// Every live node's own statistics, this one first.
    pub nodes: Vec<serde_json::Value>,
    /// The rooms with the most distinct users over the cluster, most first (ties by name).
    pub top_rooms: Vec<RoomMembers>,
}

impl Hub {
    /// Shows one change from another node to this node's clients, unless this node's own
    /// state makes it untrue here (the user is still in the room, or still connected, here).
    fn apply_remote_change(&self, change: Change) {
        match change {
            Change::Presence { presence, rooms } => {
                let user = presence.user_id.clone();
                let local = self.local_user_state(&user);
                if presence.status == Status::Offline {
                    if local.is_some() {
                        return;
                    }
                    self.inner
                        .offline
                        .write(&user)
                        .insert(user.clone(), presence.clone());
                }
                let mut all_rooms: HashSet<RoomId> = rooms.into_iter().collect();
                if let Some(state) = &local {
                    all_rooms.extend(state.rooms());
                }
                let rooms: Vec<RoomId> = all_rooms.into_iter().collect();
                self.deliver_presence(&presence, &rooms);
            }
            Change::Left { room, user } => {
                if !self.has_local_member(&room, &user) {
                    self.deliver_member_event(ServerKind::UserLeft, room, &user);
                }
            }
            Change::Joined { room, user } => {
                if !self.has_local_member(&room, &user) {
                    self.deliver_member_event(ServerKind::UserJoined, room, &user);
                }
            }
        }
    }

    /// Delivers a `user_joined`/`user_left` frame to this node's members of `room`.
    fn deliver_member_event(&self, kind: ServerKind, room: RoomId, user: &UserId) {
        let frame = ServerFrame::new(
            kind,
            super::MemberEvent {
                user_id: user,
                room: &room,
            },
        )
        .room(room.as_str())
        .user(user.as_str())
        .stamped()
        .encode();
        let mut recipients: HashMap<ConnId, super::ConnHandle> = HashMap::new();
        self.collect_room_members(&room, &mut recipients);
        let delivered = recipients
            .values()
            .filter(|handle| self.deliver(handle, &frame))
            .count();
        self.inner.counters.count_out(Target::Room, delivered);
    }

    fn has_local_member(&self, room: &RoomId, user: &UserId) -> bool {
        self.inner
            .rooms
            .read(room)
            .get(room)
            .is_some_and(|entry| entry.has_user(user))
    }

    /// Everything this node holds, for its state hash.
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut states = Vec::new();
        self.inner.users.for_each(|user, entry| {
            snapshot
                .users
                .insert(user.clone(), entry.conns.len() as u32);
            states.push((user.clone(), entry.state.clone()));
        });
        for (user, state) in states {
            let presence = self.view(&user, &state);
            snapshot.presence.insert(user, presence);
        }
        self.inner.rooms.for_each(|room, entry| {
            for (user, count) in entry.users() {
                snapshot
                    .members
                    .insert((room.clone(), user.clone()), *count);
            }
        });
        self.inner.channels.for_each(|channel, _| {
            snapshot.channels.insert(channel.to_string());
        });
        for prefix in self.inner.patterns.read().keys() {
            snapshot.channels.insert(prefix.to_string());
        }
        snapshot
    }

    /// Statistics over every live node.
    pub fn cluster_stats(&self) -> ClusterStats {
        let local = self.stats();
        let peers = self.inner.membership.peer_stats();
        let sum = |field: &str| -> u64 {
            peers
                .iter()
                .map(|stats| stats[field].as_u64().unwrap_or(0))
                .sum()
        };
        let rate = |field: &str| -> f64 {
            peers
                .iter()
                .map(|stats| stats[field].as_f64().unwrap_or(0.0))
                .sum()
        };
        let mut rooms: HashSet<RoomId> = HashSet::new();
        self.inner.rooms.for_each(|room, _| {
            rooms.insert(room.clone());
        });
        let mut users: HashSet<UserId> = self.online_users().into_iter().collect();
        let mut channels: HashSet<String> = HashSet::new();
        self.inner.channels.for_each(|channel, _| {
            channels.insert(channel.to_string());
        });
        for prefix in self.inner.patterns.read().keys() {
            channels.insert(prefix.to_string());
        }
        self.with_replica(|replica| {
            rooms.extend(replica.rooms().cloned());
            users.extend(replica.users().into_iter().map(|p| p.user_id));
            channels.extend(replica.channels().cloned());
        });
        let mut nodes = vec![serde_json::to_value(&local).unwrap_or_default()];
        nodes.extend(peers.iter().cloned());
        ClusterStats {
            connections: local.connections as u64 + sum("connections"),
            rooms: rooms.len(),
            online_users: users.len(),
            channels: channels.len(),
            messages_in: local.messages_in + sum("messagesIn"),
            messages_out: local.messages_out + sum("messagesOut"),
            messages_in_per_sec: local.messages_in_per_sec + rate("messagesInPerSec"),
            messages_out_per_sec: local.messages_out_per_sec + rate("messagesOutPerSec"),
            node_count: nodes.len(),
            nodes,
            top_rooms: self.cluster_top_rooms(TOP_ROOMS),
        }
    }

    /// How many live nodes the cluster has, this one included; `None` on a lone node.
    pub fn cluster_node_count(&self) -> Option<usize> {
        self.inner
            .clustered
            .then(|| self.inner.membership.peer_stats().len() + 1)
    }

    /// How many connections `user` has, on this node and (in a cluster) on the others.
    pub fn user_connection_count(&self, user: &UserId) -> usize {
        let local = self
            .inner
            .users
            .read(user)
            .get(user)
            .map_or(0, |entry| entry.conns.len());
        let remote = self
            .with_replica(|replica| replica.user_connections(user))
            .unwrap_or(0);
        local + remote as usize
    }

    /// Whether `user` is in `room` on another node.
    pub(crate) fn in_room_elsewhere(&self, room: &RoomId, user: &UserId) -> bool {
        self.with_replica(|replica| replica.in_room(room, user))
            .unwrap_or(false)
    }

    /// The presence another node reports for a user connected there.
    pub(crate) fn remote_presence(&self, user: &UserId) -> Option<Presence> {
        self.with_replica(|replica| {
            (replica.user_connections(user) > 0).then(|| {
                replica.presence(user).unwrap_or(Presence {
                    user_id: user.clone(),
                    status: Status::Online,
                    metadata: None,
                    last_seen: 0,
                })
            })
        })
        .flatten()
    }
}
