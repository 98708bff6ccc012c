//! Cluster mode: joins and subscriptions that cannot wait for this node's copy of their stream.
//!
//! A join (or a subscription with history) whose stream this node holds no synced copy of
//! waits for a read of the store (`streams.rs`). When the store is out of reach that read
//! waits for Redis, and the client would get no answer for as long: so a join made while the
//! store is out of reach (or the broker reports `Degraded`) is answered at once, and one whose
//! read has not completed within
//! [`ANSWER_WITHIN`] is answered then, by the sweep here. Such an answer recovers nothing
//! (`recovered: false` when `since` was given) and gives the position as unknown
//! ([`unknown_position`]: offset 0, empty epoch); the connection is a member from then on and
//! gets live messages (its own node's at least); once the copy is synced it gets what was
//! stored since it was answered, then the rest, each once (`mirror.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::channels::Subscriber;
use super::history::Locked;
use super::streams::{Request, RoomJoin, Subscribed};
use super::{ConnHandle, Hub};
use crate::ids::{ChannelSpec, RoomId, StreamId};
use crate::protocol::StreamPosition;

/// How long a join or subscription waits for this node's copy of its stream before it is
/// answered without one.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How often the waiting answers are checked against their deadline.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A join or subscription waiting for a synced copy of its stream, run under the stream's
/// lock by whichever comes first: the copy (`true`) or the deadline (`false`).
pub(super) type Answer = Box<dyn FnOnce(&Hub, &mut Locked<'_>, bool) + Send>;

/// Where an answer waits: taken once, by the copy or by the deadline.
pub(super) type Slot = Arc<Mutex<Option<Answer>>>;

/// The answers waiting for a copy, oldest first. An entry leaves at its deadline at the
/// latest, so the queue holds at most [`ANSWER_WITHIN`]'s worth of joins.
#[derive(Default)]
pub(super) struct Waiting {
    queue: Mutex<VecDeque<Waiter>>,
}

struct Waiter {
    /// Hub-clock ms.
    deadline: u64,
    stream: StreamId,
    slot: Slot,
}

impl Waiting {
    /// Puts `answer` in a slot that the deadline `deadline` (hub-clock ms) will take if the
    /// copy has not; returns the slot.
    pub(super) fn add(&self, stream: StreamId, deadline: u64, answer: Answer) -> Slot {
        let slot = Arc::new(Mutex::new(Some(answer)));
        self.queue.lock().push_back(Waiter {
            deadline,
            stream,
            slot: slot.clone(),
        });
        slot
    }

    /// Takes the entries due at `now`.
    fn due(&self, now: u64) -> Vec<Waiter> {
        let mut queue = self.queue.lock();
        let due = queue.partition_point(|waiter| waiter.deadline <= now);
        queue.drain(..due).collect()
    }
}

/// The position an answer without a synced copy gives: offset 0 and an empty epoch, which no
/// stream has, so a client that sends it back as `since` is told `recovered: false`.
pub(super) fn unknown_position() -> StreamPosition {
    StreamPosition {
        offset: 0,
        epoch: String::new(),
    }
}

impl Hub {
    /// Whether the store cannot be waited for: it says so, or the broker reports the other
    /// nodes out of reach (with Redis as both, its subscribing connection is down).
    pub(super) fn store_out_of_reach(&self) -> bool {
        let cluster = &self.inner.cluster;
        cluster.store().is_some_and(|store| !store.available())
            || cluster.broker().status() == crate::broker::BrokerStatus::Degraded
    }

    /// Answers the joins and subscriptions whose copy did not come in time, without it.
    pub(crate) fn answer_overdue(&self) {
        for waiter in self.inner.waiting.due(self.now_ms()) {
            let mut stream = self.lock_stream(&waiter.stream);
            let answer = waiter.slot.lock().take();
            if let Some(answer) = answer {
                answer(self, &mut stream, false);
            }
        }
    }

    /// Joins without a synced copy: the reply gives the position as unknown and
    /// recovers nothing; the connection becomes a member.
    pub(super) fn join_early(
        &self,
        room: &RoomId,
        conn: &ConnHandle,
        request: Request<RoomJoin>,
    ) -> bool {
        let join = RoomJoin {
            members: self.members_with(room, conn),
            position: Some(unknown_position()),
            recovered: request.since.map(|_| false),
        };
        self.deliver_counted(conn, &(request.reply)(&join));
        self.add_member(room, conn)
    }

    /// Subscribes without a synced copy, as [`Hub::join_early`] joins.
    pub(super) fn subscribe_early(
        &self,
        spec: &ChannelSpec,
        conn: &ConnHandle,
        request: Request<Subscribed>,
    ) -> bool {
        let inner = &self.inner;
        let subscribed = Subscribed {
            position: Some(unknown_position()),
            recovered: request.since.map(|_| false),
        };
        self.deliver_counted(conn, &(request.reply)(&subscribed));
        inner
            .channels
            .add(spec, Subscriber::Conn(conn), &inner.observers())
    }

    /// After an answer given at once without the copy: marks the copy answered early and
    /// starts the read that syncs it (which waits for the store to come back).
    pub(super) fn sync_early(&self, mut stream: Locked<'_>, id: StreamId) {
        let read = stream.answered_early();
        drop(stream);
        if read {
            self.read_stream(id);
        }
    }
}
