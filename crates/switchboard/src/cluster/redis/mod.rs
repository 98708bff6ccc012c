//! Cluster mode over Redis: one [`RedisCluster`] per node is its
//! [`Broker`](crate::broker::Broker) (publications to other nodes over Redis pub/sub, or over
//! NATS or RabbitMQ with `--broker-url`: `pubsub.rs`, `external.rs`), its [`Membership`]
//! (state and liveness in Redis keys, changes on a cluster event channel), its [`StreamStore`]
//! (offsets and history of rooms and channels, `streams.rs`) and its
//! [`DocStore`](crate::docstore::DocStore) (Yjs documents, `docs.rs`).
//!
//! Connections: one publishing connection (a `ConnectionManager`, also used for the few reads)
//! and one subscribing connection per node, whatever the number of rooms or clients. With
//! `--redis-cluster` each is a cluster connection (`conn.rs`: one multiplexed connection per
//! master), keys and channels carry hash tags (`keys.rs`), and publication and subscription
//! take the sharded road (`shards.rs`). The node
//! subscribes to a topic's Redis channel only while it has a local member (the hub
//! reference-counts); the wanted set lives here, so after a reconnect everything is
//! resubscribed.
//!
//! Tasks: the publisher (`tasks.rs`), the subscriber (`subscriber.rs`), liveness
//! (`liveness.rs`), and a short-lived one per stream read. The announcements' transactions
//! and their wire form are in `announcements.rs`.
//!
//! Failure model: nothing here blocks the hub. Publications, appends and announcements go
//! through a bounded queue to the publisher task; when Redis is unreachable they are dropped
//! (at-most-once delivery across outages; an append is given back to the hub, which delivers
//! it to its own members) and counted, the node reports `Degraded`, logs the outage once, and
//! reconnects with backoff. On reconnect it rewrites its state hash from the hub, announces it,
//! reloads the other nodes' state, resubscribes, and the hub reads what its streams missed.
//!
//! Leaving: a node that shuts down cleanly calls [`RedisCluster::leave`] once its connections
//! are gone. Their departures were announced through the queue like any others; behind them
//! the publisher deletes the node's state and liveness, removes it from the node set and
//! announces it [`Event::Dead`], so the others drop it at once, through the same path as a
//! reaped node (anything its connections could not announce, a connection still open at the
//! deadline say, is announced there). Nothing is queued after that.

mod announcements;
mod conn;
mod docs;
mod external;
mod holders;
mod indexes;
mod keys;
mod liveness;
mod pubsub;
mod rewrite;
mod shards;
mod streams;
mod subscriber;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    ClusterCounts, Event, Membership, MembershipSink, Replica, RoomLoad, StateError, Version,
};
use crate::broker::{BrokerSink, Topic};
use crate::ids::{NodeId, RoomId, StreamId};
use crate::store::{Append, HistoryConfig, ReadDone, StoreError, StreamStore};
use conn::Conn;
use keys::Keys;

/// Most publications and announcements queued for Redis; beyond, they are dropped.
const OUTGOING_CAPACITY: usize = 65_536;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// Prefix of every key and channel, so several clusters can share one Redis.
    pub prefix: String,
    /// A node that has not refreshed its liveness key for this long is dead.
    pub node_ttl: Duration,
    /// PEM certificates trusted for a `rediss://` URL instead of the system's roots.
    pub tls_ca: Option<Vec<u8>>,
    /// The broker that carries publications, when not Redis pub/sub (`external.rs`).
    pub broker: Option<crate::broker::BrokerUrl>,
    /// `url` is a seed node of a Redis Cluster (`conn.rs`, `shards.rs`).
    pub cluster: bool,
}

/// Why cluster mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL is not valid.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// The NATS broker cannot be built.
    #[error(transparent)]
    Nats(#[from] crate::broker::NatsError),
    /// The AMQP broker cannot be built.
    #[error(transparent)]
    Amqp(#[from] crate::broker::AmqpError),
}

/// What the publisher task sends to Redis, in order.
enum Outgoing {
    /// A stream message to number, keep and publish (the store's script); its reply is read.
    Append(Append),
    /// Anything else; replies are not read.
    Write(Write),
}

/// A write whose reply the publisher does not need.
enum Write {
    /// A publication to the other nodes.
    Publish { channel: String, payload: Bytes },
    /// A document update: appended to the document's log, and published (as a y-websocket
    /// message in an envelope) on its channel, unless another broker carries publications
    /// (`None`: it did).
    DocAppend {
        log: String,
        update: Bytes,
        publish: Option<(String, Bytes)>,
    },
    /// A membership change: written to the node's hash and announced, in one transaction
    /// with the changes queued right before and after it (`announcements.rs`).
    Announce(Event),
    /// Rewrite the node's whole hash from the hub and announce a reload.
    Rewrite,
    /// The node is leaving: delete its state and liveness, and announce it gone. The sender
    /// is dropped once Redis answered (or the write failed); [`RedisCluster::leave`] waits
    /// on the other end.
    Leave(oneshot::Sender<()>),
}

/// The topics (channels and patterns) this node wants to receive, besides the membership
/// events it always does, and the changes the subscriber task has not applied yet.
///
/// Topics, not Redis channel names: a topic shares its user's or room's id with the hub
/// (one `Arc`), where a name would be one more allocation per local user (issue 15's memory
/// per connection). Names are built when a (un)subscription is sent.
#[derive(Debug, Default)]
struct Wanted {
    topics: HashSet<Topic>,
    changes: Vec<SubscriptionChange>,
}

impl Wanted {
    /// Whether the exact subscription of a Redis channel is wanted.
    fn has_channel(&self, keys: &Keys, channel: &str) -> bool {
        channel == keys.events()
            || keys
                .topic(channel)
                .is_some_and(|topic| self.topics.contains(&topic))
    }

    /// Everything wanted, as the (un)subscriptions a fresh connection needs; forgets the
    /// pending changes, which it covers.
    fn resubscriptions(&mut self, keys: &Keys) -> Vec<SubscriptionChange> {
        self.changes.clear();
        std::iter::once(SubscriptionChange::Subscribe(keys.events().to_owned()))
            .chain(
                self.topics
                    .iter()
                    .map(|topic| subscription(keys, topic, true)),
            )
            .collect()
    }
}

/// The (un)subscription of `topic`'s Redis channel or pattern.
fn subscription(keys: &Keys, topic: &Topic, add: bool) -> SubscriptionChange {
    let name = keys.channel(topic);
    match (matches!(topic, Topic::ChannelPattern(_)), add) {
        (false, true) => SubscriptionChange::Subscribe(name),
        (false, false) => SubscriptionChange::Unsubscribe(name),
        (true, true) => SubscriptionChange::PSubscribe(name),
        (true, false) => SubscriptionChange::PUnsubscribe(name),
    }
}

/// One (un)subscription for the subscriber task to send.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubscriptionChange {
    Subscribe(String),
    Unsubscribe(String),
    PSubscribe(String),
    PUnsubscribe(String),
}

struct Shared {
    node: NodeId,
    /// The broker that carries publications instead of Redis pub/sub, if any.
    external: Option<external::External>,
    keys: Keys,
    client: conn::Client,
    ttl: Duration,
    replica: RwLock<Replica>,
    broker_sink: OnceLock<Weak<dyn BrokerSink>>,
    membership_sink: OnceLock<Weak<dyn MembershipSink>>,
    wanted: Mutex<Wanted>,
    /// Woken when `wanted` changes; the subscriber task then (un)subscribes the difference.
    wanted_changed: Notify,
    /// The subscriber's subscriptions equal `wanted`.
    settled: AtomicBool,
    subscriber: tasks::Link,
    publisher: tasks::Link,
    /// Sender side of the publisher task's queue (the task holds the receiver).
    outgoing: mpsc::Sender<Outgoing>,
    receiver: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// The publishing connection, shared with the tasks that read.
    connection: Mutex<Option<Conn>>,
    peer_stats: Mutex<Vec<serde_json::Value>>,
    dropped: AtomicU64,
    /// The stream scripts, and the history limits they apply.
    scripts: streams::Scripts,
    history: HistoryConfig,
    /// The holder scripts (`holders.rs`), and where a reaped node's holdings go.
    holder_scripts: holders::HolderScripts,
    index_scripts: indexes::IndexScripts,
    orphan_sink: OnceLock<crate::cluster::holders::OrphanSink>,
    /// Notified whenever `settled` becomes true.
    settled_changed: Notify,
    /// Notified when a connection finds Redis reachable again after failing: the others
    /// waiting out a backoff retry at once.
    reachable: Notify,
    /// Where reads run, set by [`RedisCluster::spawn`].
    runtime: OnceLock<(TaskTracker, CancellationToken)>,
    /// Set by [`RedisCluster::leave`]: nothing more is queued, liveness is not refreshed.
    departed: AtomicBool,
    /// This process, in the versions of its announcements.
    instance: u64,
    /// Announcements versioned so far (only the publisher task takes the next one, so their
    /// order is the order Redis receives them in).
    announced: AtomicU64,
    /// Users whose closing `offline` is still to be written (`announcements.rs`).
    closing: Mutex<announcements::Closing>,
    /// Held by the liveness task while it refreshes the node's liveness, and by the publisher
    /// while it sends the departure, so a refresh never re-registers a node that left.
    registration: tokio::sync::Mutex<()>,
}

/// Cluster mode over Redis: this node's [`Broker`](crate::broker::Broker) and
/// [`Membership`], and the store of its streams and documents. Clones are the same cluster.
#[derive(Clone)]
pub struct RedisCluster {
    shared: Arc<Shared>,
}

impl RedisCluster {
    /// Prepares cluster mode for node `node`, keeping streams within `history`; nothing
    /// touches the network until [`RedisCluster::spawn`].
    pub fn new(
        config: &RedisConfig,
        node: NodeId,
        history: HistoryConfig,
    ) -> Result<Self, ClusterError> {
        let client = conn::Client::new(config)?;
        let external = match &config.broker {
            Some(url) => Some(external::External::new(url, &config.prefix, node.clone())?),
            None => None,
        };
        let (outgoing, receiver) = mpsc::channel(OUTGOING_CAPACITY);
        let keys = Keys::new(&config.prefix, config.cluster);
        Ok(Self {
            shared: Arc::new(Shared {
                node,
                external,
                keys,
                client,
                ttl: config.node_ttl,
                replica: RwLock::new(Replica::default()),
                broker_sink: OnceLock::new(),
                membership_sink: OnceLock::new(),
                wanted: Mutex::new(Wanted::default()),
                wanted_changed: Notify::new(),
                settled: AtomicBool::new(false),
                subscriber: tasks::Link::new("subscriber"),
                publisher: tasks::Link::new("publisher"),
                outgoing,
                receiver: Mutex::new(Some(receiver)),
                connection: Mutex::new(None),
                peer_stats: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
                scripts: streams::Scripts::new(),
                history,
                holder_scripts: holders::HolderScripts::new(),
                index_scripts: indexes::IndexScripts::new(),
                orphan_sink: OnceLock::new(),
                settled_changed: Notify::new(),
                reachable: Notify::new(),
                runtime: OnceLock::new(),
                departed: AtomicBool::new(false),
                instance: fastrand::u64(..),
                announced: AtomicU64::new(0),
                closing: Mutex::new(announcements::Closing::default()),
                registration: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Starts the subscriber, publisher and liveness tasks on `tasks`; they stop with `cancel`.
    pub fn spawn(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let _ = self.shared.runtime.set((tasks.clone(), cancel.clone()));
        if let Some(receiver) = self.shared.receiver.lock().take() {
            tasks.spawn(tasks::publisher(
                self.shared.clone(),
                receiver,
                cancel.clone(),
            ));
            tasks.spawn(subscriber::run(self.shared.clone(), cancel.clone()));
            tasks.spawn(liveness::run(self.shared.clone(), cancel.clone()));
            if let Some(external) = &self.shared.external {
                external.spawn(tasks, cancel);
            }
        }
    }

    /// Takes this node out of the cluster, for a clean stop: after everything queued so far
    /// (the departures of its connections), its state and liveness keys are deleted, it leaves
    /// the node set, and the other nodes are told it is gone, which they treat as they treat a
    /// reaped node (their clients see `offline` and `user_left` for what is still listed).
    /// From the call on, nothing else is sent. Waits at most `within` for Redis to take it;
    /// returns whether it did (`false`: Redis unreachable or slow, or already left; the other
    /// nodes then reap this one when its liveness expires).
    pub async fn leave(&self, within: Duration) -> bool {
        let shared = &self.shared;
        if shared.departed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let (sent, done) = oneshot::channel::<()>();
        let leave = Outgoing::Write(Write::Leave(sent));
        let confirmed = async {
            shared.outgoing.send(leave).await.ok()?;
            done.await.ok()
        };
        matches!(tokio::time::timeout(within, confirmed).await, Ok(Some(())))
    }
}

impl Shared {
    /// The version of this node's next announcement.
    fn next_version(&self) -> Version {
        self.take_versions(1)
    }

    /// The version of the last of this node's next `count` announcements (at least one).
    fn take_versions(&self, count: usize) -> Version {
        let count = count.max(1) as u64;
        Version {
            instance: self.instance,
            seq: self.announced.fetch_add(count, Ordering::Relaxed) + count,
        }
    }

    fn queue(&self, item: Outgoing) {
        if self.departed.load(Ordering::Acquire) {
            // The others were told this node is gone: anything more would bring it back.
            item.fail();
            return;
        }
        if let Err(refused) = self.outgoing.try_send(item) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            refused.into_inner().fail();
        }
    }

    /// Marks every subscription change made so far in effect, and wakes who waits for that.
    fn settle(&self) {
        self.settled.store(true, Ordering::Release);
        self.settled_changed.notify_waiters();
    }

    /// Returns once the subscriber is connected and every subscription change made before the
    /// call is in effect (another broker's too).
    async fn in_step(&self) {
        loop {
            let changed = self.settled_changed.notified();
            if self.subscriber.is_up() && self.settled.load(Ordering::Acquire) {
                break;
            }
            changed.await;
        }
        if let Some(external) = &self.external {
            external.settled().await;
        }
    }

    fn connection(&self) -> Option<Conn> {
        self.connection.lock().clone()
    }

    fn membership_sink(&self) -> Option<Arc<dyn MembershipSink>> {
        self.membership_sink.get().and_then(Weak::upgrade)
    }

    fn broker_sink(&self) -> Option<Arc<dyn BrokerSink>> {
        self.broker_sink.get().and_then(Weak::upgrade)
    }

    /// Applies replica changes and hands them to the hub.
    fn announce_changes(&self, changes: Vec<super::Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(sink) = self.membership_sink() {
            sink.changes(changes);
        }
    }
}

impl StreamStore for RedisCluster {
    fn append(&self, append: Append) {
        self.shared.queue(Outgoing::Append(append));
    }

    fn read(&self, stream: &StreamId, done: ReadDone) {
        match self.shared.runtime.get() {
            Some((tasks, cancel)) => {
                tasks.spawn(streams::read(
                    self.shared.clone(),
                    stream.clone(),
                    done,
                    cancel.clone(),
                ));
            }
            None => done(Err(StoreError::Unavailable)),
        }
    }

    fn available(&self) -> bool {
        // Appends go through the publishing connection; until it has failed it is presumed
        // up (a cut subscriber loses deliveries, which reads fill, not appends).
        !self.shared.publisher.is_down()
    }
}

impl Outgoing {
    /// Gives up on an item that will not reach Redis: an append's sender learns it has no
    /// offset.
    fn fail(self) {
        if let Self::Append(append) = self {
            append.fail(StoreError::Unavailable);
        }
    }
}

impl Membership for RedisCluster {
    fn start(&self, sink: Weak<dyn MembershipSink>) {
        let _ = self.shared.membership_sink.set(sink);
    }

    fn announce(&self, event: Event) {
        self.shared.queue(Outgoing::Write(Write::Announce(event)));
    }

    fn replica(&self) -> Option<&RwLock<Replica>> {
        Some(&self.shared.replica)
    }

    fn peer_stats(&self) -> Vec<serde_json::Value> {
        // The statistics come with liveness (every ttl/3); a node that left or was reaped
        // since is already gone from the replica, which is what every other figure reads.
        let live: HashSet<String> = self
            .shared
            .replica
            .read()
            .nodes()
            .map(ToString::to_string)
            .collect();
        let stats = self.shared.peer_stats.lock();
        stats
            .iter()
            .filter(|stats| stats["nodeId"].as_str().is_some_and(|id| live.contains(id)))
            .cloned()
            .collect()
    }

    fn load_room(&self, room: &RoomId) -> BoxFuture<'_, Result<RoomLoad, StateError>> {
        let room = room.clone();
        async move {
            let shared = &self.shared;
            let mut connection = shared.connection().ok_or(StateError::NotConnected)?;
            indexes::load(&shared.index_scripts, &shared.keys, &mut connection, &room)
                .await
                .map_err(StateError::Store)
        }
        .boxed()
    }

    fn counts(&self, top: usize) -> BoxFuture<'_, Result<ClusterCounts, StateError>> {
        async move {
            let shared = &self.shared;
            let mut connection = shared.connection().ok_or(StateError::NotConnected)?;
            indexes::counts(&shared.keys, &mut connection, top)
                .await
                .map_err(StateError::Store)
        }
        .boxed()
    }
}

/// Checks that a key prefix is usable: the name characters only, so it needs no escaping in
/// `PSUBSCRIBE` patterns.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 64 {
        return Err("must be at most 64 characters".to_owned());
    }
    if prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.:{}".contains(c))
    {
        Ok(())
    } else {
        Err("may contain only ASCII letters, digits and _ - . : { }".to_owned())
    }
}
