//! The Redis cluster as the hub's [`Broker`]: the publications of this node and the topics it
//! wants, carried by Redis pub/sub (the publisher and subscriber tasks), or, with
//! `--broker-url`, by another broker (`external.rs`) while Redis keeps the rest. Its status
//! and counts cover both, since a cluster needs both.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::{Outgoing, RedisCluster, Shared, Write, keys};
use crate::broker::{Broker, BrokerSink, BrokerStatus, Envelope, Topic};

impl Shared {
    /// Sends a publication of this node to the other nodes subscribed to `topic`.
    pub(super) fn publish(&self, topic: Topic, frame: &[u8]) {
        match &self.external {
            Some(external) => external.publish(&self.node, topic, frame),
            None => self.queue(Outgoing::Write(Write::Publish {
                channel: self.keys.channel(&topic),
                payload: keys::encode_envelope(&self.node, frame),
            })),
        }
    }

    pub(super) fn want(&self, topic: &Topic, add: bool) {
        if let Some(external) = &self.external {
            let broker = external.broker();
            if add {
                broker.subscribe(topic);
            } else {
                broker.unsubscribe(topic);
            }
            return;
        }
        let mut wanted = self.wanted.lock();
        let changed = if add {
            wanted.topics.insert(topic.clone())
        } else {
            wanted.topics.remove(topic)
        };
        if changed {
            wanted
                .changes
                .push(super::subscription(&self.keys, topic, add));
        }
        drop(wanted);
        if changed {
            self.settled.store(false, Ordering::Release);
            self.wanted_changed.notify_one();
        }
    }
}

impl Broker for RedisCluster {
    fn start(&self, sink: Weak<dyn BrokerSink>) {
        if let Some(external) = &self.shared.external {
            external.start(sink.clone());
        }
        let _ = self.shared.broker_sink.set(sink);
    }

    fn publish(&self, envelope: Envelope) {
        self.shared.publish(envelope.topic, &envelope.frame);
    }

    fn subscribe(&self, topic: &Topic) {
        self.shared.want(topic, true);
    }

    fn unsubscribe(&self, topic: &Topic) {
        self.shared.want(topic, false);
    }

    fn status(&self) -> BrokerStatus {
        // With another broker, both it and Redis (membership, offsets) must be reachable.
        let shared = &self.shared;
        let external = shared.external.as_ref().map(|e| e.broker().status());
        if shared.subscriber.is_up()
            && shared.publisher.is_up()
            && external.is_none_or(|status| status == BrokerStatus::Connected)
        {
            BrokerStatus::Connected
        } else {
            BrokerStatus::Degraded
        }
    }

    fn settled(&self) -> bool {
        let shared = &self.shared;
        shared.subscriber.is_up()
            && shared.settled.load(Ordering::Acquire)
            && shared
                .external
                .as_ref()
                .is_none_or(|e| e.broker().settled())
    }

    fn name(&self) -> &'static str {
        self.shared
            .external
            .as_ref()
            .map_or("redis", |e| e.broker().name())
    }

    fn dropped(&self) -> u64 {
        let shared = &self.shared;
        let external = shared.external.as_ref().map_or(0, |e| e.broker().dropped());
        shared.dropped.load(Ordering::Relaxed) + external
    }
}
