//! Cross-node delivery. The hub publishes every room, user, channel and broadcast message to a
//! [`Broker`] after delivering it locally, and subscribes to a topic only while it has a local
//! member for it. The broker hands publications from *other* nodes to the hub's
//! [`BrokerSink`]; a node never receives its own messages back.
//!
//! Implementations: [`LocalBroker`] here (in-process; a lone node pays nothing),
//! [`NatsBroker`] (over a NATS server), [`AmqpBroker`] (over RabbitMQ) and, in cluster mode,
//! `RedisCluster` (in the `cluster` module, above this one), which carries publications itself
//! over Redis pub/sub or hands them to a NATS or AMQP broker (`--broker-url`). The hub never knows which
//! one it talks to; one conformance suite (`conformance.rs`) runs against each.

mod amqp;
mod link;
mod local;
mod nats;

use std::sync::Weak;

use bytes::Bytes;

use crate::ids::{ChannelId, ChannelPrefix, ConnId, DocId, NodeId, RoomId, StreamId, UserId};
pub use amqp::{AmqpBroker, AmqpConfig, AmqpError};
pub use local::{LocalBroker, LocalBus};
pub use nats::{NatsBroker, NatsConfig, NatsError};

/// A networked broker that carries a Redis cluster's publications instead of Redis pub/sub
/// (`--broker-url`); Redis stays the cluster's state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerUrl {
    /// A NATS server: `nats://[user:password@]host:port`.
    Nats(String),
    /// A RabbitMQ server (AMQP 0.9.1): `amqp://[user:password@]host:port[/vhost]`, or
    /// `amqps://` for TLS.
    Amqp(String),
}

impl BrokerUrl {
    /// Recognises the broker by the URL's scheme.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("nats") => Ok(Self::Nats(url.to_owned())),
            Some("amqp" | "amqps") => Ok(Self::Amqp(url.to_owned())),
            _ => Err(BrokerUrlError),
        }
    }

    /// The broker's short name, as [`Broker::name`] says it (`nats`, `amqp`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nats(_) => "nats",
            Self::Amqp(_) => "amqp",
        }
    }
}

/// A broker URL whose scheme is none of the brokers'.
#[derive(Debug, thiserror::Error)]
#[error("must start with nats://, amqp:// or amqps://")]
pub struct BrokerUrlError;

/// What a publication is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every connection of every node.
    Broadcast,
    /// The members of a room.
    Room(RoomId),
    /// Every connection of a user.
    User(UserId),
    /// The subscribers of a channel.
    Channel(ChannelId),
    /// Subscriptions only: every channel matching a pattern. Publications are always addressed
    /// to a [`Topic::Channel`]; a node subscribed to a matching pattern receives them.
    ChannelPattern(ChannelPrefix),
    /// The clients of a Yjs document: its updates and awareness messages (y-websocket
    /// messages, not frames: each node frames them for its clients).
    Document(DocId),
    /// The client frames of one SSE connection that were POSTed to another node than the one
    /// holding its stream: only that node subscribes, while the stream is open. The
    /// publication is the POST relayed (`connection::sse`), not a frame.
    Connection(ConnId),
}

impl Topic {
    /// Whether a node subscribed to `self` receives a publication addressed to `target`.
    pub fn covers(&self, target: &Topic) -> bool {
        match (self, target) {
            (Self::ChannelPattern(prefix), Self::Channel(channel)) => prefix.matches(channel),
            _ => self == target,
        }
    }
}

/// One publication between nodes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The node that published it.
    pub origin: NodeId,
    /// Its address.
    pub topic: Topic,
    /// The complete WebSocket frame, encoded once by the origin; every node writes these very
    /// bytes to its local recipients. For a [`Topic::Document`], the y-websocket message; for a
    /// [`Topic::Connection`], the relayed POST.
    pub frame: Bytes,
}

/// A stream message as the cluster's store published it (DESIGN.md §7): to every node with a
/// member, the publishing one included.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// The room or channel.
    pub stream: StreamId,
    /// The stream's epoch when the message was numbered.
    pub epoch: String,
    /// Its offset.
    pub offset: u64,
    /// Its frame's JSON, offset included.
    pub json: Bytes,
    /// A connection that must not receive it (the sender of a room message).
    pub except: Option<ConnId>,
}

/// Where a broker delivers publications from other nodes (the hub).
pub trait BrokerSink: Send + Sync {
    /// Delivers `envelope` to the local recipients of its topic.
    fn deliver(&self, envelope: &Envelope);
    /// Delivers a stream message from the cluster's store, in its stream's order.
    fn deliver_stream(&self, message: StreamMessage);
    /// The broker reached the other nodes again after an outage: publications may have been
    /// lost meanwhile.
    fn reconnected(&self);
}

/// Whether the broker currently reaches the other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerStatus {
    /// Publications flow to and from other nodes (always, for a lone node).
    #[default]
    Connected,
    /// Other nodes are unreachable; local delivery goes on.
    Degraded,
}

/// Cross-node publish/subscribe.
///
/// Guarantees every implementation gives (checked by one conformance suite):
/// - a publication reaches every other node subscribed to its topic, once, and never its origin;
/// - publications of one origin on one topic arrive in the order they were published;
/// - subscriptions are sets: subscribing twice then unsubscribing once leaves none;
/// - a publication matching both an exact and a pattern subscription arrives once;
/// - no method blocks on the network; a broker that is down is `Degraded`, never an error.
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering publications from other nodes to `sink`. Called once, by the hub.
    fn start(&self, sink: Weak<dyn BrokerSink>);
    /// Sends `envelope` to the other nodes subscribed to its topic.
    fn publish(&self, envelope: Envelope);
    /// Starts receiving publications on `topic`.
    fn subscribe(&self, topic: &Topic);
    /// Stops receiving publications on `topic`.
    fn unsubscribe(&self, topic: &Topic);
    /// Current reachability of the other nodes.
    fn status(&self) -> BrokerStatus;
    /// Whether every subscription change made so far is in effect (publications on those
    /// topics will be received).
    fn settled(&self) -> bool;
    /// A short name for logs and `/stats` (`local`, `redis`).
    fn name(&self) -> &'static str;
    /// Publications (and, for a broker that carries them, announcements and stream appends)
    /// dropped since start instead of reaching the other nodes: while they were unreachable,
    /// or beyond the broker's queue. `/stats` shows it as `brokerDropped`.
    fn dropped(&self) -> u64;
}

#[cfg(test)]
pub(crate) mod conformance;
