//! [`Link`]: what a broker over a network server (NATS, RabbitMQ) shares with the hub, whatever
//! the server: the bounded queue of publications and its drop count, the generation of the
//! wanted set and the generation the server has applied (settled when they are equal), whether
//! the server is reachable, and the hub's sink.
//!
//! It owns no connection and no task: each broker keeps its own wanted set (the server decides
//! its shape) and its own tasks, which take the queue's receiver from [`Link::new`] and report
//! back through the methods here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::{Notify, mpsc};

use super::{BrokerSink, BrokerStatus, Envelope};

/// Publications waiting for the broker's publishing task; more are dropped (and counted).
const QUEUE: usize = 65_536;

/// The state a networked broker shares between the hub's calls and its own tasks.
pub(super) struct Link {
    /// The publishing task holds the receiver; `publish` never waits on it.
    outgoing: mpsc::Sender<Envelope>,
    dropped: AtomicU64,
    /// Woken (one permit) when the wanted set changes; the broker's task then resubscribes.
    wanted_changed: Notify,
    /// Counts the changes of the wanted set.
    generation: AtomicU64,
    /// The generation the server holds every subscription of.
    applied: AtomicU64,
    connected: AtomicBool,
    sink: OnceLock<Weak<dyn BrokerSink>>,
}

impl Link {
    /// A link, and the receiving end of its publication queue for the broker's task (the
    /// queue closes when the link is dropped).
    pub(super) fn new() -> (Self, mpsc::Receiver<Envelope>) {
        let (outgoing, receiver) = mpsc::channel(QUEUE);
        let link = Self {
            outgoing,
            dropped: AtomicU64::new(0),
            wanted_changed: Notify::new(),
            generation: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            sink: OnceLock::new(),
        };
        (link, receiver)
    }

    /// Sets the hub's sink (the first call wins: the hub calls it once).
    pub(super) fn start(&self, sink: Weak<dyn BrokerSink>) {
        let _ = self.sink.set(sink);
    }

    /// The hub's sink, while the hub lives.
    pub(super) fn sink(&self) -> Option<Arc<dyn BrokerSink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    /// Queues a publication, or drops and counts it when the queue is full.
    pub(super) fn publish(&self, envelope: Envelope) {
        if self.outgoing.try_send(envelope).is_err() {
            self.drop_one();
        }
    }

    /// Counts a publication lost (a failed publish, or one queued while the server was away).
    pub(super) fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Publications dropped so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records a change of the wanted set and wakes the task that applies it.
    pub(super) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wanted_changed.notify_one();
    }

    /// Waits for the next change of the wanted set (or returns at once for one that came
    /// while nobody waited).
    pub(super) async fn wanted_changed(&self) {
        self.wanted_changed.notified().await;
    }

    /// The wanted set's generation. Read it *before* reading the set: a change made meanwhile
    /// then leaves the broker unsettled.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that the server holds every subscription of `generation`.
    pub(super) fn applied(&self, generation: u64) {
        self.applied.store(generation, Ordering::Release);
    }

    /// Whether the server holds every subscription the hub wants.
    pub(super) fn settled(&self) -> bool {
        self.applied.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
    }

    /// Records whether the server is reachable; returns what it was before.
    pub(super) fn set_connected(&self, connected: bool) -> bool {
        self.connected.swap(connected, Ordering::AcqRel)
    }

    /// Connected while the server is reachable, degraded otherwise.
    pub(super) fn status(&self) -> BrokerStatus {
        if self.connected.load(Ordering::Acquire) {
            BrokerStatus::Connected
        } else {
            BrokerStatus::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_only_once_the_latest_generation_is_applied() {
        let (link, _receiver) = Link::new();
        assert!(link.settled());
        link.changed();
        let first = link.generation();
        link.changed();
        link.applied(first);
        assert!(
            !link.settled(),
            "a change came after the applied generation"
        );
        link.applied(link.generation());
        assert!(link.settled());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (link, mut receiver) = Link::new();
        let envelope = || Envelope {
            origin: crate::ids::NodeId::from_trusted("n"),
            topic: super::super::Topic::Broadcast,
            frame: bytes::Bytes::new(),
        };
        for _ in 0..QUEUE {
            link.publish(envelope());
        }
        assert_eq!(link.dropped(), 0);
        link.publish(envelope());
        assert_eq!(link.dropped(), 1);
        assert!(receiver.try_recv().is_ok());
    }

    #[test]
    fn connected_reports_the_previous_state() {
        let (link, _receiver) = Link::new();
        assert_eq!(link.status(), BrokerStatus::Degraded);
        assert!(!link.set_connected(true));
        assert!(link.set_connected(true));
        assert_eq!(link.status(), BrokerStatus::Connected);
    }
}
