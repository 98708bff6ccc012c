//! The hub: the node's registry of local connections, users and rooms, and the fan-out path.
//!
//! It holds only handles (`ConnHandle`: ids, a bounded outbox, activity clocks), never a
//! socket. Every map is sharded (`shard::Sharded`); delivering to a room reads one shard and
//! pushes one shared, pre-encoded frame onto each member's outbox, so there is no global lock
//! and no per-recipient encoding on the fan-out path.
//!
//! Every message addressed to a room, user or everyone is delivered locally first and then
//! published to the [`Broker`] for the other nodes; publications from other nodes come back
//! through [`BrokerSink`] and are delivered locally only.
//!
//! [`Hub`] is a cheap cloneable handle; its public methods are the library API for sending to
//! connections and querying the registry.

mod channels;
mod cluster;
mod handle;
mod latency;
mod maintenance;
mod outbox;
mod presence;
mod registry;
mod rooms;
mod shard;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Serialize;

use crate::broker::{Broker, BrokerSink, Envelope, Topic};
use crate::cluster::{Event, Membership, MembershipSink, Replica};
use crate::config::HubConfig;
use crate::handlers::Extensions;
use crate::ids::{ChannelId, ChannelPrefix, ConnId, NodeId, RoomId, UserId};
use crate::presence::Presence;
use crate::protocol::{CloseCode, ServerFrame, now_ms};
pub(crate) use channels::publish_frame;
pub use channels::{PubSub, Publication, PublishError, Subscription};
pub use cluster::ClusterStats;
pub(crate) use handle::ConnHandle;
pub use handle::ConnInfo;
pub(crate) use latency::LatencySnapshot;
pub(crate) use outbox::{CloseRequest, Pushed, Taken};
pub(crate) use presence::UserState;
pub use presence::{PresenceView, PresenceWatch};
pub use rooms::RoomSummary;
pub(crate) use rooms::{Left, MemberEvent};
use shard::Sharded;
pub(crate) use stats::{Counters, EXPORTED_COUNTERS, InKind, Target};
pub use stats::{RoomMembers, StatsSnapshot};

/// How many rooms `/stats` lists in `topRooms`.
pub const TOP_ROOMS: usize = 10;

/// The node's hub. Clone it freely: every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    /// Application handlers and hooks, fixed at build time.
    extensions: Extensions,
    /// Origin of the hub clock (tokio's, so tests can pause time).
    epoch: tokio::time::Instant,
    /// Epoch milliseconds at `epoch`.
    started_epoch_ms: u64,
    conns: Sharded<ConnId, ConnHandle>,
    users: Sharded<UserId, registry::UserEntry>,
    rooms: Sharded<RoomId, rooms::Room>,
    channels: Sharded<ChannelId, channels::Subscribers>,
    /// Pattern subscriptions; few (clients need a permission), so one lock.
    patterns: RwLock<HashMap<ChannelPrefix, channels::Subscribers>>,
    /// The last presence of users who went offline, for a while (see `purge_offline`).
    offline: Sharded<UserId, Presence>,
    presence_handlers: RwLock<Vec<(u64, presence::PresenceHandler)>>,
    conn_count: AtomicUsize,
    user_count: AtomicUsize,
    room_count: AtomicUsize,
    channel_count: AtomicUsize,
    /// Ids of application handlers.
    next_id: AtomicU64,
    counters: Counters,
    rates: stats::Rates,
    broker: Arc<dyn Broker>,
    membership: Arc<dyn Membership>,
    /// Whether there are other nodes (the membership has a replica); a lone node skips every
    /// announcement.
    clustered: bool,
    /// Set when the node starts shutting down; new connections are refused.
    draining: AtomicBool,
    /// Kept alive here; the broker and membership hold only weak references.
    _sink: Arc<Sink>,
}

/// The hub's face towards the broker.
struct Sink(Weak<HubInner>);

impl BrokerSink for Sink {
    fn deliver(&self, envelope: &Envelope) {
        if let Some(inner) = self.0.upgrade() {
            let hub = Hub { inner };
            match &envelope.topic {
                Topic::Channel(channel) => {
                    hub.deliver_remote_publication(channel, &envelope.frame);
                }
                topic => {
                    hub.deliver_local(topic, &envelope.frame, None);
                }
            }
        }
    }
}

impl Hub {
    /// A hub with `config` that reaches other nodes through `broker` and learns about them
    /// through `membership`.
    pub(crate) fn new(
        config: HubConfig,
        broker: Arc<dyn Broker>,
        membership: Arc<dyn Membership>,
        extensions: Extensions,
    ) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| {
            let sink = Arc::new(Sink(weak.clone()));
            HubInner {
                config,
                extensions,
                epoch: tokio::time::Instant::now(),
                started_epoch_ms: now_ms(),
                conns: Sharded::new(),
                users: Sharded::new(),
                rooms: Sharded::new(),
                channels: Sharded::new(),
                patterns: RwLock::new(HashMap::new()),
                offline: Sharded::new(),
                presence_handlers: RwLock::new(Vec::new()),
                conn_count: AtomicUsize::new(0),
                user_count: AtomicUsize::new(0),
                room_count: AtomicUsize::new(0),
                channel_count: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                counters: Counters::default(),
                rates: stats::Rates::default(),
                broker,
                clustered: membership.replica().is_some(),
                membership,
                draining: AtomicBool::new(false),
                _sink: sink,
            }
        });
        let broker_sink: Arc<dyn BrokerSink> = inner._sink.clone();
        inner.broker.start(Arc::downgrade(&broker_sink));
        let membership_sink: Arc<dyn MembershipSink> = inner._sink.clone();
        inner.membership.start(Arc::downgrade(&membership_sink));
        inner.broker.subscribe(&Topic::Broadcast);
        Self { inner }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.config.node_id
    }

    /// The configuration the hub enforces.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Milliseconds on the hub clock (monotonic, from hub creation).
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// Tells the other nodes about a change; a lone node does nothing, not even build it.
    pub(crate) fn announce(&self, event: impl FnOnce() -> Event) {
        if self.inner.clustered {
            self.inner.membership.announce(event());
        }
    }

    /// Reads the replica of the other nodes, if there are any.
    pub(crate) fn with_replica<T>(&self, read: impl FnOnce(&Replica) -> T) -> Option<T> {
        self.inner
            .membership
            .replica()
            .map(|replica| read(&replica.read()))
    }

    /// A fresh id for an application handler.
    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a frame to every connection of every node. Returns the local recipients.
    pub fn broadcast<P: Serialize>(&self, frame: &ServerFrame<'_, P>) -> usize {
        self.publish(Topic::Broadcast, frame.encode(), None)
    }

    /// Sends a frame to every member of `room` on every node except connection `except`.
    /// Returns the local recipients.
    pub fn send_to_room<P: Serialize>(
        &self,
        room: &RoomId,
        frame: &ServerFrame<'_, P>,
        except: Option<ConnId>,
    ) -> usize {
        self.publish(Topic::Room(room.clone()), frame.encode(), except)
    }

    /// Sends a frame to every connection of `user` on every node. Returns the local recipients.
    pub fn send_to_user<P: Serialize>(&self, user: &UserId, frame: &ServerFrame<'_, P>) -> usize {
        self.publish(Topic::User(user.clone()), frame.encode(), None)
    }

    /// Sends a frame to one local connection. Returns whether it was queued.
    pub fn send_to_connection<P: Serialize>(&self, id: ConnId, frame: &ServerFrame<'_, P>) -> bool {
        let handle = self.inner.conns.read(&id).get(&id).cloned();
        handle.is_some_and(|handle| self.deliver_counted(&handle, &frame.encode()))
    }

    /// Delivers an encoded frame locally, then hands it to the broker for the other nodes.
    pub(crate) fn publish(&self, topic: Topic, frame: Bytes, except: Option<ConnId>) -> usize {
        let delivered = self.deliver_local(&topic, &frame, except);
        self.inner.broker.publish(Envelope {
            origin: self.node_id().clone(),
            topic,
            frame,
        });
        delivered
    }

    /// Delivers an encoded frame to the local recipients of `topic`, recording the fan-out's
    /// latency.
    fn deliver_local(&self, topic: &Topic, frame: &Bytes, except: Option<ConnId>) -> usize {
        let accepted = Instant::now();
        let (delivered, target) = match topic {
            Topic::Broadcast => (self.deliver_to_all(frame, except), Target::Broadcast),
            Topic::Room(room) => (self.deliver_to_room(room, frame, except), Target::Room),
            Topic::User(user) => (self.deliver_to_user(user, frame), Target::User),
            // Publications go through `publish_to_channel` (local) and the sink (remote).
            Topic::Channel(_) | Topic::ChannelPattern(_) => return 0,
        };
        self.fanned_out(accepted, target, delivered, frame.len());
        delivered
    }

    /// Counts a fan-out of a `frame_len`-byte frame to `delivered` local connections, and its
    /// latency since `accepted` when it reached anyone.
    pub(crate) fn fanned_out(
        &self,
        accepted: Instant,
        target: Target,
        delivered: usize,
        frame_len: usize,
    ) {
        if delivered == 0 {
            return;
        }
        let counters = &self.inner.counters;
        counters.fanout_latency.observe(accepted.elapsed());
        counters.count_out(target, delivered);
        Counters::add(&counters.bytes_out, (delivered * frame_len) as u64);
    }

    /// Queues `frame` on one connection and counts it as sent.
    pub(crate) fn deliver_counted(&self, handle: &ConnHandle, frame: &Bytes) -> bool {
        let queued = self.deliver(handle, frame);
        if queued {
            self.inner.counters.count_out(Target::Reply, 1);
            Counters::add(&self.inner.counters.bytes_out, frame.len() as u64);
        }
        queued
    }

    /// Queues `frame` on one connection, counting a slow-consumer drop if it overflows.
    pub(crate) fn deliver(&self, handle: &ConnHandle, frame: &Bytes) -> bool {
        match handle.push(frame, self.inner.config.limits.max_queued_bytes) {
            Pushed::Queued => true,
            Pushed::Overflow => {
                handle.close(CloseRequest::SLOW_CONSUMER, self.now_ms());
                Counters::add(&self.inner.counters.slow_consumers, 1);
                tracing::info!(conn = %handle.id(), user = %handle.user(), "dropping slow consumer");
                false
            }
            Pushed::Closed => false,
        }
    }

    /// Starts the shutdown: refuses new connections and asks every connection to close with
    /// 1001 after writing what is queued for it. Returns how many were asked.
    pub fn shutdown(&self) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        let request = CloseRequest {
            code: CloseCode::GoingAway,
            reason: std::borrow::Cow::Borrowed("server shutting down"),
            graceful: true,
        };
        let now = self.now_ms();
        let mut asked = 0;
        self.inner.conns.for_each(|_, handle| {
            if handle.close(request.clone(), now) {
                asked += 1;
            }
        });
        asked
    }

    /// Whether the hub is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The node's statistics.
    pub fn stats(&self) -> StatsSnapshot {
        let inner = &self.inner;
        inner
            .counters
            .snapshot(&inner.rates, self.gauges(self.top_rooms(TOP_ROOMS)))
    }

    /// The node's live gauges; `top_rooms` is passed in because it costs a pass over the rooms.
    pub(crate) fn gauges(&self, top_rooms: Vec<RoomMembers>) -> stats::Gauges {
        let inner = &self.inner;
        stats::Gauges {
            connections: inner.conn_count.load(Ordering::Relaxed),
            rooms: inner.room_count.load(Ordering::Relaxed),
            online_users: inner.user_count.load(Ordering::Relaxed),
            channels: self.channel_count(),
            uptime_seconds: self.now_ms() / 1000,
            node_id: self.node_id().to_string(),
            broker: inner.broker.name(),
            broker_status: inner.broker.status(),
            broker_settled: inner.broker.settled(),
            top_rooms,
        }
    }

    /// The broker this hub publishes to.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
