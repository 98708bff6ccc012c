//! The AMQP broker: its routing keys and message header, and the broker conformance suite
//! against a real rabbitmq-server child process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_testkit::{RabbitMqServer, wait_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::wire::{decode_origin, decode_topic, encode, routing_key};
use super::*;
use crate::broker::conformance;
use crate::ids::{ChannelId, ConnId, DocId, RoomId, UserId};

#[test]
fn routing_keys_are_short_amqp_words_and_patterns_their_wildcards() {
    let long = "x".repeat(1_000);
    let topics = [
        Topic::Broadcast,
        Topic::Room(RoomId::from_trusted("team.a b*#")),
        Topic::User(UserId::from_trusted(long.as_str())),
        Topic::Document(DocId::from_trusted("notes/1")),
        Topic::Connection(ConnId::next()),
        Topic::Channel(ChannelId::from_trusted("news:sports")),
        Topic::Channel(ChannelId::from_trusted(long.as_str())),
    ];
    for topic in &topics {
        let key = routing_key(topic);
        assert!(key.len() <= 255, "{key}");
        assert!(
            key.split('.').all(|word| !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_~".contains(c))),
            "{key}"
        );
    }
    let pattern = |prefix: &str| {
        let prefix = ChannelPrefix::parse(&format!("{prefix}*"), 2_000).unwrap();
        routing_key(&Topic::ChannelPattern(prefix))
    };
    let channel = |name: &str| routing_key(&Topic::Channel(ChannelId::from_trusted(name)));
    let head = pattern("news:");
    let head = head.strip_suffix('#').unwrap();
    for name in ["news:", "news:sports"] {
        assert!(channel(name).starts_with(head), "{name}");
    }
    assert!(!channel("new").starts_with(head));
    assert_eq!(pattern(""), "c.#");
    // A long pattern binds the wildcard of its spelled-out bytes: more than it wants, which
    // the receiving node filters.
    assert!(pattern(&long).len() <= 255);
    assert!(channel(&long).starts_with(pattern(&long).strip_suffix('#').unwrap()));
}

#[test]
fn the_header_carries_the_exact_topic_and_origin() {
    let node = NodeId::from_trusted("node-1");
    for topic in [
        Topic::Broadcast,
        Topic::Room(RoomId::from_trusted("général")),
        Topic::Channel(ChannelId::from_trusted("x".repeat(1_000))),
        Topic::Connection(ConnId::next()),
    ] {
        let body = encode(
            &node,
            &Envelope {
                origin: node.clone(),
                topic: topic.clone(),
                frame: Bytes::from_static(b"\x81\x02hi"),
            },
        );
        let (origin, rest) = decode_origin(&body).unwrap();
        let (decoded, start) = decode_topic(rest).unwrap();
        assert_eq!((origin, &decoded), ("node-1", &topic));
        assert_eq!(&rest[start..], b"\x81\x02hi");
    }
    for garbage in [
        &b""[..],
        b"\x05ab",
        b"\x01a\x00\x09r",
        b"\x01a\x00\x01z",
        b"\x01a\x00\x02kq",
    ] {
        let decoded = decode_origin(garbage).and_then(|(_, rest)| decode_topic(rest));
        assert!(decoded.is_none(), "{garbage:?}");
    }
}

#[test]
fn an_exchange_needs_a_name_amqp_accepts() {
    for exchange in [String::new(), "x".repeat(256)] {
        let config = AmqpConfig {
            url: "amqp://127.0.0.1:5672".into(),
            exchange,
        };
        assert!(AmqpBroker::new(config, NodeId::random()).is_err());
    }
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs rabbitmq-server: --features external"
)]
fn the_amqp_broker_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rabbit = runtime.block_on(RabbitMqServer::start());
    let _entered = runtime.enter();
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let config = AmqpConfig {
        url: rabbit.url(),
        exchange: "conformance".into(),
    };
    conformance::run(&|| {
        let node = NodeId::random();
        let broker = AmqpBroker::new(config.clone(), node.clone()).unwrap();
        broker.spawn(&tasks, &cancel);
        (node, Arc::new(broker) as Arc<dyn Broker>)
    });
    cancel.cancel();
}

/// A sink that records deliveries and reconnections.
#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<Bytes>>,
    reconnections: AtomicUsize,
}

impl BrokerSink for Recorder {
    fn deliver(&self, envelope: &Envelope) {
        self.frames.lock().push(envelope.frame.clone());
    }

    fn deliver_stream(&self, _message: crate::broker::StreamMessage) {}

    fn reconnected(&self) {
        self.reconnections.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs rabbitmq-server: --features external"
)]
async fn a_restarted_rabbitmq_gets_the_bindings_back_and_the_hub_is_told() {
    let mut rabbit = RabbitMqServer::start().await;
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let config = AmqpConfig {
        url: rabbit.url(),
        exchange: "restart".into(),
    };
    let node = |recorder: &Arc<Recorder>| {
        let id = NodeId::random();
        let broker = AmqpBroker::new(config.clone(), id.clone()).unwrap();
        broker.spawn(&tasks, &cancel);
        let sink: Arc<dyn BrokerSink> = recorder.clone();
        broker.start(Arc::downgrade(&sink));
        (id, broker)
    };
    let (a_sink, b_sink) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (a_id, a) = node(&a_sink);
    let (_, b) = node(&b_sink);
    let room = Topic::Room(RoomId::from_trusted("general"));
    a.subscribe(&room);
    b.subscribe(&room);
    wait_until("both connected and subscribed", || {
        a.status() == BrokerStatus::Connected
            && b.status() == BrokerStatus::Connected
            && a.settled()
            && b.settled()
    })
    .await;
    let told = b_sink.reconnections.load(Ordering::Relaxed);
    let publish = |text: &'static str| {
        a.publish(Envelope {
            origin: a_id.clone(),
            topic: room.clone(),
            frame: Bytes::from_static(text.as_bytes()),
        });
    };
    publish("before");
    wait_until("b got it", || b_sink.frames.lock().len() == 1).await;

    rabbit.stop().await;
    wait_until("a and b see the outage", || {
        a.status() == BrokerStatus::Degraded && b.status() == BrokerStatus::Degraded
    })
    .await;
    publish("while away");
    rabbit.restart().await;
    wait_until("both reconnected, and told their hubs", || {
        a.status() == BrokerStatus::Connected
            && b.status() == BrokerStatus::Connected
            && b_sink.reconnections.load(Ordering::Relaxed) > told
    })
    .await;
    // Connected means bound again: a publication made now arrives.
    publish("after");
    wait_until("the publication after the restart arrives", || {
        b_sink
            .frames
            .lock()
            .last()
            .is_some_and(|last| last == "after")
    })
    .await;
    assert!(
        !b_sink
            .frames
            .lock()
            .iter()
            .any(|frame| frame == "while away"),
        "dropped while away"
    );
    assert!(a.dropped() >= 1, "and counted");
    assert_eq!(a_sink.frames.lock().len(), 0, "never its own");
    cancel.cancel();
}
