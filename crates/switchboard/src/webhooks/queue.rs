//! The bounded queue of one webhook endpoint's events.
//!
//! Overflow policy: when the queue is full the *oldest* event is dropped (and counted): a
//! backend that is down for long gets the most recent events when it comes back, and the
//! server's memory stays bounded. Pushing never blocks and never waits for the network: hooks
//! push under the hub's locks. The sender task (`sender.rs`) is the only consumer.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Events waiting to be sent to one endpoint, each already encoded as a JSON object.
pub(super) struct Queue {
    events: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    /// Wakes the sender when an event arrives into an empty queue.
    arrived: Notify,
}

impl Queue {
    /// An empty queue of at most `capacity` events.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            arrived: Notify::new(),
        }
    }

    /// Adds `event`; returns whether an older one was dropped to make room.
    pub(super) fn push(&self, event: Bytes) -> bool {
        let mut events = self.events.lock();
        let dropped = events.len() >= self.capacity && events.pop_front().is_some();
        events.push_back(event);
        let first = events.len() == 1;
        drop(events);
        if first {
            self.arrived.notify_one();
        }
        dropped
    }

    /// Takes up to `max` events, oldest first.
    pub(super) fn take(&self, max: usize) -> Vec<Bytes> {
        let mut events = self.events.lock();
        let n = events.len().min(max);
        events.drain(..n).collect()
    }

    /// How many events wait.
    pub(super) fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// Waits until the queue is not empty.
    pub(super) async fn non_empty(&self) {
        loop {
            let notified = self.arrived.notified();
            if self.len() > 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_event() {
        let queue = Queue::new(2);
        assert!(!queue.push(Bytes::from_static(b"1")));
        assert!(!queue.push(Bytes::from_static(b"2")));
        assert!(queue.push(Bytes::from_static(b"3")), "at capacity");
        assert_eq!(
            queue.take(10),
            [Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn take_returns_the_oldest_first_and_at_most_max() {
        let queue = Queue::new(10);
        for n in 0..5u8 {
            queue.push(Bytes::from(vec![b'0' + n]));
        }
        assert_eq!(
            queue.take(2),
            [Bytes::from_static(b"0"), Bytes::from_static(b"1")]
        );
        assert_eq!(queue.len(), 3);
    }

    #[tokio::test]
    async fn the_consumer_wakes_for_an_event_pushed_while_it_waits() {
        let queue = std::sync::Arc::new(Queue::new(10));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.non_empty().await }
        });
        tokio::task::yield_now().await;
        queue.push(Bytes::from_static(b"x"));
        waiting.await.unwrap();
    }
}
