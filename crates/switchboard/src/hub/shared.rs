//! Cluster mode: streams numbered and kept by the cluster's store ([`StreamStore`]).
//!
//! A stream message is appended to the store, which gives it the next offset and publishes it
//! to every node with a member, this one included; each node delivers it from there, in offset
//! order, through its copy of the stream (`mirror.rs`). Reads of the store make a copy synced
//! (for a join) or fill a gap (a message lost while the broker was unreachable). The sender's
//! `ack` carries the offset once the store has given it.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::channels::PublicationHandler;
use super::history::{Arrival, Delivery, StoreState, Stored};
use super::pubsub::Publication;
use super::streams::{HistoryPage, LaterOffset, Offset, Sent};
use super::{ConnHandle, Hub};
use crate::broker::{StreamMessage, Topic};
use crate::ids::{ConnId, StreamId};
use crate::protocol::{ServerFrame, StreamPosition, ack_frame};
use crate::store::{Append, StoreError, StoredStream};
use crate::ws::frame::{self, OpCode};

/// The offset written while encoding, where the store writes the real one.
const PLACEHOLDER: u64 = u64::MAX;

impl Hub {
    /// Appends a stream message to the cluster's store (or, while the store is unreachable,
    /// delivers it to this node's members without an offset). `frame` is encoded once; the
    /// store writes the offset into it.
    pub(super) fn append<P: Serialize>(
        &self,
        stream: StreamId,
        frame: ServerFrame<'_, P>,
        except: Option<ConnId>,
        ack: Option<(&ConnHandle, &RawValue)>,
    ) -> Sent {
        let inner = &self.inner;
        let Some(store) = inner.cluster.store().filter(|store| store.available()) else {
            return Sent {
                delivered: self.deliver_unnumbered(&stream, &frame.encode(), except),
                offset: Offset::None,
            };
        };
        let (head, tail) = split_at_offset(frame.offset(PLACEHOLDER).json());
        let delivered = match &stream {
            StreamId::Room(room) => inner.rooms.connection_count(room, except),
            StreamId::Channel(channel) => inner.channels.connection_count(channel, except),
        };
        let ack = ack.map(|(conn, id)| (conn.clone(), id.to_owned(), LaterOffset::default()));
        let offset = ack
            .as_ref()
            .map_or(Offset::None, |(_, _, later)| Offset::Later(later.clone()));
        let hub = Arc::downgrade(inner);
        let local = stream.clone();
        store.append(Append {
            stream,
            head,
            tail,
            except,
            done: Box::new(move |appended| {
                let Some(inner) = hub.upgrade() else { return };
                let hub = Hub { inner };
                let offset = match appended {
                    Ok(offset) => Some(offset),
                    Err(not) => {
                        // The store is out of reach: this node's members get it all the same.
                        tracing::debug!(error = %not.error, "delivering a message locally only");
                        let json = format!("{}{}", not.head, not.tail);
                        let frame = frame::frame(OpCode::Text, json.as_bytes());
                        hub.deliver_unnumbered(&local, &frame, except);
                        None
                    }
                };
                if let Some((conn, id, later)) = ack {
                    later.set(offset);
                    hub.deliver_counted(&conn, &ack_frame(&id, offset));
                }
            }),
        });
        Sent { delivered, offset }
    }

    /// Delivers a stream message the store could not number to this node's members (and
    /// handlers) only, without an offset. Returns the connections reached.
    fn deliver_unnumbered(
        &self,
        stream: &StreamId,
        frame: &Bytes,
        except: Option<ConnId>,
    ) -> usize {
        match stream {
            StreamId::Room(room) => self.deliver_local(&Topic::Room(room.clone()), frame, except),
            StreamId::Channel(channel) => {
                let recipients = self.deliver_to_subscribers(channel, frame, except);
                call_handlers(recipients.handlers, frame);
                recipients.delivered
            }
        }
    }

    /// A stream message the store published: delivered in offset order through this node's
    /// copy of the stream (or, without a copy, as it comes: pattern subscribers only).
    pub(super) fn receive_stream(&self, message: StreamMessage) {
        let frame = frame::frame(OpCode::Text, &message.json);
        let mut stream = self.lock_stream(&message.stream);
        let arrival = if stream.current() || stream.reading() {
            // A copy being read keeps the message until the read is applied.
            stream.receive(&message.epoch, message.offset, (frame, message.except))
        } else {
            Arrival {
                deliver: vec![(frame, message.except)],
                ..Arrival::default()
            }
        };
        self.settle(message.stream, stream, arrival);
    }

    /// Reads a stream from the store; the answer is applied to this node's copy.
    pub(super) fn read_stream(&self, id: StreamId) {
        let Some(store) = self.inner.cluster.store() else {
            return;
        };
        let hub = Arc::downgrade(&self.inner);
        let stream = id.clone();
        store.read(
            &stream,
            Box::new(move |read| {
                if let Some(inner) = hub.upgrade() {
                    Hub { inner }.apply_read(id, read);
                }
            }),
        );
    }

    /// The broker reached the other nodes again: every synced copy reads the store for what
    /// it may have missed meanwhile.
    pub(super) fn refill(&self) {
        for id in self.inner.history.doubt_all(self.now_ms()) {
            self.read_stream(id);
        }
    }

    /// Applies a read of the store to the copy of `id`: delivers what members missed, answers
    /// the joins that waited for it, and releases the copy if nobody is left to deliver to.
    fn apply_read(&self, id: StreamId, read: Result<StoredStream, StoreError>) {
        let mut stream = self.lock_stream(&id);
        let stored = match read {
            Ok(stored) => stored,
            Err(error) => {
                // Only when the node shuts down: the waiting joins are dropped with it.
                tracing::debug!(%error, "a stream read gave up");
                return;
            }
        };
        let state = StoreState {
            epoch: Arc::from(stored.epoch),
            top: stored.top,
            messages: stored
                .messages
                .into_iter()
                .map(|message| Stored {
                    offset: message.offset,
                    at: self.hub_ms(message.at_ms),
                    frame: frame::frame(OpCode::Text, &message.json),
                    except: message.except,
                })
                .collect(),
        };
        let mut arrival = stream.apply_read(state);
        // What the members missed goes to them before a waiting joiner becomes one: its
        // replay (read from the copy the read just filled) already holds those messages.
        let handlers = self.deliver_arrival(&id, std::mem::take(&mut arrival.deliver));
        for answer in std::mem::take(&mut arrival.deferred) {
            answer(&mut stream);
        }
        self.release_if_vacated(&id, &mut stream);
        drop(stream);
        self.after_arrival(id, handlers, arrival.read);
    }

    /// Delivers an arrival's frames under the stream's lock, then, released, calls the
    /// publication handlers and starts the read the arrival asks for.
    fn settle(&self, id: StreamId, stream: super::history::Locked<'_>, arrival: Arrival) {
        let handlers = self.deliver_arrival(&id, arrival.deliver);
        drop(stream);
        self.after_arrival(id, handlers, arrival.read);
    }

    /// Delivers frames of the stream `id` to its local members (call with the stream's lock
    /// held); returns the publication handlers to call once it is released.
    fn deliver_arrival(
        &self,
        id: &StreamId,
        deliveries: Vec<Delivery>,
    ) -> Vec<(Vec<PublicationHandler>, Bytes)> {
        let mut handlers = Vec::new();
        for (frame, except) in deliveries {
            match id {
                StreamId::Room(room) => {
                    self.deliver_local(&Topic::Room(room.clone()), &frame, except);
                }
                StreamId::Channel(channel) => {
                    let recipients = self.deliver_to_subscribers(channel, &frame, except);
                    if !recipients.handlers.is_empty() {
                        handlers.push((recipients.handlers, frame));
                    }
                }
            }
        }
        handlers
    }

    /// With the stream's lock released: calls the publication handlers of what was delivered
    /// and starts the read of the store that was asked for.
    fn after_arrival(
        &self,
        id: StreamId,
        handlers: Vec<(Vec<PublicationHandler>, Bytes)>,
        read: bool,
    ) {
        for (handlers, frame) in handlers {
            call_handlers(handlers, &frame);
        }
        if read {
            self.read_stream(id);
        }
    }

    /// The hub-clock time of `epoch_ms` (0 for times before the hub started).
    fn hub_ms(&self, epoch_ms: u64) -> u64 {
        epoch_ms.saturating_sub(self.inner.started_epoch_ms)
    }

    /// [`Hub::history`], reading the cluster's store when this node holds no synced copy of
    /// the stream (for the server API).
    pub(crate) async fn read_history(
        &self,
        stream: &StreamId,
        limit: Option<usize>,
        since: Option<&StreamPosition>,
    ) -> Option<HistoryPage> {
        if let Some(page) = self.history(stream, limit, since) {
            return Some(page);
        }
        let store = self.inner.cluster.store()?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        store.read(
            stream,
            Box::new(move |read| {
                let _ = sender.send(read);
            }),
        );
        let stored = receiver.await.ok()?.ok()?;
        Some(self.page(stored, limit, since))
    }

    /// A page of a stream read from the store, with the limits `history` applies.
    pub(super) fn page(
        &self,
        stored: StoredStream,
        limit: Option<usize>,
        since: Option<&StreamPosition>,
    ) -> HistoryPage {
        let limit = limit.unwrap_or(self.inner.config.history.size);
        let cutoff = crate::protocol::now_ms()
            .saturating_sub(self.inner.config.history.ttl.as_millis() as u64);
        let kept = stored
            .messages
            .iter()
            .filter(|message| message.at_ms >= cutoff);
        let frames: Vec<Bytes> = match since {
            Some(since) if since.epoch != stored.epoch => Vec::new(),
            Some(since) => kept
                .filter(|message| message.offset > since.offset)
                .take(limit)
                .map(|message| frame::frame(OpCode::Text, &message.json))
                .collect(),
            None => {
                let kept: Vec<_> = kept.collect();
                kept[kept.len().saturating_sub(limit)..]
                    .iter()
                    .map(|message| frame::frame(OpCode::Text, &message.json))
                    .collect()
            }
        };
        HistoryPage {
            position: StreamPosition {
                offset: stored.top,
                epoch: stored.epoch,
            },
            frames,
        }
    }
}

/// Splits an encoded frame's JSON around its `"offset":PLACEHOLDER,` field (which goes).
fn split_at_offset(mut json: String) -> (String, String) {
    let field = concat!("\"offset\":", "18446744073709551615", ",");
    // The field is written before the payload, so its first occurrence is the frame's own.
    match json.find(field) {
        Some(at) => {
            let tail = json.split_off(at + field.len());
            json.truncate(at);
            (json, tail)
        }
        None => (json, String::new()),
    }
}

/// Calls publication handlers with the publication in `frame`.
fn call_handlers(handlers: Vec<PublicationHandler>, frame: &Bytes) {
    if handlers.is_empty() {
        return;
    }
    match serde_json::from_slice::<Publication>(frame::server_payload(frame)) {
        Ok(publication) => handlers.iter().for_each(|handler| handler(&publication)),
        Err(error) => tracing::warn!(%error, "undecodable publication"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_cut_out_where_it_was_written_not_in_the_payload() {
        let payload = serde_json::json!({"content": "\"offset\":18446744073709551615,"});
        let json = ServerFrame::new(crate::protocol::ServerKind::Message, &payload)
            .room("r")
            .offset(PLACEHOLDER)
            .json();
        let (head, tail) = split_at_offset(json);
        assert_eq!(head, r#"{"type":"message","room":"r","#);
        assert!(tail.starts_with(r#""payload":{"content":"#), "{tail}");
        let whole = format!("{head}\"offset\":7,{tail}");
        let value: serde_json::Value = serde_json::from_str(&whole).unwrap();
        assert_eq!(value["offset"], 7);
        assert_eq!(value["payload"], payload);
        let without: serde_json::Value = serde_json::from_str(&format!("{head}{tail}")).unwrap();
        assert!(without.get("offset").is_none());
    }
}
