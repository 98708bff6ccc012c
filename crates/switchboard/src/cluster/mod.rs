//! Cluster membership: what the other nodes hold (users, room members, channels, presence), so
//! that member lists, presence and `user_joined`/`user_left` are cluster-wide, and what this
//! node tells them about itself.
//!
//! The hub reads a local [`Replica`] of the other nodes (synchronously, no network on the
//! message path) and announces its own changes as [`Event`]s with absolute counts. A lone node
//! uses [`NoPeers`], which has no replica and drops announcements: it pays nothing. In cluster
//! mode [`RedisCluster`] keeps the replica current from a cluster event channel, stores each
//! node's state in a Redis hash with per-node liveness keys, and reaps nodes that die.

pub mod holders;
mod redis;
pub mod replica;

use std::sync::Weak;

use futures_util::future::BoxFuture;
use parking_lot::RwLock;

pub use holders::{Held, Holders, Holding, OrphanSink};
pub(crate) use redis::check_prefix;
pub use redis::{ClusterError, RedisCluster, RedisConfig};
pub use replica::{Change, Event, Replica, Snapshot, Version};

use crate::ids::{NodeId, RoomId, UserId};

/// Why the state store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The node has no connection to the store (yet, or any more).
    #[error("the state store is not connected")]
    NotConnected,
    /// The store failed the request.
    #[error("the state store failed the request")]
    Store(#[source] ::redis::RedisError),
}

/// One room's members on every node, as the state store held them at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomLoad {
    /// Each node with members in the room, at the version of its state the load read: the
    /// members below are that node's as of its announcement with this version.
    pub versions: Vec<(NodeId, Version)>,
    /// Each member on each node: the node, the user, and their connections in the room there.
    pub members: Vec<(NodeId, UserId, u32)>,
}

/// What the state store counts over every node, read at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Open connections.
    pub connections: u64,
    /// Rooms with a member.
    pub rooms: usize,
    /// Users with a connection.
    pub users: usize,
    /// Channels and patterns with a subscriber.
    pub channels: usize,
    /// The rooms with the most distinct users, most first (ties by name), with those users.
    pub top_rooms: Vec<(RoomId, usize)>,
}

/// Cluster membership as the hub sees it.
///
/// Guarantees: `announce` never blocks; announcements of one node reach the others in order;
/// a node that stops announcing liveness is reaped within a bounded time, its users' departures
/// reaching every other node's sink as [`Change`]s; a node that leaves on a clean stop
/// (`RedisCluster::leave`) is dropped by the others at once, the same way.
pub trait Membership: Send + Sync + 'static {
    /// Starts delivering the other nodes' changes to `sink`. Called once, by the hub.
    fn start(&self, sink: Weak<dyn MembershipSink>);
    /// Tells the other nodes about a change on this node.
    fn announce(&self, event: Event);
    /// The replica of the other nodes; `None` for a lone node.
    fn replica(&self) -> Option<&RwLock<Replica>>;
    /// The latest statistics each other live node published (JSON objects as in `/stats`),
    /// for the nodes in the replica only.
    fn peer_stats(&self) -> Vec<serde_json::Value>;
    /// Reads `room`'s members on every node, this one included, from the state store. A lone
    /// node has no store: it answers an empty load.
    fn load_room(&self, room: &RoomId) -> BoxFuture<'_, Result<RoomLoad, StateError>>;
    /// Reads the counts over every node, this one included, with the `top` largest rooms,
    /// from the state store. A lone node has no store: it answers zeros.
    fn counts(&self, top: usize) -> BoxFuture<'_, Result<ClusterCounts, StateError>>;
}

/// Where membership changes from other nodes go (the hub).
pub trait MembershipSink: Send + Sync {
    /// Announces `changes` to this node's clients.
    fn changes(&self, changes: Vec<Change>);
    /// Everything this node holds, to rewrite its state after a broker outage.
    fn snapshot(&self) -> Snapshot;
    /// This node's statistics, published with its liveness.
    fn stats(&self) -> serde_json::Value;
}

/// Membership of a node without peers.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Membership for NoPeers {
    fn start(&self, _sink: Weak<dyn MembershipSink>) {}

    fn announce(&self, _event: Event) {}

    fn replica(&self) -> Option<&RwLock<Replica>> {
        None
    }

    fn peer_stats(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    fn load_room(&self, _room: &RoomId) -> BoxFuture<'_, Result<RoomLoad, StateError>> {
        Box::pin(std::future::ready(Ok(RoomLoad::default())))
    }

    fn counts(&self, _top: usize) -> BoxFuture<'_, Result<ClusterCounts, StateError>> {
        Box::pin(std::future::ready(Ok(ClusterCounts::default())))
    }
}
