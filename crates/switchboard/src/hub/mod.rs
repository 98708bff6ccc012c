//! The hub: this node's connections, users, rooms, channels and presence, and the fan-out path.
//!
//! It holds only handles (`ConnHandle`: ids, a bounded outbox, activity clocks, the token's
//! expiry), never a socket. Its state lives in parts that own it, each behind its own locks:
//!
//! | part | owns | file |
//! |---|---|---|
//! | registry | connections by id and by user, the users' shared state, admission | `registry.rs`, `user.rs` |
//! | rooms | room membership and per-user counts | `rooms.rs` |
//! | channels | channel and pattern subscribers (connections and handlers) | `channels.rs` |
//! | presence book | offline users' last presence, presence handlers | `presence.rs` |
//! | history | each room's and channel's stream: epoch, offsets, retained messages | `history.rs` |
//! | documents | open Yjs documents, their clients and awareness, the store of the others | `docs.rs` |
//! | cluster | the broker and the membership: subscriptions, announcements, other nodes' state | `cluster.rs` |
//! | events | the application's lifecycle event hooks (webhooks) | `events.rs` |
//! | counters | event counts for `/stats` and `/metrics`, the backend proxies' among them | `stats.rs`, `proxy_counts.rs` |
//! | relay | where POSTs relayed to this node's SSE connections go | `relay.rs` |
//!
//! Only the parts change their own state. The hub composes them and holds each operation that
//! spans several (register, join, leave, disconnect, purge: `lifecycle.rs`; offsets, recovery
//! and history reads: `streams.rs`; the sweeps over every connection: `maintenance.rs`, and
//! `tokens.rs` for token expiry); the registry, rooms and channels tell the cluster part
//! about first and last local members through observer traits, under their own locks, so they
//! never see the broker.
//!
//! Delivering to a room reads one shard and pushes one shared, pre-encoded frame onto each
//! member's outbox: no global lock and no per-recipient encoding on the fan-out path. Every
//! message addressed to a room, user or everyone is delivered locally first and then published
//! to the broker for the other nodes; publications from other nodes come back through the
//! sink (`remote.rs`) and are delivered locally only.
//!
//! [`Hub`] is a cheap cloneable handle; its public methods are the library API for sending to
//! connections and querying the node and the cluster.

mod channels;
mod cluster;
mod docs;
mod early;
mod events;
mod handle;
mod history;
mod latency;
mod lifecycle;
mod maintenance;
mod memory;
mod outbox;
mod outgoing;
mod presence;
mod proxy_counts;
mod pubsub;
mod queries;
mod registry;
mod relay;
mod remote;
mod rooms;
mod shard;
mod shared;
mod stats;
mod streams;
mod tokens;
mod top_rooms;
mod user;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::broker::{Broker, BrokerSink, Topic};
use crate::cluster::{Membership, MembershipSink};
use crate::config::HubConfig;
use crate::docstore::{DocLoaded, DocStore};
use crate::ids::{ConnId, DocId, NodeId, RoomId, UserId};
use crate::protocol::{CloseCode, ServerFrame, now_ms};
use crate::store::StreamStore;
use channels::Channels;
use cluster::Cluster;
use docs::Documents;
#[cfg(feature = "fuzzing")]
pub(crate) use docs::apply as apply_update;
pub(crate) use docs::{DocCommand, DocError, OpenDoc};
pub use events::{EventHook, HubEvent};
use events::{Events, Observers};
pub use handle::ConnInfo;
pub(crate) use handle::{ConnHandle, TokenDeadline, Wire};
use history::History;
pub(crate) use latency::LatencySnapshot;
use lifecycle::member_frame;
pub(crate) use outbox::{CloseRequest, Pushed, Taken};
pub(crate) use outgoing::Outgoing;
use presence::PresenceBook;
pub use presence::{PresenceView, PresenceWatch};
pub(crate) use proxy_counts::{ProxyKind, ProxyOutcome};
pub use pubsub::{PubSub, Publication, PublishError, Subscription};
pub(crate) use registry::Refusal;
use registry::Registry;
pub use remote::ClusterStats;
use remote::Sink;
pub use rooms::RoomSummary;
use rooms::Rooms;
pub(crate) use stats::{Counters, ERROR_CODES, EXPORTED_COUNTERS, InKind, Initiator, Target};
pub use stats::{RoomMembers, StatsSnapshot};
pub(crate) use streams::{Answered, LaterOffset, Offset, Request, RoomJoin, Sent, Subscribed};
pub(crate) use user::UserState;

/// How many rooms `/stats` lists in `topRooms`.
pub const TOP_ROOMS: usize = 10;

/// The node's hub. Clone it freely: every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    /// Origin of the hub clock (tokio's, so tests can pause time).
    epoch: tokio::time::Instant,
    /// Epoch milliseconds at `epoch`.
    started_epoch_ms: u64,
    registry: Registry,
    rooms: Rooms,
    channels: Channels,
    presence: PresenceBook,
    history: History,
    /// Joins and subscriptions waiting for a copy of their stream, with their deadline.
    waiting: early::Waiting,
    documents: Documents,
    cluster: Cluster,
    /// The application's lifecycle event hooks.
    events: Events,
    /// Ids of application handlers.
    next_id: AtomicU64,
    counters: Counters,
    rates: stats::Rates,
    /// Set when the node starts shutting down; new connections are refused.
    draining: AtomicBool,
    /// Where POSTs relayed to this node's SSE connections go.
    relay: relay::Relay,
    /// `--max-memory`: the limit and the pressure flag (`None`: off).
    memory: Option<memory::MemoryGuard>,
    /// Kept alive here; the broker and membership hold only weak references.
    _sink: Arc<Sink>,
}

impl HubInner {
    /// Who the rooms and channels tell of their first and last members.
    fn observers(&self) -> Observers<'_> {
        Observers {
            cluster: &self.cluster,
            events: &self.events,
        }
    }
}

impl Hub {
    /// A hub with `config` that reaches other nodes through `broker` and learns about them
    /// through `membership`.
    /// In cluster mode `store` numbers and keeps the streams' messages (`None`: this hub
    /// does, on a lone node or when history is off). `docs` keeps the Yjs documents no
    /// client has open.
    pub(crate) fn new(
        config: HubConfig,
        broker: Arc<dyn Broker>,
        membership: Arc<dyn Membership>,
        store: Option<Arc<dyn StreamStore>>,
        docs: Box<dyn DocStore>,
    ) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| HubInner {
            registry: Registry::new(&config.limits),
            history: History::new(config.history, store.is_some()),
            waiting: early::Waiting::default(),
            documents: Documents::new(docs, config.documents.max_size),
            memory: config.limits.max_memory.map(memory::MemoryGuard::new),
            config,
            epoch: tokio::time::Instant::now(),
            started_epoch_ms: now_ms(),
            rooms: Rooms::new(),
            channels: Channels::new(),
            presence: PresenceBook::new(),
            cluster: Cluster::new(broker, membership, store),
            events: Events::default(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            rates: stats::Rates::default(),
            draining: AtomicBool::new(false),
            relay: relay::Relay::default(),
            _sink: Arc::new(Sink(weak.clone())),
        });
        let cluster = &inner.cluster;
        let broker_sink: Arc<dyn BrokerSink> = inner._sink.clone();
        cluster.broker().start(Arc::downgrade(&broker_sink));
        let membership_sink: Arc<dyn MembershipSink> = inner._sink.clone();
        cluster.membership().start(Arc::downgrade(&membership_sink));
        cluster.broker().subscribe(&Topic::Broadcast);
        Self { inner }
    }

    /// Calls `hooks` with every lifecycle event from now on (set once, before connections).
    pub(crate) fn set_event_hooks(&self, hooks: Vec<EventHook>) {
        self.inner.events.set(hooks);
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

    /// A fresh id for an application handler.
    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a frame to every connection of every node. Returns the local recipients.
    pub fn broadcast<P: Serialize>(&self, frame: &ServerFrame<'_, P>) -> usize {
        self.publish(Topic::Broadcast, frame.encode(), None)
    }

    /// Sends a frame to every member of `room` on every node except connection `except`.
    /// A frame of kind `message` is a room message: with history on it gets the room's next
    /// `offset` and is kept for recovery. Returns the local recipients.
    pub fn send_to_room<P: Serialize>(
        &self,
        room: &RoomId,
        frame: &ServerFrame<'_, P>,
        except: Option<ConnId>,
    ) -> usize {
        self.send_room_frame(room, frame, except, None).delivered
    }

    /// Sends a frame to every connection of `user` on every node. Returns the local recipients.
    pub fn send_to_user<P: Serialize>(&self, user: &UserId, frame: &ServerFrame<'_, P>) -> usize {
        self.publish(Topic::User(user.clone()), frame.encode(), None)
    }

    /// Sends a frame to one local connection (not a document connection, which reads only
    /// y-websocket messages). Returns whether it was queued.
    pub fn send_to_connection<P: Serialize>(&self, id: ConnId, frame: &ServerFrame<'_, P>) -> bool {
        let handle = self.inner.registry.get(id).filter(ConnHandle::speaks_json);
        handle.is_some_and(|handle| self.deliver_counted(&handle, &frame.encode()))
    }

    /// Delivers an encoded frame locally, then hands it to the broker for the other nodes.
    pub(crate) fn publish(&self, topic: Topic, frame: Bytes, except: Option<ConnId>) -> usize {
        let delivered = self.deliver_local(&topic, &frame, except);
        self.inner.cluster.publish(self.node_id(), topic, frame);
        delivered
    }

    /// Delivers an encoded frame to the local recipients of `topic`, recording the fan-out's
    /// latency.
    pub(super) fn deliver_local(
        &self,
        topic: &Topic,
        frame: &Bytes,
        except: Option<ConnId>,
    ) -> usize {
        let accepted = Instant::now();
        let inner = &self.inner;
        let outgoing = Outgoing::new(frame);
        let deliver = |handle: &ConnHandle| self.deliver_shared(handle, &outgoing);
        // Everyone and a user's connections: those that read JSON frames (not `/yjs` ones).
        let deliver_json = |handle: &ConnHandle| handle.speaks_json() && deliver(handle);
        let (delivered, target) = match topic {
            Topic::Broadcast => {
                let mut delivered = 0;
                inner.registry.for_each_conn(|handle| {
                    if Some(handle.id()) != except && deliver_json(handle) {
                        delivered += 1;
                    }
                });
                (delivered, Target::Broadcast)
            }
            Topic::Room(room) => (inner.rooms.deliver(room, except, deliver), Target::Room),
            Topic::User(user) => (
                inner.registry.deliver_to_user(user, deliver_json),
                Target::User,
            ),
            // Publications go through `publish_to_channel` (local) and the sink (remote);
            // documents through their own part; an SSE connection's relayed POSTs through the
            // connection layer (`Hub::relay_received`).
            Topic::Channel(_)
            | Topic::ChannelPattern(_)
            | Topic::Document(_)
            | Topic::Connection(_) => return 0,
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

    /// Opens document `name` for `client` (a `/yjs` connection): loads it if no client had it
    /// open, and sends the client the server's sync step 1 and the awareness states (once it
    /// has loaded).
    pub(crate) fn open_document(&self, name: &DocId, client: &ConnHandle) -> Arc<OpenDoc> {
        let deliver =
            |handle: &ConnHandle, frame: &Outgoing<'_>| self.deliver_document(handle, frame);
        let hub = Arc::downgrade(&self.inner);
        let load = move |open: Arc<OpenDoc>| -> DocLoaded {
            Box::new(move |read| {
                if let Some(inner) = hub.upgrade() {
                    let hub = Hub { inner };
                    let deliver =
                        |h: &ConnHandle, frame: &Outgoing<'_>| hub.deliver_document(h, frame);
                    let documents = &hub.inner.documents;
                    documents.loaded(&open, read, hub.now_ms(), deliver);
                }
            })
        };
        self.inner.documents.join(name, client, deliver, load)
    }

    /// Carries out a message of `from`, a client of document `doc`.
    pub(crate) fn document_command(
        &self,
        doc: &Arc<OpenDoc>,
        from: &ConnHandle,
        command: DocCommand<'_>,
    ) -> Result<(), DocError> {
        let deliver =
            |handle: &ConnHandle, frame: &Outgoing<'_>| self.deliver_document(handle, frame);
        let documents = &self.inner.documents;
        if documents.command(doc, from, command, self.now_ms(), deliver)? {
            Counters::add(&self.inner.counters.document_updates, 1);
        }
        Ok(())
    }

    /// Removes `client` from document `doc` (its awareness states go with it); the last client
    /// to leave saves and unloads the document.
    pub(crate) fn close_document(&self, doc: &Arc<OpenDoc>, client: ConnId) {
        let deliver =
            |handle: &ConnHandle, frame: &Outgoing<'_>| self.deliver_document(handle, frame);
        self.inner.documents.leave(doc, client, deliver);
    }

    /// Applies what another node published about document `name` and relays it to this
    /// node's clients of it.
    pub(crate) fn receive_document(&self, name: &DocId, message: &[u8]) {
        let deliver =
            |handle: &ConnHandle, frame: &Outgoing<'_>| self.deliver_document(handle, frame);
        self.inner
            .documents
            .receive(name, message, self.now_ms(), deliver);
    }

    /// Saves every open document that changed since its last save; returns how many.
    pub(crate) fn save_documents(&self) -> usize {
        self.inner.documents.save_changed(self.now_ms())
    }

    fn deliver_document(&self, handle: &ConnHandle, frame: &Outgoing<'_>) -> bool {
        let queued = self.deliver_shared(handle, frame);
        if queued {
            self.inner.counters.count_out(Target::Document, 1);
            Counters::add(&self.inner.counters.bytes_out, frame.plain().len() as u64);
        }
        queued
    }

    /// Queues `frame` on one connection, counting a slow-consumer drop if it overflows.
    pub(crate) fn deliver(&self, handle: &ConnHandle, frame: &Bytes) -> bool {
        self.deliver_shared(handle, &Outgoing::new(frame))
    }

    /// Queues a frame of a fan-out on one of its connections, compressed if the connection
    /// negotiated permessage-deflate and the frame is big enough (its compressed form is made
    /// once for the whole fan-out); counts a slow-consumer drop if it overflows.
    /// An SSE connection gets the frame's event form instead (also made once per fan-out).
    pub(crate) fn deliver_shared(&self, handle: &ConnHandle, frame: &Outgoing<'_>) -> bool {
        if handle.wire() == Wire::Sse {
            return frame
                .for_sse()
                .is_some_and(|event| self.enqueue(handle, event));
        }
        let threshold = self.inner.config.compression.threshold;
        let frame = frame.for_wire(handle.wire(), handle.deflate(), threshold);
        self.enqueue(handle, &frame)
    }

    /// Queues `frame` on one connection as it is (never compressed); an SSE connection gets its
    /// event form, made for it alone (heartbeats: a shared static comment).
    pub(crate) fn push(&self, handle: &ConnHandle, frame: &Bytes) -> bool {
        if handle.wire() == Wire::Sse {
            return crate::sse::event_of_frame(frame)
                .is_some_and(|event| self.enqueue(handle, &event));
        }
        self.enqueue(handle, frame)
    }

    /// Queues bytes in the connection's own form on its outbox; an overflow closes it as a
    /// slow consumer.
    fn enqueue(&self, handle: &ConnHandle, frame: &Bytes) -> bool {
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
        self.inner.registry.for_each_conn(|handle| {
            if handle.close(request.clone(), now) {
                asked += 1;
            }
        });
        asked
    }

    /// The node's statistics.
    pub fn stats(&self) -> StatsSnapshot {
        let inner = &self.inner;
        inner
            .counters
            .snapshot(&inner.rates, self.gauges(inner.rooms.top(TOP_ROOMS)))
    }

    /// The node's live gauges; `top_rooms` is passed in because it costs a pass over the rooms.
    pub(crate) fn gauges(&self, top_rooms: Vec<RoomMembers>) -> stats::Gauges {
        let inner = &self.inner;
        let broker = inner.cluster.broker();
        let (history_streams, history_messages) = inner.history.counts();
        let (documents, document_clients) = inner.documents.counts();
        stats::Gauges {
            connections: inner.registry.connection_count(),
            rooms: inner.rooms.count(),
            online_users: inner.registry.user_count(),
            channels: inner.channels.count(),
            history_streams,
            history_messages,
            documents,
            document_clients,
            uptime_seconds: self.now_ms() / 1000,
            node_id: self.node_id().to_string(),
            broker: broker.name(),
            broker_status: broker.status(),
            broker_settled: broker.settled(),
            broker_dropped: broker.dropped(),
            memory_pressure: self.is_under_memory_pressure(),
            top_rooms,
        }
    }

    /// The broker this hub publishes to.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        self.inner.cluster.broker()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parts_tests.rs"]
mod parts_tests;
