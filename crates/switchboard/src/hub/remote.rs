//! What comes from other nodes and what this node tells them about itself: the hub's face
//! towards the broker and the membership ([`Sink`]), other nodes' changes shown to this node's
//! clients, this node's snapshot, and statistics over the whole cluster.

use std::collections::HashSet;
use std::sync::Weak;

use serde::Serialize;

use super::{
    Hub, HubInner, RoomMembers, StatsSnapshot, TOP_ROOMS, Target, UserState, member_frame,
};
use crate::broker::{BrokerSink, Envelope, StreamMessage, Topic};
use crate::cluster::{Change, ClusterCounts, MembershipSink, Snapshot, StateError};
use crate::ids::{RoomId, UserId};
use crate::presence::{Presence, Status};
use crate::protocol::ServerKind;

/// The hub as the broker and the membership see it: a weak reference, so they do not keep a
/// dropped hub alive.
pub(super) struct Sink(pub(super) Weak<HubInner>);

impl Sink {
    fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl BrokerSink for Sink {
    fn deliver(&self, envelope: &Envelope) {
        let Some(hub) = self.hub() else { return };
        match &envelope.topic {
            Topic::Channel(channel) => {
                hub.deliver_remote_publication(channel, &envelope.frame);
            }
            Topic::Document(doc) => hub.receive_document(doc, &envelope.frame),
            Topic::Connection(conn) => hub.relay_received(*conn, &envelope.frame),
            topic => {
                hub.deliver_local(topic, &envelope.frame, None);
            }
        }
    }

    fn deliver_stream(&self, message: StreamMessage) {
        if let Some(hub) = self.hub() {
            hub.receive_stream(message);
        }
    }

    fn reconnected(&self) {
        if let Some(hub) = self.hub() {
            hub.refill();
            hub.inner.documents.resync();
        }
    }
}

impl MembershipSink for Sink {
    fn changes(&self, changes: Vec<Change>) {
        let Some(hub) = self.hub() else { return };
        for change in changes {
            hub.apply_remote_change(change);
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.hub().map(|hub| hub.snapshot()).unwrap_or_default()
    }

    fn stats(&self) -> serde_json::Value {
        self.hub()
            .and_then(|hub| serde_json::to_value(hub.stats()).ok())
            .unwrap_or_default()
    }
}

/// Cluster-wide statistics (`GET /stats?scope=cluster`): the counts as the state store holds
/// them at one instant, the traffic as the nodes last published it.
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
    /// Every live node's own statistics as it last published them (every `node_ttl/3`), this
    /// one first; a node that left is dropped at once, one that just joined appears with its
    /// first publication.
    pub nodes: Vec<StatsSnapshot>,
    /// The rooms with the most distinct users over the cluster, most first (ties by name).
    pub top_rooms: Vec<RoomMembers>,
}

impl Hub {
    /// Shows one change from another node to this node's clients, unless this node's own
    /// state makes it untrue here (the user is still in the room, or still connected, here)
    /// or it is what they saw last (a presence this node showed of its own connections).
    fn apply_remote_change(&self, change: Change) {
        let inner = &self.inner;
        match change {
            Change::Presence {
                presence,
                rooms,
                idle,
            } => {
                let local = inner.registry.user_state(&presence.user_id);
                if idle
                    && let Some(state) = &local
                    && self.still_active_here(state, &presence)
                {
                    return;
                }
                if presence.status == Status::Offline {
                    // Chosen ("appear offline") while connected there; else the user's last
                    // connection on the other nodes closed.
                    let chosen = inner.cluster.user_connections(&presence.user_id) > 0;
                    match &local {
                        Some(_) if !chosen => return,
                        Some(_) => {}
                        None => inner.presence.went_offline(&presence),
                    }
                }
                if let Some(state) = &local
                    && !state.presence.lock().reported_elsewhere(&presence)
                {
                    // What this node's clients last saw of the user here already.
                    return;
                }
                let mut all_rooms: HashSet<RoomId> = rooms.into_iter().collect();
                if let Some(state) = &local {
                    all_rooms.extend(state.rooms());
                }
                let rooms: Vec<RoomId> = all_rooms.into_iter().collect();
                self.deliver_presence(&presence, &rooms);
            }
            Change::Left { room, user } => {
                self.show_remote_member(ServerKind::UserLeft, &room, &user);
            }
            Change::Joined { room, user } => {
                self.show_remote_member(ServerKind::UserJoined, &room, &user);
            }
        }
    }

    /// Another node found the user idle (`idle`, its `away`): when they are not idle here
    /// (active, or set to a status), they are not away, so this node's clients keep what they
    /// see and the other nodes hear this node's presence again. Returns whether it was so.
    fn still_active_here(&self, state: &UserState, idle: &Presence) -> bool {
        if state.presence.lock().idle_away() {
            return false;
        }
        let view = self.view(&idle.user_id, state);
        if view.shows_the_same(idle) {
            return false;
        }
        if state.presence.lock().take_elsewhere() {
            // Its clients last saw another node's report: this node's view is news here too.
            self.show_presence(state, &view);
        } else {
            self.inner.cluster.presence_changed(&view);
        }
        true
    }

    /// Shows another node's `user_joined`/`user_left` to this node's members of `room`, unless
    /// the user is in the room here too (then nothing changed for them).
    fn show_remote_member(&self, kind: ServerKind, room: &RoomId, user: &UserId) {
        let rooms = &self.inner.rooms;
        if rooms.has_user(room, user) {
            return;
        }
        let frame = member_frame(kind, room, user);
        let outgoing = super::Outgoing::new(&frame);
        let delivered = rooms.deliver(room, None, |handle| self.deliver_shared(handle, &outgoing));
        self.inner.counters.count_out(Target::Room, delivered);
    }

    /// Everything this node holds, for its state in the cluster.
    fn snapshot(&self) -> Snapshot {
        let inner = &self.inner;
        let mut snapshot = Snapshot::default();
        let mut states = Vec::new();
        inner.registry.for_each_user(|user, state, conns| {
            snapshot.users.insert(user.clone(), conns);
            states.push((user.clone(), state.clone()));
        });
        for (user, state) in states {
            let presence = self.view(&user, &state);
            snapshot.presence.insert(user, presence);
        }
        inner.rooms.for_each(|room, users| {
            for (user, count) in users {
                snapshot.members.insert((room.clone(), user.clone()), count);
            }
        });
        snapshot.channels.extend(inner.channels.names());
        snapshot
    }

    /// Statistics over every live node. The counts (connections, rooms, users, channels, top
    /// rooms) are the state store's, read at one instant; the traffic figures add up what each
    /// node last published with its liveness. A lone node answers its own.
    pub async fn cluster_stats(&self) -> Result<ClusterStats, StateError> {
        let inner = &self.inner;
        let local = self.stats();
        let (counts, top_rooms) = match inner.cluster.counts(TOP_ROOMS).await? {
            Some(mut counts) => {
                let top = (std::mem::take(&mut counts.top_rooms).into_iter())
                    .map(|(room, members)| RoomMembers { room, members })
                    .collect();
                (counts, top)
            }
            None => {
                let counts = ClusterCounts {
                    connections: local.connections as u64,
                    rooms: local.rooms,
                    users: local.online_users,
                    channels: local.channels,
                    top_rooms: Vec::new(),
                };
                (counts, local.top_rooms.clone())
            }
        };
        let mut nodes = vec![local];
        nodes.extend(inner.cluster.peer_stats());
        let sum = |field: fn(&StatsSnapshot) -> u64| nodes.iter().map(field).sum::<u64>();
        let rate = |field: fn(&StatsSnapshot) -> f64| nodes.iter().map(field).sum::<f64>();
        Ok(ClusterStats {
            connections: counts.connections,
            rooms: counts.rooms,
            online_users: counts.users,
            channels: counts.channels,
            messages_in: sum(|node| node.messages_in),
            messages_out: sum(|node| node.messages_out),
            messages_in_per_sec: rate(|node| node.messages_in_per_sec),
            messages_out_per_sec: rate(|node| node.messages_out_per_sec),
            node_count: inner.cluster.node_count().unwrap_or(1),
            top_rooms,
            nodes,
        })
    }

    /// How many live nodes the cluster has, this one included; `None` on a lone node.
    pub fn cluster_node_count(&self) -> Option<usize> {
        self.inner.cluster.node_count()
    }
}
