//! The shared store of a cluster's streams (DESIGN.md §7): where each room's and channel's
//! messages get their offsets and are kept, so that every node shows the same offset for the
//! same message and a client recovers on whichever node it comes back to.
//!
//! A lone node has no store: its hub numbers and keeps its own streams. In cluster mode the
//! Redis cluster is the store (`cluster::redis`): one script gives a message the stream's next
//! offset, appends it to the stream's capped history and publishes it to every node, the
//! publishing one included, which delivers it in offset order.

use std::time::Duration;

use bytes::Bytes;

use crate::ids::{ConnId, StreamId};

/// How much history each room and channel keeps (DESIGN.md §7): on a lone node, in its hub;
/// in a cluster, in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most messages kept per stream; 0 turns history (and offsets) off.
    pub size: usize,
    /// How long a message is kept.
    pub ttl: Duration,
}

/// What is called with the outcome of an append: the offset, or the message given back.
pub type AppendDone = Box<dyn FnOnce(Result<u64, NotAppended>) + Send>;

/// A message the store could not take, given back (its frame's JSON without an offset is
/// `head` then `tail`) so that the node can still deliver it to its own members.
#[derive(Debug)]
pub struct NotAppended {
    /// Why.
    pub error: StoreError,
    /// The frame's JSON before where the offset would have been.
    pub head: String,
    /// The rest of it.
    pub tail: String,
}

/// What is called with the outcome of a read.
pub type ReadDone = Box<dyn FnOnce(Result<StoredStream, StoreError>) + Send>;

/// A message to append. Its JSON is `head`, the offset's digits, then `tail`: the store writes
/// the offset in.
pub struct Append {
    /// The room or channel.
    pub stream: StreamId,
    /// The frame's JSON up to the offset's value.
    pub head: String,
    /// The frame's JSON after it.
    pub tail: String,
    /// A connection that must not receive it (the sender of a room message).
    pub except: Option<ConnId>,
    /// Called once, with the offset the message got.
    pub done: AppendDone,
}

impl Append {
    /// Gives the message back to its sender's callback: the store could not take it.
    pub fn fail(self, error: StoreError) {
        (self.done)(Err(NotAppended {
            error,
            head: self.head,
            tail: self.tail,
        }));
    }
}

/// A stream as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStream {
    /// Its epoch, new whenever the store lost its history.
    pub epoch: String,
    /// Its latest offset.
    pub top: u64,
    /// Its kept messages, oldest first.
    pub messages: Vec<StoredMessage>,
}

/// A kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its offset.
    pub offset: u64,
    /// When it was stored, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Its frame's JSON, offset included.
    pub json: Bytes,
    /// A connection that must not receive it (the sender of a room message).
    pub except: Option<ConnId>,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is unreachable right now.
    #[error("the stream store is unreachable")]
    Unavailable,
    /// The store answered with an error.
    #[error("the stream store failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A cluster's shared store of streams.
///
/// Guarantees: appends from one node are numbered in the order they were made; every appended
/// message is published to the nodes subscribed to its stream (through the broker's sink,
/// [`BrokerSink::deliver_stream`](crate::broker::BrokerSink::deliver_stream)), in offset order
/// per stream; a read answers what the store holds when it runs, after every subscription
/// change made before it is in effect. Neither call blocks; each callback is called once.
pub trait StreamStore: Send + Sync + 'static {
    /// Numbers, keeps and publishes a message.
    fn append(&self, append: Append);
    /// Reads a stream: its epoch, latest offset and kept messages (creating its epoch if the
    /// store has none).
    fn read(&self, stream: &StreamId, done: ReadDone);
    /// Whether the store is reachable now (appends would not fail for want of it).
    fn available(&self) -> bool;
}
