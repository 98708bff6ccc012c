//! Webhooks once per cluster: a node's own first and last holders (of a room, a user in a
//! room, a channel, a connected user) become `room_occupied`, `member_added`, … only when
//! the state store says they are the cluster's first or last ([`Holders`]). Exactly one node
//! sends each; a dead node's vacancies are sent by the node that reaps it.
//!
//! The hooks run under the hub's locks and cannot wait for Redis, so a change is queued here
//! (already encoded, with the time it happened) and one task asks the store, in order, in
//! batches. Overflow policy: the queue holds [`CAPACITY`] changes; beyond, a change is
//! dropped and counted as dropped webhook events (only a store unreachable for long fills
//! it). While the store is unreachable the task retries with backoff, keeping the order: the
//! events are late, not lost. Around a store that lost its data (a restart without
//! persistence) an event can be sent twice or not at all.
//!
//! The task ends with the cluster's cancellation token after one last attempt at what is
//! queued, and then fires the senders' token so that they send what it decided last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Webhooks;
use crate::cluster::{Holders, Holding};

/// Most changes waiting for the store.
const CAPACITY: usize = 10_000;
/// Most changes in one request to the store.
const BATCH: usize = 256;
/// The wait before the first retry; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A change of this node's holdings, and the event to send if it is the cluster's.
pub(super) struct Pending {
    pub(super) holding: Holding,
    /// `None` when the event's kind is not sent, but its counterpart is (the store must
    /// still count this change).
    pub(super) event: Option<Bytes>,
}

/// The queue of changes waiting for the store, and how many are not decided yet.
pub(super) struct Once {
    holders: Arc<dyn Holders>,
    queue: mpsc::Sender<Pending>,
    /// Changes queued and not decided yet; [`Once::settled`] waits for 0.
    outstanding: AtomicUsize,
    decided: Notify,
}

impl Once {
    /// A queue deciding with `holders`; the receiver goes to [`run`].
    pub(super) fn new(holders: Arc<dyn Holders>) -> (Self, mpsc::Receiver<Pending>) {
        let (queue, receiver) = mpsc::channel(CAPACITY);
        let once = Self {
            holders,
            queue,
            outstanding: AtomicUsize::new(0),
            decided: Notify::new(),
        };
        (once, receiver)
    }

    /// Queues a change; returns `false` when the queue is full and it was dropped.
    pub(super) fn offer(&self, pending: Pending) -> bool {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(pending).is_ok() {
            return true;
        }
        self.done(1);
        false
    }

    fn done(&self, changes: usize) {
        self.outstanding.fetch_sub(changes, Ordering::AcqRel);
        self.decided.notify_waiters();
    }

    /// Waits until every queued change is decided, or `within` passed. Returns whether they
    /// all were.
    pub(super) async fn settled(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let decided = self.decided.notified();
            if self.outstanding.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, decided).await.is_err() {
                return false;
            }
        }
    }

    /// The store that decides.
    pub(super) fn holders(&self) -> &dyn Holders {
        &*self.holders
    }
}

/// Decides the queued changes until `cancel`, then fires `senders`. First releases what a
/// previous process under this node id held (its vacancies are sent).
pub(super) async fn run(
    webhooks: Arc<Webhooks>,
    mut receiver: mpsc::Receiver<Pending>,
    cancel: CancellationToken,
    senders: CancellationToken,
) {
    let Some(once) = webhooks.once.as_ref() else {
        senders.cancel();
        return;
    };
    let mut backoff = Backoff::default();
    loop {
        match once.holders().release_own().await {
            Ok(orphaned) => {
                webhooks.orphaned(orphaned);
                break;
            }
            Err(error) => {
                if !backoff.wait(&error, &cancel).await {
                    break;
                }
            }
        }
    }
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let last = tokio::select! {
            received = receiver.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    break;
                }
                false
            }
            () = cancel.cancelled() => {
                while batch.len() < CAPACITY && let Ok(pending) = receiver.try_recv() {
                    batch.push(pending);
                }
                true
            }
        };
        decide(&webhooks, once, &mut batch, &cancel).await;
        if last {
            break;
        }
    }
    senders.cancel();
}

/// Asks the store about `batch` (retrying until it answers, or once more after `cancel`) and
/// queues the events of the changes that were the cluster's.
async fn decide(
    webhooks: &Webhooks,
    once: &Once,
    batch: &mut Vec<Pending>,
    cancel: &CancellationToken,
) {
    let count = batch.len();
    let mut backoff = Backoff::default();
    for chunk in batch.chunks(BATCH) {
        let changes: Vec<Holding> = chunk.iter().map(|p| p.holding.clone()).collect();
        let decided = loop {
            match once.holders().apply(changes.clone()).await {
                Ok(decided) => break Some(decided),
                Err(error) => {
                    if !backoff.wait(&error, cancel).await {
                        break None;
                    }
                }
            }
        };
        match decided {
            Some(decided) => {
                for (pending, cluster_wide) in chunk.iter().zip(decided) {
                    if let (true, Some(event)) = (cluster_wide, &pending.event) {
                        webhooks.queue(event);
                    }
                }
            }
            None => {
                let lost = chunk.iter().filter(|p| p.event.is_some()).count();
                tracing::warn!(
                    events = lost,
                    "webhook events given up: the state store did not answer before shutdown"
                );
                webhooks.count_dropped(lost);
            }
        }
    }
    batch.clear();
    once.done(count);
}

/// Retries of a store that does not answer: the first failure is logged, and each retry waits
/// twice as long as the one before, up to [`BACKOFF_MAX`].
#[derive(Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// Waits before the next attempt; returns `false` when `cancel` fired meanwhile (after a
    /// cancellation the caller makes no more attempts).
    async fn wait(
        &mut self,
        error: &crate::cluster::StateError,
        cancel: &CancellationToken,
    ) -> bool {
        let wait = match self.next {
            None => {
                tracing::warn!(%error, "webhooks wait for the state store to decide who sends them");
                BACKOFF_MIN
            }
            Some(wait) => wait,
        };
        self.next = Some((wait * 2).min(BACKOFF_MAX));
        if cancel.is_cancelled() {
            return false;
        }
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::cluster::{Held, OrphanSink, StateError};
    use crate::ids::RoomId;

    /// A store that never answers (Redis away): nothing is decided.
    struct Unanswered;

    impl Holders for Unanswered {
        fn apply(&self, _: Vec<Holding>) -> BoxFuture<'_, Result<Vec<bool>, StateError>> {
            std::future::pending().boxed()
        }

        fn release_own(&self) -> BoxFuture<'_, Result<Vec<Held>, StateError>> {
            std::future::pending().boxed()
        }

        fn set_orphan_sink(&self, _: OrphanSink) {}
    }

    fn change(n: usize) -> Pending {
        Pending {
            holding: Holding {
                held: Held::Room(RoomId::from_trusted(format!("room-{n}"))),
                gained: true,
            },
            event: None,
        }
    }

    #[tokio::test]
    async fn the_queue_holds_its_capacity_then_drops_and_is_not_settled_until_decided() {
        let (once, mut receiver) = Once::new(Arc::new(Unanswered));
        for n in 0..CAPACITY {
            assert!(once.offer(change(n)), "change {n} fits");
        }
        assert!(
            !once.offer(change(CAPACITY)),
            "one over the capacity is dropped"
        );
        assert_eq!(once.outstanding.load(Ordering::Acquire), CAPACITY);
        assert!(!once.settled(Duration::from_millis(10)).await);

        let mut batch = Vec::new();
        receiver.recv_many(&mut batch, CAPACITY).await;
        once.done(batch.len());
        assert!(once.settled(Duration::ZERO).await, "every change decided");
        assert!(once.offer(change(0)), "room again");
    }
}
