//! History: the recent messages of each room and channel (its stream), so that a client that
//! comes back gets exactly what it missed (DESIGN.md §7).
//!
//! A stream has an epoch (a random string, new whenever the stream is created: after a restart
//! or an expiry its history is gone) and a top offset; each message gets the next offset. At
//! most `size` messages are kept, none older than `ttl`: memory is bounded by the number of
//! streams times `size`, and streams without a member expire with their last message.
//!
//! This part owns the streams and their locks and knows nothing of rooms, channels or
//! connections. Its one rule, which the hub relies on: **a stream's lock is held while a message
//! is given its offset, stored and delivered, and while a member joins and is given its
//! replay.** So every member sees a stream in offset order, and a joiner gets each message
//! exactly once, in its replay or live, never both and never neither.
//!
//! In cluster mode the shared store (Redis) numbers and keeps the messages, and a node's
//! stream is its copy of the store's: *synced* (read from the store, then kept current by the
//! messages the store publishes) only while the node has a member to deliver to. A message that
//! arrives ahead of a gap waits until a read of the store fills the gap; an action that needs
//! the copy (a join) waits until it is synced (see `mirror.rs`).

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::HistoryConfig;
use bytes::Bytes;
use parking_lot::{ArcMutexGuard, Mutex, RawMutex};

use super::shard::Sharded;
use crate::ids::{ChannelId, RoomId, StreamId};
use crate::protocol::StreamPosition;
pub(super) use mirror::{Arrival, Deferred, Delivery, StoreState, Stored};

/// One retained message.
struct Entry {
    offset: u64,
    /// Hub-clock ms when it was stored.
    at: u64,
    /// The frame exactly as it was delivered.
    frame: Bytes,
}

/// One room's or channel's stream.
pub(super) struct Stream {
    epoch: Arc<str>,
    top: u64,
    entries: VecDeque<Entry>,
    /// Hub-clock ms of the last message or join: a stream in use is not swept.
    touched: u64,
    /// The copy of a cluster's stream (`None` on a lone node, whose streams are their own).
    mirror: Option<mirror::Mirror>,
}

/// What a stream can say about a client's position.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Every message after the position is retained: these frames, oldest first.
    Recovered(Vec<Bytes>),
    /// The epoch differs, or messages after the position are gone.
    Lost,
}

impl Recovery {
    /// Whether the position was recovered.
    pub(super) fn recovered(&self) -> bool {
        matches!(self, Self::Recovered(_))
    }
}

/// A stream under its lock: what the hub does while no message can come in between.
pub(super) struct Locked<'a> {
    stream: ArcMutexGuard<RawMutex, Stream>,
    config: HistoryConfig,
    now: u64,
    counts: &'a Counts,
}

impl Locked<'_> {
    /// The stream's latest position.
    pub(super) fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.stream.top,
            epoch: self.stream.epoch.to_string(),
        }
    }

    /// The offset the next message gets.
    pub(super) fn next_offset(&self) -> u64 {
        self.stream.top + 1
    }

    /// Stores the next message, `frame`, which must carry [`Self::next_offset`]; drops what
    /// falls out of the size or the age limit.
    pub(super) fn push(&mut self, frame: Bytes) {
        self.stream.touched = self.now;
        let (offset, now) = (self.stream.top + 1, self.now);
        self.keep(offset, now, frame);
    }

    /// Whether every message after `since` is retained, and which they are.
    pub(super) fn recover(&mut self, since: &StreamPosition) -> Recovery {
        self.stream.touched = self.now;
        let dropped = expire(&mut self.stream.entries, self.now, self.config.ttl);
        self.counts.messages.fetch_sub(dropped, Ordering::Relaxed);
        let stream = &*self.stream;
        if since.epoch != *stream.epoch || since.offset > stream.top {
            return Recovery::Lost;
        }
        // The oldest offset still retained; every later one is too (offsets have no gaps).
        let oldest = stream.entries.front().map_or(stream.top + 1, |e| e.offset);
        if since.offset + 1 < oldest {
            return Recovery::Lost;
        }
        Recovery::Recovered(
            stream
                .entries
                .iter()
                .filter(|entry| entry.offset > since.offset)
                .map(|entry| entry.frame.clone())
                .collect(),
        )
    }

    /// Up to `limit` retained messages: the first ones after `since` when given (or none if
    /// its epoch differs), else the latest ones; oldest first.
    pub(super) fn read(&mut self, since: Option<&StreamPosition>, limit: usize) -> Vec<Bytes> {
        let dropped = expire(&mut self.stream.entries, self.now, self.config.ttl);
        self.counts.messages.fetch_sub(dropped, Ordering::Relaxed);
        let entries = &self.stream.entries;
        let frames = |skip: usize| {
            entries
                .iter()
                .skip(skip)
                .take(limit)
                .map(|entry| entry.frame.clone())
                .collect()
        };
        match since {
            Some(since) if since.epoch != *self.stream.epoch => Vec::new(),
            Some(since) => frames(entries.partition_point(|e| e.offset <= since.offset)),
            None => frames(entries.len().saturating_sub(limit)),
        }
    }
}

impl Locked<'_> {
    /// Appends an entry for `offset` (the next one) at hub-clock ms `at`, within the limits.
    fn keep(&mut self, offset: u64, at: u64, frame: Bytes) {
        let stream = &mut *self.stream;
        stream.top = offset;
        stream.entries.push_back(Entry { offset, at, frame });
        self.counts.messages.fetch_add(1, Ordering::Relaxed);
        let mut dropped = stream.entries.len().saturating_sub(self.config.size);
        stream.entries.drain(..dropped);
        dropped += expire(&mut stream.entries, self.now, self.config.ttl);
        self.counts.messages.fetch_sub(dropped, Ordering::Relaxed);
    }
}

/// Drops the entries older than `ttl` at hub-clock ms `now`; returns how many.
fn expire(entries: &mut VecDeque<Entry>, now: u64, ttl: Duration) -> usize {
    let cutoff = now.saturating_sub(ttl.as_millis() as u64);
    let expired = entries.partition_point(|entry| entry.at < cutoff);
    entries.drain(..expired);
    expired
}

/// Streams and retained messages, for `/stats`.
#[derive(Default)]
struct Counts {
    streams: AtomicUsize,
    messages: AtomicUsize,
}

/// The streams of one kind of key.
struct Streams<K> {
    map: Sharded<K, Arc<Mutex<Stream>>>,
    /// Whether the streams are copies of a cluster's (see `mirror.rs`).
    mirrored: bool,
}

impl<K: Hash + Eq + Clone> Streams<K> {
    fn new(mirrored: bool) -> Self {
        Self {
            map: Sharded::new(),
            mirrored,
        }
    }

    /// The stream of `key`, created (with a fresh epoch) if it has none.
    fn get(&self, key: &K, now: u64, counts: &Counts) -> Arc<Mutex<Stream>> {
        if let Some(stream) = self.map.read(key).get(key) {
            return stream.clone();
        }
        let mut shard = self.map.write(key);
        shard
            .entry(key.clone())
            .or_insert_with(|| {
                counts.streams.fetch_add(1, Ordering::Relaxed);
                Arc::new(Mutex::new(Stream {
                    epoch: Arc::from(format!("{:016x}", fastrand::u64(..))),
                    top: 0,
                    entries: VecDeque::new(),
                    touched: now,
                    mirror: self.mirrored.then(mirror::Mirror::default),
                }))
            })
            .clone()
    }

    /// Every stream, to lock one at a time.
    fn all(&self) -> Vec<(K, Arc<Mutex<Stream>>)> {
        let mut all = Vec::new();
        self.map
            .for_each(|key, stream| all.push((key.clone(), stream.clone())));
        all
    }

    /// Removes the streams that are not `in_use` and have had no message or join for `ttl`
    /// (a stream locked right now is in use).
    fn sweep(&self, cutoff: u64, in_use: impl Fn(&K) -> bool, counts: &Counts) -> usize {
        let mut removed = 0;
        self.map.retain(|key, stream| {
            let Some(stream) = stream.try_lock() else {
                return true;
            };
            let keep = stream.touched >= cutoff || in_use(key);
            if !keep {
                removed += 1;
                counts.streams.fetch_sub(1, Ordering::Relaxed);
                counts
                    .messages
                    .fetch_sub(stream.entries.len(), Ordering::Relaxed);
            }
            keep
        });
        removed
    }
}

/// Every stream of this node.
pub(super) struct History {
    config: HistoryConfig,
    rooms: Streams<RoomId>,
    channels: Streams<ChannelId>,
    counts: Counts,
}

impl History {
    /// A node's history; `mirrored` in cluster mode, where the streams copy the shared store's.
    pub(super) fn new(config: HistoryConfig, mirrored: bool) -> Self {
        Self {
            config,
            rooms: Streams::new(mirrored),
            channels: Streams::new(mirrored),
            counts: Counts::default(),
        }
    }

    /// Whether history is on.
    pub(super) fn enabled(&self) -> bool {
        self.config.size > 0
    }

    /// Most messages a `history` request may ask for.
    pub(super) fn size(&self) -> usize {
        self.config.size
    }

    /// Locks the stream of `room` (created if it has none) at hub-clock ms `now`.
    pub(super) fn room(&self, room: &RoomId, now: u64) -> Locked<'_> {
        self.locked(self.rooms.get(room, now, &self.counts), now)
    }

    /// Locks the stream of `channel` (created if it has none) at hub-clock ms `now`.
    pub(super) fn channel(&self, channel: &ChannelId, now: u64) -> Locked<'_> {
        self.locked(self.channels.get(channel, now, &self.counts), now)
    }

    fn locked(&self, stream: Arc<Mutex<Stream>>, now: u64) -> Locked<'_> {
        Locked {
            stream: Mutex::lock_arc(&stream),
            config: self.config,
            now,
            counts: &self.counts,
        }
    }

    /// Removes the streams nobody uses that have been quiet for the history's age limit
    /// (their messages have expired). Returns how many.
    pub(super) fn sweep(
        &self,
        now: u64,
        room_in_use: impl Fn(&RoomId) -> bool,
        channel_in_use: impl Fn(&ChannelId) -> bool,
    ) -> usize {
        let cutoff = now.saturating_sub(self.config.ttl.as_millis() as u64);
        self.rooms.sweep(cutoff, room_in_use, &self.counts)
            + self.channels.sweep(cutoff, channel_in_use, &self.counts)
    }

    /// Cluster mode: puts every synced copy in doubt (the broker was cut); returns those that
    /// need a read of the store (for what they may have missed, or a lost stream).
    pub(super) fn doubt_all(&self, now: u64) -> Vec<StreamId> {
        let mut started = Vec::new();
        for (room, stream) in self.rooms.all() {
            if self.locked(stream, now).doubt() {
                started.push(StreamId::Room(room));
            }
        }
        for (channel, stream) in self.channels.all() {
            if self.locked(stream, now).doubt() {
                started.push(StreamId::Channel(channel));
            }
        }
        started
    }

    /// (Streams, retained messages) on this node.
    pub(super) fn counts(&self) -> (usize, usize) {
        (
            self.counts.streams.load(Ordering::Relaxed),
            self.counts.messages.load(Ordering::Relaxed),
        )
    }
}

#[path = "mirror.rs"]
mod mirror;

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
