//! The hub's one part that knows about other nodes: it holds the [`Broker`], the
//! [`Membership`] and the store of streams, subscribes a topic when its first local member arrives and unsubscribes it
//! after the last (as the registry, rooms and channels observer), announces this node's changes,
//! and answers every question about the other nodes' state.
//!
//! A lone node has no replica: every announcement is skipped before it is built, and every
//! remote read answers "nothing elsewhere" without a lock.

use std::sync::Arc;

use bytes::Bytes;

use super::StatsSnapshot;
use super::channels::ChannelObserver;
use super::registry::UserObserver;
use super::rooms::RoomObserver;
use crate::broker::{Broker, Envelope, Topic};
use crate::cluster::{ClusterCounts, Event, Membership, Replica, StateError};
use crate::ids::{ChannelSpec, NodeId, RoomId, UserId};
use crate::presence::{Presence, Status};
use crate::store::StreamStore;

/// The broker, the membership, the store of streams, and what follows from them.
pub(super) struct Cluster {
    broker: Arc<dyn Broker>,
    membership: Arc<dyn Membership>,
    /// The cluster's store of streams (`None`: this node numbers its own, or history is off).
    store: Option<Arc<dyn StreamStore>>,
    /// Whether there are other nodes (the membership has a replica).
    clustered: bool,
}

impl Cluster {
    pub(super) fn new(
        broker: Arc<dyn Broker>,
        membership: Arc<dyn Membership>,
        store: Option<Arc<dyn StreamStore>>,
    ) -> Self {
        Self {
            clustered: membership.replica().is_some(),
            broker,
            membership,
            store,
        }
    }

    /// The cluster's store of streams, when it has one.
    pub(super) fn store(&self) -> Option<&Arc<dyn StreamStore>> {
        self.store.as_ref()
    }

    pub(super) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub(super) fn membership(&self) -> &Arc<dyn Membership> {
        &self.membership
    }

    /// Hands an encoded frame to the broker for the other nodes.
    pub(super) fn publish(&self, origin: &NodeId, topic: Topic, frame: Bytes) {
        self.broker.publish(Envelope {
            origin: origin.clone(),
            topic,
            frame,
        });
    }

    /// Tells the other nodes about a change; a lone node does nothing, not even build it.
    fn announce(&self, event: impl FnOnce() -> Event) {
        if self.clustered {
            self.membership.announce(event());
        }
    }

    /// Tells the other nodes about a user's new presence.
    pub(super) fn presence_changed(&self, presence: &Presence) {
        self.announce(|| Event::Presence(presence.clone()));
    }

    /// Notes in the replica that this node showed its own `presence` of a user whom other
    /// nodes may connect too (see `Replica::shown_here`).
    pub(super) fn shown_here(&self, presence: &Presence) {
        // Most users are on one node: the write lock only for those that are not.
        if let Some(replica) = self.membership.replica()
            && replica.read().user_connections(&presence.user_id) > 0
        {
            replica.write().shown_here(presence);
        }
    }

    /// Tells the other nodes that a user's connections here went idle (`presence`, `away`).
    pub(super) fn went_idle(&self, presence: &Presence) {
        self.announce(|| Event::Idle(presence.clone()));
    }

    /// Reads the replica of the other nodes; `None` on a lone node.
    fn read<T>(&self, read: impl FnOnce(&Replica) -> T) -> Option<T> {
        self.membership
            .replica()
            .map(|replica| read(&replica.read()))
    }

    /// `user`'s connections on other nodes.
    pub(super) fn user_connections(&self, user: &UserId) -> usize {
        self.read(|replica| replica.user_connections(user) as usize)
            .unwrap_or(0)
    }

    /// Whether `user` is in `room` on another node.
    pub(super) fn in_room(&self, room: &RoomId, user: &UserId) -> bool {
        self.read(|replica| replica.in_room(room, user))
            .unwrap_or(false)
    }

    /// The users in `room` on other nodes.
    pub(super) fn room_users(&self, room: &RoomId) -> Vec<UserId> {
        self.read(|replica| replica.room_users(room))
            .unwrap_or_default()
    }

    /// The users in `room` on other nodes (not `here`), as the state store holds them.
    pub(super) async fn room_users_in_store(
        &self,
        room: &RoomId,
        here: &NodeId,
    ) -> Result<Vec<UserId>, StateError> {
        if !self.clustered {
            return Ok(Vec::new());
        }
        let load = self.membership.load_room(room).await?;
        let mut users: Vec<UserId> = load
            .members
            .into_iter()
            .filter(|(node, _, count)| node != here && *count > 0)
            .map(|(_, user, _)| user)
            .collect();
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    /// The rooms `user` is in on other nodes.
    pub(super) fn user_rooms(&self, user: &UserId) -> Vec<RoomId> {
        self.read(|replica| replica.user_rooms(user))
            .unwrap_or_default()
    }

    /// The presence of a user connected to another node (online when it reported none yet).
    pub(super) fn presence(&self, user: &UserId) -> Option<Presence> {
        self.read(|replica| {
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

    /// Every user connected to another node, with their presence.
    pub(super) fn users(&self) -> Vec<Presence> {
        self.read(Replica::users).unwrap_or_default()
    }

    /// The statistics each other live node last published. A node whose statistics cannot be
    /// read (another version, say) still counts, with zeros.
    pub(super) fn peer_stats(&self) -> Vec<StatsSnapshot> {
        self.membership
            .peer_stats()
            .into_iter()
            .map(|stats| serde_json::from_value(stats).unwrap_or_default())
            .collect()
    }

    /// Whether the other nodes are replicated here: they then announce their members'
    /// arrivals and departures to this node's clients from the replica.
    pub(super) fn replicated(&self) -> bool {
        self.membership.replica().is_some()
    }

    /// The counts over every node as the state store holds them, with the `top` largest
    /// rooms; `None` on a lone node.
    pub(super) async fn counts(&self, top: usize) -> Result<Option<ClusterCounts>, StateError> {
        if !self.clustered {
            return Ok(None);
        }
        self.membership.counts(top).await.map(Some)
    }

    /// How many live nodes the cluster has, this one included; `None` on a lone node.
    pub(super) fn node_count(&self) -> Option<usize> {
        self.clustered
            .then(|| self.read(|replica| replica.nodes().count()).unwrap_or(0) + 1)
    }
}

impl UserObserver for Cluster {
    fn user_arrived(&self, user: &UserId) {
        self.broker.subscribe(&Topic::User(user.clone()));
    }

    fn user_connections(&self, user: &UserId, count: u32) {
        self.announce(|| Event::User {
            user: user.clone(),
            count,
        });
    }

    fn user_departed(&self, user: &UserId) {
        self.broker.unsubscribe(&Topic::User(user.clone()));
    }
}

impl RoomObserver for Cluster {
    fn room_occupied(&self, room: &RoomId) {
        self.broker.subscribe(&Topic::Room(room.clone()));
    }

    fn member_connections(&self, room: &RoomId, user: &UserId, count: u32) {
        self.announce(|| Event::Member {
            room: room.clone(),
            user: user.clone(),
            count,
        });
    }

    fn room_vacated(&self, room: &RoomId) {
        self.broker.unsubscribe(&Topic::Room(room.clone()));
    }
}

impl ChannelObserver for Cluster {
    fn channel_occupied(&self, spec: &ChannelSpec) {
        self.broker.subscribe(&topic(spec));
        self.announce(|| Event::Channel {
            channel: spec.to_string(),
            present: true,
        });
    }

    fn channel_vacated(&self, spec: &ChannelSpec) {
        self.broker.unsubscribe(&topic(spec));
        self.announce(|| Event::Channel {
            channel: spec.to_string(),
            present: false,
        });
    }
}

/// The broker topic of a channel or pattern.
fn topic(spec: &ChannelSpec) -> Topic {
    match spec {
        ChannelSpec::Exact(channel) => Topic::Channel(channel.clone()),
        ChannelSpec::Prefix(prefix) => Topic::ChannelPattern(prefix.clone()),
    }
}
