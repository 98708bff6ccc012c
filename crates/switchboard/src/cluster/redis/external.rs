//! Cluster mode with another broker (`--broker-url`): NATS or RabbitMQ carries the
//! publications, every [`Topic`] (rooms, users, channels and patterns, broadcasts, documents,
//! SSE relays), while Redis keeps the rest: membership and its announcements, liveness, the
//! offsets and history of streams, and documents.
//!
//! What travels: a plain publication in the envelope Redis pub/sub uses
//! (`keys::encode_envelope`), a stream message in the store's stream envelope
//! (`streams::encode`), so that one sink ([`Relay`]) tells them apart as the Redis subscriber
//! does. A stream message is numbered by the store's script, which then does not publish it:
//! once Redis has answered with its offset and epoch, the appending node publishes it through
//! the broker and hands its own copy to its hub (a broker never returns a node's own
//! publications). Messages of one stream appended by several nodes may therefore arrive out of
//! offset order, and a broker may drop some: the hub's copy of the stream holds a message that
//! skips ahead until a read of the store fills the gap, and ignores an offset it already has,
//! so members still get every message once, in order.
//!
//! Reads of the store (a stream, a document) wait until the broker's subscriptions are in
//! effect, so that nothing published after the read is missed; while the broker is
//! unreachable they do not wait (a join is answered from Redis), and the hub reads its streams
//! again once the broker is back.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ClusterError, keys, streams};
use crate::broker::{
    AmqpBroker, AmqpConfig, Broker, BrokerSink, BrokerStatus, BrokerUrl, Envelope, NatsBroker,
    NatsConfig, StreamMessage, Topic,
};
use crate::ids::NodeId;
use crate::store::Append;

/// How often a read waiting for the broker's subscriptions looks again (the [`Broker`] trait
/// has no notification for it; reads are rare).
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// The broker carrying a Redis cluster's publications.
pub(super) struct External {
    broker: Networked,
    relay: Arc<Relay>,
}

/// The brokers a URL can name.
enum Networked {
    Nats(NatsBroker),
    Amqp(AmqpBroker),
}

/// The sink the broker delivers to: unwraps what it carries for the hub.
#[derive(Default)]
struct Relay {
    hub: OnceLock<Weak<dyn BrokerSink>>,
}

impl External {
    /// The broker at `url` for node `node`. Its subjects or exchange are named after the Redis
    /// prefix, so that clusters sharing a broker stay apart as they do in Redis.
    pub(super) fn new(url: &BrokerUrl, prefix: &str, node: NodeId) -> Result<Self, ClusterError> {
        let broker = match url {
            BrokerUrl::Nats(url) => Networked::Nats(NatsBroker::new(
                NatsConfig {
                    url: url.clone(),
                    prefix: subject_token(prefix),
                },
                node,
            )?),
            BrokerUrl::Amqp(url) => Networked::Amqp(AmqpBroker::new(
                AmqpConfig {
                    url: url.clone(),
                    exchange: format!("{prefix}broker"),
                },
                node,
            )?),
        };
        Ok(Self {
            broker,
            relay: Arc::new(Relay::default()),
        })
    }

    /// The broker, as the hub would see it.
    pub(super) fn broker(&self) -> &dyn Broker {
        match &self.broker {
            Networked::Nats(broker) => broker,
            Networked::Amqp(broker) => broker,
        }
    }

    /// Starts the broker's tasks; they end with `cancel`.
    pub(super) fn spawn(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        match &self.broker {
            Networked::Nats(broker) => broker.spawn(tasks, cancel),
            Networked::Amqp(broker) => broker.spawn(tasks, cancel),
        }
    }

    /// Starts delivering to the hub's `sink`.
    pub(super) fn start(&self, sink: Weak<dyn BrokerSink>) {
        let _ = self.relay.hub.set(sink);
        let relay: Arc<dyn BrokerSink> = self.relay.clone();
        self.broker().start(Arc::downgrade(&relay));
    }

    /// Publishes a publication of `origin` (a frame, a document message, a relayed POST).
    pub(super) fn publish(&self, origin: &NodeId, topic: Topic, frame: &[u8]) {
        self.broker().publish(Envelope {
            origin: origin.clone(),
            topic,
            frame: keys::encode_envelope(origin, frame),
        });
    }

    /// A stream message the store numbered: published to the other nodes, and delivered to
    /// this node's hub.
    pub(super) fn appended(&self, origin: &NodeId, append: &Append, offset: u64, epoch: &str) {
        let json = Bytes::from(format!(
            "{}\"offset\":{offset},{}",
            append.head, append.tail
        ));
        self.broker().publish(Envelope {
            origin: origin.clone(),
            topic: streams::topic(&append.stream),
            frame: streams::encode(epoch, offset, append.except, &json),
        });
        if let Some(hub) = self.relay.hub() {
            hub.deliver_stream(StreamMessage {
                stream: append.stream.clone(),
                epoch: epoch.to_owned(),
                offset,
                json,
                except: append.except,
            });
        }
    }

    /// Returns once every subscription change made so far is in effect, or at once while the
    /// broker is unreachable: a read then need not wait for it (nothing arrives meanwhile), as
    /// the hub reads its streams again when the broker is back (`reconnected`).
    pub(super) async fn settled(&self) {
        let broker = self.broker();
        while !broker.settled() && broker.status() == BrokerStatus::Connected {
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

impl Relay {
    fn hub(&self) -> Option<Arc<dyn BrokerSink>> {
        self.hub.get().and_then(Weak::upgrade)
    }
}

impl BrokerSink for Relay {
    fn deliver(&self, envelope: &Envelope) {
        let Some(hub) = self.hub() else { return };
        if let Some(message) = streams::decode(&envelope.topic, &envelope.frame) {
            hub.deliver_stream(message);
            return;
        }
        let Some((_, frame)) = keys::decode_envelope(&envelope.frame) else {
            tracing::debug!(topic = ?envelope.topic, "ignoring an undecodable publication");
            return;
        };
        let start = envelope.frame.len() - frame.len();
        hub.deliver(&Envelope {
            origin: envelope.origin.clone(),
            topic: envelope.topic.clone(),
            frame: envelope.frame.slice(start..),
        });
    }

    fn deliver_stream(&self, message: StreamMessage) {
        // A networked broker carries stream messages inside envelopes (`deliver`).
        if let Some(hub) = self.hub() {
            hub.deliver_stream(message);
        }
    }

    fn reconnected(&self) {
        if let Some(hub) = self.hub() {
            hub.reconnected();
        }
    }
}

/// The Redis prefix as one NATS subject token: characters a token cannot hold become `_`
/// (`switchboard:` is `switchboard_`).
fn subject_token(prefix: &str) -> String {
    let token: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "switchboard".to_owned()
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RoomId, StreamId};
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder {
        frames: Mutex<Vec<(Topic, Bytes)>>,
        streams: Mutex<Vec<StreamMessage>>,
    }

    impl BrokerSink for Recorder {
        fn deliver(&self, envelope: &Envelope) {
            let topic = envelope.topic.clone();
            self.frames.lock().push((topic, envelope.frame.clone()));
        }

        fn deliver_stream(&self, message: StreamMessage) {
            self.streams.lock().push(message);
        }

        fn reconnected(&self) {}
    }

    #[test]
    fn the_relay_unwraps_frames_and_stream_messages() {
        let recorder = Arc::new(Recorder::default());
        let hub: Arc<dyn BrokerSink> = recorder.clone();
        let relay = Relay::default();
        let _ = relay.hub.set(Arc::downgrade(&hub));
        let node = NodeId::from_trusted("n1");
        let room = RoomId::from_trusted("general");
        let topic = Topic::Room(room.clone());
        relay.deliver(&Envelope {
            origin: node.clone(),
            topic: topic.clone(),
            frame: keys::encode_envelope(&node, b"\x81\x02hi"),
        });
        relay.deliver(&Envelope {
            origin: node.clone(),
            topic: topic.clone(),
            frame: streams::encode("e1", 7, None, b"{\"offset\":7}"),
        });
        relay.deliver(&Envelope {
            origin: node,
            topic: topic.clone(),
            frame: Bytes::from_static(b"\x09garbage"),
        });
        assert_eq!(
            *recorder.frames.lock(),
            vec![(topic, Bytes::from_static(b"\x81\x02hi"))]
        );
        let streams = recorder.streams.lock();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].stream, StreamId::Room(room));
        assert_eq!((streams[0].epoch.as_str(), streams[0].offset), ("e1", 7));
    }

    #[test]
    fn a_redis_prefix_becomes_one_subject_token() {
        assert_eq!(subject_token("switchboard:"), "switchboard_");
        assert_eq!(subject_token("{app}.x"), "_app__x");
        assert_eq!(subject_token(""), "switchboard");
    }
}
