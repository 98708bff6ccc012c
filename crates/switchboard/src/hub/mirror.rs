//! Cluster mode: a node's stream as a copy of the shared store's.
//!
//! The store numbers every message and publishes it to every node subscribed to the stream,
//! the publishing node included, in offset order. A node's copy is *synced* once it has read
//! the store (while already subscribed, so nothing falls between the read and the first
//! published message), and stays synced while it receives every message: each one that is
//! the next offset is kept and delivered at once; one that skips ahead (a publication lost
//! while the broker was unreachable) waits in `pending` until a read of the store fills the
//! gap, so members get the stream in order and whole. Actions that need the copy (a member
//! joining, with its reply and replay) wait in `deferred` until it is synced.
//!
//! A member answered before the copy was synced (the store out of reach, `early.rs`) has no
//! position in the stream: when the first read is applied, it gets the messages stored since
//! it was answered (by their time) and those that came in while the read was under way,
//! each once, then the live ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Locked;
use crate::ids::ConnId;
use crate::protocol::StreamPosition;

/// A frame to deliver, and the connection that must not get it (a room message's sender).
pub(in crate::hub) type Delivery = (Bytes, Option<ConnId>);

/// An action that needs the stream synced, run under its lock once it is.
pub(in crate::hub) type Deferred = Box<dyn FnOnce(&mut Locked<'_>) + Send>;

/// The sync state of a stream's copy.
#[derive(Default)]
pub(super) struct Mirror {
    /// Whether the copy is the store's, kept current by the store's published messages.
    synced: bool,
    /// A read of the store is under way.
    reading: bool,
    /// The copy may be wrong (the broker was cut: the store may have lost the stream): joins
    /// wait for the read under way.
    doubted: bool,
    /// Messages that arrived ahead of a gap, or before the first read, by offset (with the
    /// epoch they belong to).
    pending: BTreeMap<u64, (Arc<str>, Delivery)>,
    /// What waits for the copy to be synced.
    deferred: Vec<Deferred>,
    /// Hub-clock ms when the first member was answered without a synced copy; cleared when a
    /// read is applied.
    early: Option<u64>,
}

/// A message as the store keeps it.
pub(in crate::hub) struct Stored {
    pub(in crate::hub) offset: u64,
    /// Hub-clock ms when it was stored.
    pub(in crate::hub) at: u64,
    /// The frame as delivered.
    pub(in crate::hub) frame: Bytes,
    /// The connection that must not get it.
    pub(in crate::hub) except: Option<ConnId>,
}

/// What a read of the store returned.
pub(in crate::hub) struct StoreState {
    pub(in crate::hub) epoch: Arc<str>,
    /// The stream's latest offset.
    pub(in crate::hub) top: u64,
    /// Its retained messages, oldest first.
    pub(in crate::hub) messages: Vec<Stored>,
}

/// What a message from the store, or a read, changed.
#[derive(Default)]
pub(in crate::hub) struct Arrival {
    /// Frames to deliver to the stream's members now, in order.
    pub(in crate::hub) deliver: Vec<Delivery>,
    /// The caller must start a read of the store (a gap appeared and none is under way).
    pub(in crate::hub) read: bool,
    /// What waited for the copy to be synced, to run now under the lock.
    pub(in crate::hub) deferred: Vec<Deferred>,
}

impl Locked<'_> {
    /// Whether the stream can be used as it is: a lone node's always, a copy once synced and
    /// while not in doubt.
    pub(in crate::hub) fn synced(&self) -> bool {
        self.stream
            .mirror
            .as_ref()
            .is_none_or(|mirror| mirror.synced && !mirror.doubted)
    }

    /// Whether the copy is kept current (it receives the store's messages), doubted or not.
    pub(in crate::hub) fn current(&self) -> bool {
        self.stream
            .mirror
            .as_ref()
            .is_none_or(|mirror| mirror.synced)
    }

    /// Whether a read of the store is under way for this copy.
    pub(in crate::hub) fn reading(&self) -> bool {
        self.stream
            .mirror
            .as_ref()
            .is_some_and(|mirror| mirror.reading)
    }

    /// Runs `action` under the lock once the copy is synced (at once when it is). Returns
    /// whether the caller must start a read of the store.
    pub(in crate::hub) fn when_synced(&mut self, action: Deferred) -> bool {
        match &mut self.stream.mirror {
            Some(mirror) if !mirror.synced || mirror.doubted => {
                mirror.deferred.push(action);
                !std::mem::replace(&mut mirror.reading, true)
            }
            _ => {
                action(self);
                false
            }
        }
    }

    /// Cluster mode: whether `since` is ahead of this copy (same epoch, a later offset): the
    /// client saw, on another node, messages this node has not received yet.
    pub(in crate::hub) fn behind(&self, since: &StreamPosition) -> bool {
        self.stream.mirror.is_some()
            && since.epoch == *self.stream.epoch
            && since.offset > self.stream.top
    }

    /// Runs `action` once this copy has caught up with the store (a read, applied). Returns
    /// whether the caller must start that read.
    pub(in crate::hub) fn after_catching_up(&mut self, action: Deferred) -> bool {
        match &mut self.stream.mirror {
            Some(mirror) => {
                mirror.doubted = true;
                mirror.deferred.push(action);
                !std::mem::replace(&mut mirror.reading, true)
            }
            None => {
                action(self);
                false
            }
        }
    }

    /// A member was answered without the copy (which is not synced, or in doubt): the copy is
    /// to be synced, and once it is, that member gets what was stored since. Returns whether
    /// the caller must start the read.
    pub(in crate::hub) fn answered_early(&mut self) -> bool {
        let now = self.now;
        match &mut self.stream.mirror {
            Some(mirror) if !mirror.synced || mirror.doubted => {
                if !mirror.synced {
                    mirror.early.get_or_insert(now);
                }
                !std::mem::replace(&mut mirror.reading, true)
            }
            _ => false,
        }
    }

    /// Marks a read of the store under way (to fill a gap). Returns false when one already
    /// is, or when there is nothing to copy.
    fn start_read(&mut self) -> bool {
        match &mut self.stream.mirror {
            Some(mirror) if mirror.synced => !std::mem::replace(&mut mirror.reading, true),
            _ => false,
        }
    }

    /// The broker was cut: what the copy holds is in doubt until a read of the store (which
    /// may have lost the stream) is applied; joins wait for it. Returns whether the caller must
    /// start that read.
    pub(in crate::hub) fn doubt(&mut self) -> bool {
        match &mut self.stream.mirror {
            Some(mirror) if mirror.synced => {
                mirror.doubted = true;
                !std::mem::replace(&mut mirror.reading, true)
            }
            _ => false,
        }
    }

    /// The copy is no longer kept current: the node stopped receiving the stream's messages.
    pub(in crate::hub) fn unsync(&mut self) {
        if let Some(mirror) = &mut self.stream.mirror {
            mirror.synced = false;
            mirror.doubted = false;
            mirror.early = None;
            mirror.pending.clear();
        }
    }

    /// A message the store published. The next offset is kept and returned for delivery with
    /// the waiting ones it unblocks; an older one is a duplicate; a later one waits for a read
    /// that fills the gap. A new epoch means the store lost the stream: the copy starts over.
    pub(in crate::hub) fn receive(&mut self, epoch: &str, offset: u64, frame: Delivery) -> Arrival {
        let Some(mirror) = &mut self.stream.mirror else {
            return Arrival::default();
        };
        let epoch: Arc<str> = Arc::from(epoch);
        if !mirror.synced || mirror.doubted {
            mirror.pending.insert(offset, (epoch, frame));
            return Arrival::default();
        }
        if epoch != self.stream.epoch {
            self.restart(epoch.clone(), 0);
        }
        if offset <= self.stream.top {
            return Arrival::default();
        }
        if let Some(mirror) = &mut self.stream.mirror {
            mirror.pending.insert(offset, (epoch, frame));
        }
        self.stream.touched = self.now;
        let mut deliver = self.take_pending();
        if self.pending_len() > self.config.size {
            // The gap has not been filled while a whole history's worth of messages came in
            // behind it (the store is unreachable): skip it rather than hold the stream up.
            tracing::warn!(epoch = %self.stream.epoch, top = self.stream.top, "skipping a gap the store did not fill");
            if let Some(first) = self
                .stream
                .mirror
                .as_ref()
                .and_then(|m| m.pending.keys().next().copied())
            {
                self.stream.top = first - 1;
                deliver.extend(self.take_pending());
            }
        }
        let read = self.gap_remains() && self.start_read();
        Arrival {
            deliver,
            read,
            deferred: Vec::new(),
        }
    }

    /// Applies a read of the store: the copy becomes the store's. A member-less copy takes it
    /// whole; a synced one (filling a gap) keeps and delivers what it had missed; one whose
    /// members were answered early delivers what was stored since. Returns the frames to
    /// deliver, whether another read is needed, and what waited for the sync.
    pub(in crate::hub) fn apply_read(&mut self, state: StoreState) -> Arrival {
        let Some(mirror) = &mut self.stream.mirror else {
            return Arrival::default();
        };
        mirror.reading = false;
        mirror.doubted = false;
        let was_synced = std::mem::replace(&mut mirror.synced, true);
        let early = mirror.early.take().filter(|_| !was_synced);
        let deferred = std::mem::take(&mut mirror.deferred);
        mirror
            .pending
            .retain(|_, (epoch, _)| **epoch == *state.epoch);
        let fresh = !was_synced || state.epoch != self.stream.epoch;
        if fresh {
            self.restart(
                state.epoch,
                state.messages.first().map_or(state.top, |m| m.offset - 1),
            );
        }
        let mut deliver = Vec::new();
        for message in state.messages {
            if message.offset > self.stream.top {
                if was_synced || early.is_some_and(|since| message.at >= since) {
                    deliver.push((message.frame.clone(), message.except));
                }
                self.keep(message.offset, message.at, message.frame);
            }
        }
        self.stream.top = self.stream.top.max(state.top);
        self.stream.touched = self.now;
        let unblocked = self.take_pending();
        if was_synced || early.is_some() {
            deliver.extend(unblocked);
        }
        let read = self.gap_remains() && self.start_read();
        Arrival {
            deliver,
            read,
            deferred,
        }
    }

    /// Starts the copy over at `epoch` with `top` as its latest offset and nothing kept.
    fn restart(&mut self, epoch: Arc<str>, top: u64) {
        let stream = &mut *self.stream;
        let dropped = stream.entries.len();
        stream.entries.clear();
        self.counts
            .messages
            .fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
        stream.epoch = epoch;
        stream.top = top;
    }

    /// Keeps the pending messages that follow the top without a gap; returns their frames.
    fn take_pending(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        loop {
            let next = self.stream.top + 1;
            let Some(mirror) = &mut self.stream.mirror else {
                return taken;
            };
            mirror.pending = mirror.pending.split_off(&next);
            let Some((_, delivery)) = mirror.pending.remove(&next) else {
                return taken;
            };
            let now = self.now;
            self.keep(next, now, delivery.0.clone());
            taken.push(delivery);
        }
    }

    /// Whether messages wait behind a gap.
    fn gap_remains(&self) -> bool {
        self.pending_len() > 0
    }

    fn pending_len(&self) -> usize {
        self.stream
            .mirror
            .as_ref()
            .map_or(0, |mirror| mirror.pending.len())
    }
}
