//! Which node is the cluster's first or last to hold something, decided by the state store.
//!
//! A node knows when it gets its own first member of a room, or loses its last; whether that
//! is also the cluster's first or last depends on every other node, and two nodes deciding
//! from their replicas at the same moment would both say "first". [`Holders`] asks the store
//! instead: each node adds itself to, or removes itself from, the set of holders of a
//! [`Held`] thing in one atomic step, and the step that takes the set from empty to one
//! holder (or from one to empty) is the cluster's first (or last). Exactly one node sees it.
//!
//! A node that dies holds on in the store until it is reaped; the reaper removes it from
//! every set it was in and tells its [`OrphanSink`] what lost its last holder that way, once
//! for the cluster. A node that restarts under the same id releases its predecessor's
//! holdings before its own first change ([`Holders::release_own`]), and so does a node that
//! leaves cleanly once its connections are gone.
//!
//! Webhooks are built on this (`crate::webhooks`); the hub's own notices still come from the
//! replica.

use futures_util::future::BoxFuture;

use super::StateError;
use crate::ids::{ChannelId, RoomId, UserId};

/// Something the cluster counts the holders of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Held {
    /// A user in a room (at least one of their connections is a member).
    Member(RoomId, UserId),
    /// A room (at least one member).
    Room(RoomId),
    /// A channel (at least one subscriber; patterns are not counted).
    Channel(ChannelId),
    /// A user (at least one connection).
    User(UserId),
}

/// A change of this node's holdings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// What changed.
    pub held: Held,
    /// Whether the node now holds it (its first) or no longer does (its last).
    pub gained: bool,
}

/// Where the reaper sends what dead nodes were the last holders of.
pub type OrphanSink = Box<dyn Fn(Vec<Held>) + Send + Sync>;

/// The cluster's holders of rooms, members, channels and users, kept in the state store.
///
/// Guarantees: `apply` applies a node's changes in order, atomically each, and answers for
/// each whether it was the cluster's first holder gained (or last lost); of concurrent
/// changes on several nodes exactly one is first and one is last. A failed call applied
/// nothing or only a prefix; applying the same changes again decides nothing twice (a change
/// that is already in the store is not first or last).
pub trait Holders: Send + Sync + 'static {
    /// Applies `changes` of this node, in order.
    fn apply(&self, changes: Vec<Holding>) -> BoxFuture<'_, Result<Vec<bool>, StateError>>;
    /// Releases everything this node id holds in the store (its predecessor's holdings after
    /// a restart, or its own when it leaves). Returns what lost its last holder.
    fn release_own(&self) -> BoxFuture<'_, Result<Vec<Held>, StateError>>;
    /// Sets where the holdings of reaped nodes go. Only the first call counts.
    fn set_orphan_sink(&self, sink: OrphanSink);
}
