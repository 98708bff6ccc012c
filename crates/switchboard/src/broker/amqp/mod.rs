//! [`AmqpBroker`]: cross-node publish/subscribe over RabbitMQ (AMQP 0-9-1, the `lapin`
//! client).
//!
//! One connection per node, with a channel that publishes and one that consumes. Every node
//! publishes to one topic exchange (named in [`AmqpConfig`], declared by each node, not
//! durable: it carries live traffic only) and consumes from one queue of its own, exclusive
//! and auto-deleted, that RabbitMQ names; the queue is bound to the routing keys of the topics
//! the hub wants (the wanted set, which the hub reference-counts), and the bindings are made
//! equal to that set each time it changes, like `NatsBroker`'s subscriptions. A publication
//! matching several bindings of one queue is queued once, so the hub gets it once.
//!
//! Routing keys: `b` (broadcast); `r.H`, `u.H`, `d.H` (a room, user, document, `H` a 64-bit
//! hash of the name, so every key is short); `k.ID` (an SSE connection); a channel as one word
//! per byte of its name, in hex, then `_` (`c.6e.65.77.73._` for `news`), so that a pattern is
//! an AMQP wildcard (`news*` is `c.6e.65.77.73.#`) and RabbitMQ does the matching. Keys are at
//! most 255 bytes: only a name's first [`SPELLED`] bytes are spelled out, a longer name ends in
//! `~H` instead of `_`, and a longer pattern binds the wildcard of its first [`SPELLED`]
//! bytes. Hashes can collide and a long pattern binds more than it wants, so the routing key
//! only narrows what reaches the node: each message carries its exact topic (and its origin)
//! in a small header before the frame (`wire.rs`), and the node delivers only what its wanted
//! set covers, and never its own publications (RabbitMQ would route them back to it).
//!
//! Tasks (one, spawned by [`AmqpBroker::spawn`], ended by its cancellation token): a session
//! connects, declares, binds everything wanted, then publishes what the bounded queue holds
//! (overflow: dropped and counted, so [`Broker::publish`] never waits on the network), keeps
//! the bindings equal to the wanted set, and hands deliveries to the hub's sink. When the
//! connection fails, what is queued meanwhile is dropped (counted), and a new session starts
//! after a backoff; once it has bound everything again the hub is told (`reconnected`) so it
//! can refill what it may have missed. lapin runs the connection's I/O on tasks of its own in
//! the same runtime; they end when the connection closes.

mod wire;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::Link;
use super::{Broker, BrokerSink, BrokerStatus, Envelope, Topic};
use crate::ids::{ChannelPrefix, NodeId};
use wire::{decode_origin, decode_topic, encode, routing_key};

/// How many bytes of a channel's name its routing key spells out (3 characters each).
const SPELLED: usize = 64;
/// Connecting (and closing) time limit, so that an unreachable server fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of the reconnect backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and how to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The server, e.g. `amqp://user:password@127.0.0.1:5672/%2f` (`amqps://` for TLS).
    pub url: String,
    /// The topic exchange every node of the cluster publishes to; clusters sharing a server
    /// use different ones.
    pub exchange: String,
}

/// Why an AMQP broker cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The exchange name is empty or longer than AMQP allows.
    #[error("invalid AMQP exchange name {0:?}: 1 to 255 bytes")]
    Exchange(String),
}

/// A broker over RabbitMQ. Build it with [`AmqpBroker::new`], then [`AmqpBroker::spawn`] its
/// task inside a tokio runtime.
pub struct AmqpBroker {
    shared: Arc<Shared>,
    /// Taken by the session task when it is spawned.
    receiver: Mutex<Option<mpsc::Receiver<Envelope>>>,
}

struct Shared {
    config: AmqpConfig,
    node: NodeId,
    /// The publication queue, the wanted set's generations (applied: every binding in
    /// effect), reachability and the hub's sink.
    link: Link,
    wanted: Mutex<Wanted>,
}

/// The topics the hub wants, and their patterns apart (checked for each channel delivery).
#[derive(Default)]
struct Wanted {
    topics: HashSet<Topic>,
    patterns: Vec<ChannelPrefix>,
}

/// Why a session ended.
enum Ended {
    Cancelled,
    Failed(Failure),
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("connecting timed out")]
    Timeout,
    #[error("the server cancelled the consumer")]
    Cancelled,
}

impl From<lapin::Error> for Ended {
    fn from(error: lapin::Error) -> Self {
        Self::Failed(Failure::Amqp(error))
    }
}

impl AmqpBroker {
    /// A broker for node `node`; nothing connects until [`AmqpBroker::spawn`].
    pub fn new(config: AmqpConfig, node: NodeId) -> Result<Self, AmqpError> {
        if config.exchange.is_empty() || config.exchange.len() > 255 {
            return Err(AmqpError::Exchange(config.exchange));
        }
        let (link, receiver) = Link::new();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                node,
                link,
                wanted: Mutex::new(Wanted::default()),
            }),
            receiver: Mutex::new(Some(receiver)),
        })
    }

    /// Connects (in the background, retrying) and runs the session task, which ends when
    /// `cancel` fires.
    pub fn spawn(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        if let Some(receiver) = self.receiver.lock().take() {
            tasks.spawn(run(self.shared.clone(), receiver, cancel.clone()));
        }
    }
}

impl Broker for AmqpBroker {
    fn start(&self, sink: Weak<dyn BrokerSink>) {
        self.shared.link.start(sink);
    }

    fn publish(&self, envelope: Envelope) {
        self.shared.link.publish(envelope);
    }

    fn subscribe(&self, topic: &Topic) {
        let mut wanted = self.shared.wanted.lock();
        if wanted.topics.insert(topic.clone()) {
            if let Topic::ChannelPattern(prefix) = topic {
                wanted.patterns.push(prefix.clone());
            }
            drop(wanted);
            self.shared.link.changed();
        }
    }

    fn unsubscribe(&self, topic: &Topic) {
        let mut wanted = self.shared.wanted.lock();
        if wanted.topics.remove(topic) {
            if let Topic::ChannelPattern(prefix) = topic {
                wanted.patterns.retain(|wanted| wanted != prefix);
            }
            drop(wanted);
            self.shared.link.changed();
        }
    }

    fn status(&self) -> BrokerStatus {
        self.shared.link.status()
    }

    fn settled(&self) -> bool {
        self.shared.link.settled()
    }

    fn name(&self) -> &'static str {
        "amqp"
    }

    fn dropped(&self) -> u64 {
        self.shared.link.dropped()
    }
}

impl Shared {
    /// Whether the hub wants `topic` (a publication's, never a pattern).
    fn wants(&self, topic: &Topic) -> bool {
        let wanted = self.wanted.lock();
        wanted.topics.contains(topic)
            || matches!(topic, Topic::Channel(channel)
                if wanted.patterns.iter().any(|prefix| prefix.matches(channel)))
    }

    /// Hands a delivery to the hub, unless it is this node's own or not wanted (any more).
    fn received(&self, body: Vec<u8>) {
        let undecodable = || tracing::debug!("ignoring an undecodable AMQP message");
        let Some((origin, rest)) = decode_origin(&body) else {
            return undecodable();
        };
        if origin == self.node.as_str() {
            return;
        }
        let Some((topic, start)) = decode_topic(rest) else {
            return undecodable();
        };
        if !self.wants(&topic) {
            return;
        }
        let start = body.len() - rest.len() + start;
        let origin = NodeId::from_trusted(origin);
        if let Some(sink) = self.link.sink() {
            sink.deliver(&Envelope {
                origin,
                topic,
                frame: Bytes::from(body).slice(start..),
            });
        }
    }
}

/// Runs sessions until `cancel` fires, with a backoff between them.
async fn run(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Envelope>,
    cancel: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match session(&shared, &mut receiver, &cancel, &mut backoff).await {
            Ended::Cancelled => return,
            Ended::Failed(error) => {
                if shared.link.set_connected(false) {
                    tracing::warn!(%error, "RabbitMQ unreachable: serving local traffic only, reconnecting");
                } else {
                    tracing::debug!(%error, "cannot reach RabbitMQ; retrying");
                }
            }
        }
        // At-most-once across outages: what is published while away is dropped.
        let delay = backoff.mul_f64(1.0 + fastrand::f64() * 0.5);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = &mut wait => break,
                envelope = receiver.recv() => match envelope {
                    Some(_) => shared.link.drop_one(),
                    None => return,
                },
            }
        }
    }
}

/// One connection's life: set up, then publish, rebind and deliver until it fails or `cancel`
/// fires.
async fn session(
    shared: &Shared,
    receiver: &mut mpsc::Receiver<Envelope>,
    cancel: &CancellationToken,
    backoff: &mut Duration,
) -> Ended {
    let connect = Connection::connect(&shared.config.url, ConnectionProperties::default());
    let connection = tokio::select! {
        () = cancel.cancelled() => return Ended::Cancelled,
        connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return error.into(),
            Err(_) => return Ended::Failed(Failure::Timeout),
        },
    };
    let ended = serve(shared, &connection, receiver, cancel, backoff).await;
    let close = connection.close(200, "closing".into());
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, close).await;
    ended
}

/// Declares, binds and consumes on `connection`, then serves until it fails or `cancel` fires.
async fn serve(
    shared: &Shared,
    connection: &Connection,
    receiver: &mut mpsc::Receiver<Envelope>,
    cancel: &CancellationToken,
    backoff: &mut Duration,
) -> Ended {
    let setup = async {
        let publishing = connection.create_channel().await?;
        let consuming = connection.create_channel().await?;
        let exchange = ShortString::from(shared.config.exchange.as_str());
        let options = ExchangeDeclareOptions::default();
        publishing
            .exchange_declare(
                exchange,
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = consuming
            .queue_declare(ShortString::from(""), options, FieldTable::default())
            .await?;
        let options = BasicConsumeOptions {
            no_ack: true,
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let queue = queue.name().clone();
        let consumer = consuming
            .basic_consume(queue.clone(), "".into(), options, FieldTable::default())
            .await?;
        Ok::<_, lapin::Error>((publishing, consuming, queue, consumer))
    };
    let (publishing, consuming, queue, mut consumer) = match setup.await {
        Ok(set_up) => set_up,
        Err(error) => return error.into(),
    };
    let mut bound = BTreeSet::new();
    if let Err(error) = rebind(shared, &consuming, &queue, &mut bound).await {
        return error.into();
    }
    if !shared.link.set_connected(true) {
        tracing::info!("connected to RabbitMQ");
    }
    *backoff = BACKOFF_MIN;
    if let Some(sink) = shared.link.sink() {
        // Publications may have been lost while away (or before: harmless).
        sink.reconnected();
    }
    let exchange = ShortString::from(shared.config.exchange.as_str());
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            () = shared.link.wanted_changed() => {
                if let Err(error) = rebind(shared, &consuming, &queue, &mut bound).await {
                    return error.into();
                }
            }
            envelope = receiver.recv() => {
                let Some(envelope) = envelope else { return Ended::Cancelled };
                let key = ShortString::from(routing_key(&envelope.topic));
                let body = encode(&shared.node, &envelope);
                let options = BasicPublishOptions::default();
                let properties = BasicProperties::default();
                let published = publishing
                    .basic_publish(exchange.clone(), key, options, &body, properties)
                    .await;
                if let Err(error) = published {
                    shared.link.drop_one();
                    return error.into();
                }
            }
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => shared.received(delivery.data),
                Some(Err(error)) => return error.into(),
                None => return Ended::Failed(Failure::Cancelled),
            },
        }
    }
}

/// Makes the queue's bindings equal to the wanted set.
async fn rebind(
    shared: &Shared,
    channel: &Channel,
    queue: &ShortString,
    bound: &mut BTreeSet<String>,
) -> lapin::Result<()> {
    // Read before the set: a change made meanwhile leaves the broker unsettled.
    let generation = shared.link.generation();
    let wanted: BTreeSet<String> = shared
        .wanted
        .lock()
        .topics
        .iter()
        .map(routing_key)
        .collect();
    let exchange = ShortString::from(shared.config.exchange.as_str());
    let unwanted: Vec<String> = bound.difference(&wanted).cloned().collect();
    for key in unwanted {
        channel
            .queue_unbind(
                queue.clone(),
                exchange.clone(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await?;
        bound.remove(&key);
    }
    let missing: Vec<String> = wanted.difference(bound).cloned().collect();
    for key in missing {
        let options = QueueBindOptions::default();
        channel
            .queue_bind(
                queue.clone(),
                exchange.clone(),
                key.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await?;
        bound.insert(key);
    }
    shared.link.applied(generation);
    Ok(())
}

#[cfg(test)]
mod tests;
