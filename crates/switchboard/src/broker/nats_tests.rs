//! The broker conformance suite against a real nats-server child process.

use std::sync::Arc;

use switchboard_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{NatsBroker, NatsConfig};
use crate::broker::{Broker, conformance};
use crate::ids::NodeId;

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs nats-server: --features external"
)]
fn the_nats_broker_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = runtime.block_on(NatsServer::start());
    let _entered = runtime.enter();
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let config = NatsConfig {
        url: nats.url(),
        prefix: "conformance".into(),
    };
    conformance::run(&|| {
        let node = NodeId::random();
        let broker = NatsBroker::new(config.clone(), node.clone()).unwrap();
        broker.spawn(&tasks, &cancel);
        (node, Arc::new(broker) as Arc<dyn Broker>)
    });
    cancel.cancel();
}

#[test]
fn a_prefix_must_be_one_subject_token() {
    for prefix in ["", "a.b", "a*", "a b", "x>"] {
        let config = NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: prefix.into(),
        };
        assert!(
            NatsBroker::new(config, NodeId::random()).is_err(),
            "{prefix:?}"
        );
    }
}

/// A sink that records deliveries and reconnections.
#[derive(Default)]
struct Recorder {
    frames: parking_lot::Mutex<Vec<bytes::Bytes>>,
    reconnections: std::sync::atomic::AtomicUsize,
}

impl crate::broker::BrokerSink for Recorder {
    fn deliver(&self, envelope: &crate::broker::Envelope) {
        self.frames.lock().push(envelope.frame.clone());
    }

    fn deliver_stream(&self, _message: crate::broker::StreamMessage) {}

    fn reconnected(&self) {
        self.reconnections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs nats-server: --features external"
)]
async fn a_restarted_nats_gets_the_subscriptions_back_and_the_hub_is_told() {
    use crate::broker::{BrokerSink, BrokerStatus, Envelope, Topic};
    use crate::ids::RoomId;
    use std::sync::atomic::Ordering;
    use switchboard_testkit::wait_until;

    let mut nats = NatsServer::start().await;
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let config = NatsConfig {
        url: nats.url(),
        prefix: "restart".into(),
    };
    let node = |recorder: &Arc<Recorder>| {
        let id = NodeId::random();
        let broker = NatsBroker::new(config.clone(), id.clone()).unwrap();
        broker.spawn(&tasks, &cancel);
        let sink: Arc<dyn BrokerSink> = recorder.clone();
        broker.start(Arc::downgrade(&sink));
        (id, broker)
    };
    let (a_sink, b_sink) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (a_id, a) = node(&a_sink);
    let (_, b) = node(&b_sink);
    let room = Topic::Room(RoomId::from_trusted("general"));
    b.subscribe(&room);
    wait_until("both connected and b subscribed", || {
        a.status() == BrokerStatus::Connected
            && b.status() == BrokerStatus::Connected
            && b.settled()
    })
    .await;
    let publish = |text: &'static str| {
        a.publish(Envelope {
            origin: a_id.clone(),
            topic: room.clone(),
            frame: bytes::Bytes::from_static(text.as_bytes()),
        });
    };
    publish("before");
    wait_until("b got it", || b_sink.frames.lock().len() == 1).await;

    nats.stop().await;
    wait_until("a and b see the outage", || {
        a.status() == BrokerStatus::Degraded && b.status() == BrokerStatus::Degraded
    })
    .await;
    nats.restart().await;
    wait_until("both reconnected, and told their hubs", || {
        a.status() == BrokerStatus::Connected
            && b.status() == BrokerStatus::Connected
            && b_sink.reconnections.load(Ordering::Relaxed) >= 1
    })
    .await;
    // The client resubscribes by itself; a publication made now arrives (retried until the
    // subscription is back on the new server).
    wait_until("a publication after the restart arrives", || {
        if b_sink.frames.lock().len() < 2 {
            publish("after");
            false
        } else {
            true
        }
    })
    .await;
    assert_eq!(b_sink.frames.lock()[1], "after");
    assert_eq!(a_sink.frames.lock().len(), 0, "never its own");
    cancel.cancel();
}
