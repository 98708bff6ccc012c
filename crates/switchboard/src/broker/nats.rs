//! [`NatsBroker`]: cross-node publish/subscribe over a NATS server (the `async-nats` client).
//!
//! Each topic is a subject under the broker's prefix: `P.b` (broadcast), `P.r.<hex>` (a room),
//! `P.u.<hex>` (a user), `P.d.<hex>` (a document), and a channel as one token per byte of its
//! name then `_` (`P.c.6e.65.77.73._` for `news`), so that a channel pattern is a NATS wildcard
//! (`news*` is `P.c.6e.65.77.73.>`) and the server does the matching. Names go in hex because
//! a NATS token cannot hold `.`, `*`, `>` or spaces. The publishing node rides in a header;
//! the connection is opened with `no_echo`, so a node never gets its own publications.
//!
//! Tasks (spawned by [`NatsBroker::spawn`], ended by its cancellation token):
//! - the *publisher* takes publications from a bounded queue (overflow: dropped and counted,
//!   so [`Broker::publish`] never waits on the network) and publishes them in order;
//! - the *subscriber manager* makes the NATS subscriptions equal to the wanted set each time
//!   it changes, waits for the server to have them (a round trip: [`barrier`]), and then
//!   counts as settled; each subscription has a forwarding task that hands its messages to
//!   the hub's sink.
//!
//! Two uses: the message bus of nodes built with [`crate::switchboard::Builder::broker`] (rooms,
//! users, channels and broadcasts cross nodes; membership, presence and history stay per
//! node), and, with `--broker-url nats://…`, the bus of a Redis cluster whose state stays in
//! Redis (`cluster::redis`, `external.rs`).
//!
//! A channel publication that matches an exact and a pattern subscription (or two patterns)
//! reaches this node once per subscription; only the first of those subscriptions in the
//! wanted set's order delivers it, so the hub gets it once. The client reconnects by itself
//! and resubscribes; the hub is told (`reconnected`) so it can refill what it may have missed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Weak};

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::Link;
use super::{Broker, BrokerSink, BrokerStatus, Envelope, Topic};
use crate::ids::{ChannelId, ConnId, DocId, NodeId, RoomId, UserId};

/// The header naming the publishing node.
const ORIGIN: &str = "Sb-Origin";

/// Where and how to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The server, e.g. `nats://127.0.0.1:4222` (credentials in the URL work).
    pub url: String,
    /// The first token of every subject, so that clusters can share one NATS.
    pub prefix: String,
}

/// Why a NATS broker cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The prefix is not one NATS subject token.
    #[error("invalid NATS subject prefix {0:?}: letters, digits, '-' and '_' only")]
    Prefix(String),
}

/// A broker over NATS. Build it with [`NatsBroker::new`], then [`NatsBroker::spawn`] its
/// tasks inside a tokio runtime.
pub struct NatsBroker {
    shared: Arc<Shared>,
    /// Taken by the publisher task when it is spawned.
    receiver: Mutex<Option<mpsc::Receiver<Envelope>>>,
}

struct Shared {
    config: NatsConfig,
    node: NodeId,
    /// The publication queue, the wanted set's generations, reachability and the hub's sink.
    link: Link,
    /// The topics the hub wants, as subjects: the manager makes NATS match them.
    wanted: Mutex<BTreeMap<String, Topic>>,
}

impl NatsBroker {
    /// A broker for node `node`; nothing connects until [`NatsBroker::spawn`].
    pub fn new(config: NatsConfig, node: NodeId) -> Result<Self, NatsError> {
        let token_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if config.prefix.is_empty() || !config.prefix.chars().all(token_chars) {
            return Err(NatsError::Prefix(config.prefix));
        }
        let (link, receiver) = Link::new();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                node,
                link,
                wanted: Mutex::new(BTreeMap::new()),
            }),
            receiver: Mutex::new(Some(receiver)),
        })
    }

    /// Connects (in the background, retrying) and starts the publisher and the subscriber
    /// manager, which end when `cancel` fires.
    pub fn spawn(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let Some(receiver) = self.receiver.lock().take() else {
            return;
        };
        let shared = self.shared.clone();
        let (tasks, cancel) = (tasks.clone(), cancel.clone());
        tasks.clone().spawn(async move {
            let Some(client) = connect(&shared, &cancel).await else {
                return;
            };
            tasks.spawn(publisher(
                shared.clone(),
                client.clone(),
                receiver,
                cancel.clone(),
            ));
            manage_subscriptions(shared, client, tasks, cancel).await;
        });
    }
}

impl Broker for NatsBroker {
    fn dropped(&self) -> u64 {
        self.shared.link.dropped()
    }

    fn start(&self, sink: Weak<dyn BrokerSink>) {
        self.shared.link.start(sink);
    }

    fn publish(&self, envelope: Envelope) {
        self.shared.link.publish(envelope);
    }

    fn subscribe(&self, topic: &Topic) {
        let subject = subject(&self.shared.config.prefix, topic);
        if self
            .shared
            .wanted
            .lock()
            .insert(subject, topic.clone())
            .is_none()
        {
            self.shared.link.changed();
        }
    }

    fn unsubscribe(&self, topic: &Topic) {
        let subject = subject(&self.shared.config.prefix, topic);
        if self.shared.wanted.lock().remove(&subject).is_some() {
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
        "nats"
    }
}

impl Shared {
    /// Whether the subscription `subject` is the one that delivers `topic` on this node: the
    /// first wanted subscription that covers it (so a publication matching several arrives
    /// once).
    fn delivers(&self, subject: &str, topic: &Topic) -> bool {
        let wanted = self.wanted.lock();
        wanted
            .iter()
            .find(|(_, wanted)| wanted.covers(topic))
            .is_some_and(|(first, _)| first == subject)
    }
}

/// Connects with retries until it succeeds or `cancel` fires.
async fn connect(shared: &Arc<Shared>, cancel: &CancellationToken) -> Option<async_nats::Client> {
    let events = Arc::downgrade(shared);
    let options = async_nats::ConnectOptions::new()
        .no_echo()
        .retry_on_initial_connect()
        .name(format!("switchboard {}", shared.node))
        .event_callback(move |event| {
            let shared = events.upgrade();
            async move {
                let Some(shared) = shared else { return };
                match event {
                    async_nats::Event::Connected => {
                        let was = shared.link.set_connected(true);
                        tracing::info!("connected to NATS");
                        if !was && let Some(sink) = shared.link.sink() {
                            // Publications may have been lost while away.
                            sink.reconnected();
                        }
                    }
                    async_nats::Event::Disconnected => {
                        shared.link.set_connected(false);
                        tracing::warn!(
                            "NATS unreachable: serving local traffic only, reconnecting"
                        );
                    }
                    other => tracing::debug!(event = %other, "NATS"),
                }
            }
        });
    tokio::select! {
        () = cancel.cancelled() => None,
        connected = options.connect(shared.config.url.as_str()) => match connected {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(%error, url = %shared.config.url, "cannot use NATS");
                None
            }
        },
    }
}

/// Publishes the queued publications in order.
async fn publisher(
    shared: Arc<Shared>,
    client: async_nats::Client,
    mut receiver: mpsc::Receiver<Envelope>,
    cancel: CancellationToken,
) {
    let origin: async_nats::HeaderValue = shared.node.as_str().into();
    loop {
        let envelope = tokio::select! {
            () = cancel.cancelled() => return,
            envelope = receiver.recv() => match envelope {
                Some(envelope) => envelope,
                None => return,
            },
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ORIGIN, origin.clone());
        let subject = subject(&shared.config.prefix, &envelope.topic);
        if let Err(error) = client
            .publish_with_headers(subject, headers, envelope.frame)
            .await
        {
            shared.link.drop_one();
            tracing::debug!(%error, "a NATS publication failed");
        }
    }
}

/// Keeps the NATS subscriptions equal to the wanted set.
async fn manage_subscriptions(
    shared: Arc<Shared>,
    client: async_nats::Client,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    // Each subscription's forwarding task, ended by its token when the topic is unwanted.
    let mut active: BTreeMap<String, CancellationToken> = BTreeMap::new();
    loop {
        let changed = shared.link.wanted_changed();
        // Read before the set: a change made meanwhile leaves the broker unsettled.
        let generation = shared.link.generation();
        let wanted: BTreeSet<String> = shared.wanted.lock().keys().cloned().collect();
        active.retain(|subject, stop| {
            let keep = wanted.contains(subject);
            if !keep {
                stop.cancel();
            }
            keep
        });
        let mut failed = false;
        let missing: Vec<&String> = wanted.iter().filter(|s| !active.contains_key(*s)).collect();
        for subject in missing {
            match client.subscribe(subject.clone()).await {
                Ok(subscriber) => {
                    let stop = cancel.child_token();
                    tasks.spawn(forward(
                        shared.clone(),
                        subject.clone(),
                        subscriber,
                        stop.clone(),
                    ));
                    active.insert(subject.clone(), stop);
                }
                Err(error) => {
                    tracing::debug!(%error, "a NATS subscription failed; retrying");
                    failed = true;
                }
            }
        }
        let flushed = !failed && barrier(&client, &shared.config.prefix).await;
        if flushed {
            shared.link.applied(generation);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = changed => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(100)), if !flushed => {}
        }
    }
}

/// Waits until the server has processed everything this client sent before: it handles a
/// connection's commands in order, and answers a request nobody listens to at once ("no
/// responders"), so that answer comes after the subscriptions sent before it are in effect.
/// (`flush` only writes the buffer out.)
async fn barrier(client: &async_nats::Client, prefix: &str) -> bool {
    match client
        .request(format!("{prefix}.barrier"), bytes::Bytes::new())
        .await
    {
        Ok(_) => true,
        Err(error) => error.kind() == async_nats::RequestErrorKind::NoResponders,
    }
}

/// Hands one subscription's messages to the hub.
async fn forward(
    shared: Arc<Shared>,
    subscription: String,
    mut subscriber: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => {
                let _ = subscriber.unsubscribe().await;
                return;
            }
            message = subscriber.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let prefix = &shared.config.prefix;
        let Some(topic) = topic(prefix, message.subject.as_str()) else {
            continue;
        };
        let origin = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(ORIGIN))
            .and_then(|origin| NodeId::parse(origin.as_str(), 64).ok());
        let Some(origin) = origin else {
            continue;
        };
        if !shared.delivers(&subscription, &topic) {
            continue;
        }
        if let Some(sink) = shared.link.sink() {
            sink.deliver(&Envelope {
                origin,
                topic,
                frame: message.payload,
            });
        }
    }
}

/// The subject of `topic`: where its publications go, and what a subscription to it (a
/// pattern's wildcard included) takes.
fn subject(prefix: &str, topic: &Topic) -> String {
    let hex = |name: &str| {
        let mut out = String::with_capacity(name.len() * 2);
        for byte in name.bytes() {
            let _ = write!(out, "{byte:02x}");
        }
        out
    };
    match topic {
        Topic::Broadcast => format!("{prefix}.b"),
        Topic::Room(room) => format!("{prefix}.r.{}", hex(room.as_str())),
        Topic::User(user) => format!("{prefix}.u.{}", hex(user.as_str())),
        Topic::Document(doc) => format!("{prefix}.d.{}", hex(doc.as_str())),
        Topic::Connection(conn) => format!("{prefix}.k.{conn}"),
        Topic::Channel(channel) => format!("{prefix}.c.{}_", bytewise(channel.as_str())),
        Topic::ChannelPattern(pattern) => format!("{prefix}.c.{}>", bytewise(pattern.prefix())),
    }
}

/// One hex token per byte, each followed by `.`.
fn bytewise(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        let _ = write!(out, "{byte:02x}.");
    }
    out
}

/// The topic of a received message's subject (`None`: not one of ours).
fn topic(prefix: &str, subject: &str) -> Option<Topic> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (kind, name) = rest.split_once('.').unwrap_or((rest, ""));
    let unhex = |hex: &str| -> Option<String> {
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        String::from_utf8(bytes).ok()
    };
    // Names come from other nodes, which validated them when their clients sent them.
    Some(match kind {
        "b" if name.is_empty() => Topic::Broadcast,
        "r" => Topic::Room(RoomId::from_trusted(unhex(name)?)),
        "u" => Topic::User(UserId::from_trusted(unhex(name)?)),
        "d" => Topic::Document(DocId::from_trusted(unhex(name)?)),
        "k" => Topic::Connection(ConnId::parse(name)?),
        "c" => {
            let hex: String = name
                .strip_suffix("._")
                .or(name.strip_suffix('_'))?
                .split('.')
                .collect();
            Topic::Channel(ChannelId::from_trusted(unhex(&hex)?))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChannelPrefix;

    #[test]
    fn subjects_name_topics_in_tokens_nats_accepts_and_decode_back() {
        let topics = [
            Topic::Broadcast,
            Topic::Room(RoomId::from_trusted("team.a b*")),
            Topic::User(UserId::from_trusted("alice>")),
            Topic::Document(DocId::from_trusted("notes/1")),
            Topic::Connection(ConnId::next()),
            Topic::Channel(ChannelId::from_trusted("news:sports")),
            Topic::Channel(ChannelId::from_trusted("x")),
        ];
        for topic in topics {
            let subject = subject("sb", &topic);
            assert!(
                subject.split('.').all(|token| !token.is_empty()
                    && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
                "{subject}"
            );
            assert_eq!(super::topic("sb", &subject), Some(topic));
        }
        assert_eq!(super::topic("other", "sb.b"), None);
        assert_eq!(super::topic("sb", "sb.r.zz"), None);
    }

    #[test]
    fn a_pattern_is_the_wildcard_of_its_channels_subjects() {
        let pattern = Topic::ChannelPattern(ChannelPrefix::parse("news:*", 64).unwrap());
        let wildcard = subject("sb", &pattern);
        let head = wildcard.strip_suffix('>').unwrap();
        for channel in ["news:", "news:sports"] {
            let channel = subject("sb", &Topic::Channel(ChannelId::from_trusted(channel)));
            assert!(
                channel.starts_with(head) && channel.len() > head.len(),
                "{channel}"
            );
        }
        let other = subject("sb", &Topic::Channel(ChannelId::from_trusted("new")));
        assert!(!other.starts_with(head));
        let all = Topic::ChannelPattern(ChannelPrefix::parse("*", 64).unwrap());
        assert_eq!(subject("sb", &all), "sb.c.>");
    }
}

#[cfg(test)]
#[path = "nats_tests.rs"]
mod conformance_tests;
