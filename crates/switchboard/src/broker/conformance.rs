//! The behaviour every [`Broker`] must show, as one suite run against each implementation.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::{Broker, BrokerSink, BrokerStatus, Envelope, Topic};
use crate::ids::{ChannelId, ChannelPrefix, ConnId, NodeId, RoomId};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

struct Recorder(Mutex<Sender<Envelope>>);

impl BrokerSink for Recorder {
    fn deliver(&self, envelope: &Envelope) {
        let _ = self.0.lock().map(|tx| tx.send(envelope.clone()));
    }

    fn deliver_stream(&self, _message: crate::broker::StreamMessage) {}

    fn reconnected(&self) {}
}

struct Node {
    id: NodeId,
    broker: Arc<dyn Broker>,
    received: Receiver<Envelope>,
    _sink: Arc<dyn BrokerSink>,
}

impl Node {
    fn new(make: &dyn Fn() -> (NodeId, Arc<dyn Broker>)) -> Self {
        let (tx, received) = channel();
        let sink: Arc<dyn BrokerSink> = Arc::new(Recorder(Mutex::new(tx)));
        let (id, broker) = make();
        broker.start(Arc::downgrade(&sink) as Weak<dyn BrokerSink>);
        Self {
            id,
            broker,
            received,
            _sink: sink,
        }
    }

    fn publish(&self, topic: &Topic, body: &str) {
        self.broker.publish(Envelope {
            origin: self.id.clone(),
            topic: topic.clone(),
            frame: Bytes::copy_from_slice(body.as_bytes()),
        });
    }

    fn expect(&self, body: &str) -> Envelope {
        let envelope = self
            .received
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no delivery of {body:?}"));
        assert_eq!(envelope.frame, body.as_bytes(), "unexpected delivery");
        envelope
    }

    fn expect_nothing(&self) {
        if let Ok(envelope) = self.received.recv_timeout(QUIET) {
            panic!("unexpected delivery {:?}", envelope.frame);
        }
    }
}

/// Waits until every broker's subscription changes are in effect.
fn settle(nodes: &[&Node]) {
    let deadline = std::time::Instant::now() + WAIT;
    while !nodes.iter().all(|node| node.broker.settled()) {
        assert!(
            std::time::Instant::now() < deadline,
            "brokers did not settle"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the suite. `make` builds a broker for a new node (and says the node's id), connected
/// to the same medium as the others.
pub(crate) fn run(make: &dyn Fn() -> (NodeId, Arc<dyn Broker>)) {
    let a = Node::new(make);
    let b = Node::new(make);
    let c = Node::new(make);
    let settle = || settle(&[&a, &b, &c]);
    settle();
    let room = Topic::Room(RoomId::from_trusted("conformance"));
    let deadline = std::time::Instant::now() + WAIT;
    while a.broker.status() != BrokerStatus::Connected {
        assert!(std::time::Instant::now() < deadline, "never connected");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Reaches subscribed peers once, never the origin or unsubscribed nodes.
    a.broker.subscribe(&room);
    b.broker.subscribe(&room);
    settle();
    a.publish(&room, "one");
    let envelope = b.expect("one");
    assert_eq!(envelope.origin, a.id);
    assert_eq!(envelope.topic, room);
    a.expect_nothing();
    c.expect_nothing();
    b.expect_nothing();

    // Order per origin and topic.
    for i in 0..100 {
        a.publish(&room, &format!("m{i}"));
    }
    for i in 0..100 {
        b.expect(&format!("m{i}"));
    }

    // Subscriptions are sets.
    b.broker.subscribe(&room);
    b.broker.unsubscribe(&room);
    settle();
    a.publish(&room, "after unsubscribe");
    b.expect_nothing();

    // A pattern subscription receives matching channels, once even with an exact one too.
    let pattern = Topic::ChannelPattern(ChannelPrefix::parse("news:*", 64).unwrap());
    let sports = Topic::Channel(ChannelId::from_trusted("news:sports"));
    b.broker.subscribe(&pattern);
    b.broker.subscribe(&sports);
    settle();
    a.publish(&sports, "goal");
    b.expect("goal");
    b.expect_nothing();
    a.publish(
        &Topic::Channel(ChannelId::from_trusted("weather:rain")),
        "rain",
    );
    b.expect_nothing();

    // Other topics are independent.
    c.broker.subscribe(&Topic::Broadcast);
    settle();
    b.publish(&Topic::Broadcast, "everyone");
    c.expect("everyone");
    a.expect_nothing();

    // A connection's topic reaches the node that holds it, and stops with its subscription.
    let conn = Topic::Connection(ConnId::next());
    c.broker.subscribe(&conn);
    settle();
    a.publish(&conn, "relayed");
    let envelope = c.expect("relayed");
    assert_eq!(envelope.topic, conn);
    b.expect_nothing();
    c.broker.unsubscribe(&conn);
    settle();
    a.publish(&conn, "too late");
    c.expect_nothing();
}
